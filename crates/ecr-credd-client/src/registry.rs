//! Registry hostnames: normalising what clients send, and recognising ECR names.

use thiserror::Error;

/// Why a string is not a usable registry host.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HostError {
    /// Nothing left after removing scheme and path.
    #[error("empty registry host")]
    Empty,
    /// Longer than any DNS name with a port.
    #[error("registry host is {0} characters long; a host name has at most 253")]
    TooLong(usize),
    /// Characters that cannot appear in a host name or port.
    #[error("invalid registry host {0:?}: only letters, digits, '.', '-', ':' and brackets are allowed")]
    InvalidChars(String),
}

/// DNS suffixes of every partition that hosts ECR, longest first where one
/// would otherwise shadow another.
const ECR_SUFFIXES: &[&str] = &[
    "on.amazonwebservices.com.cn",
    "amazonaws.com.cn",
    "amazonaws.com",
    "amazonaws.eu",
    "on.aws",
    "sc2s.sgov.gov",
    "c2s.ic.gov",
    "cloud.adc-e.uk",
    "csp.hci.ic.gov",
];

/// The facts an ECR hostname carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrHost {
    /// The 12-digit registry (account) id.
    pub account: String,
    /// The AWS region, e.g. `eu-west-1`.
    pub region: String,
    /// Whether the name is a FIPS endpoint.
    pub fips: bool,
    /// The partition's DNS suffix, e.g. `amazonaws.com.cn`.
    pub suffix: &'static str,
}

impl EcrHost {
    /// Whether the name is a dual-stack endpoint (`dkr-ecr.<region>.on.aws`).
    pub fn dual_stack(&self) -> bool {
        self.suffix.starts_with("on.")
    }
}

/// Reduces what a client sends (`https://HOST:PORT/v2/`, `HOST/`, `Host`) to
/// the lower-case `host[:port]` that config entries are matched against.
/// HTTPS's port (`:443`) and an empty one (`host:`) are dropped: they name the
/// same registry as the bare host, and must not become a different entry.
pub fn normalize_host(input: &str) -> Result<String, HostError> {
    let mut s = input.trim();
    // A scheme only at the very start: `evil.example/x://<ecr host>` names
    // evil.example, not the ECR host after the `://`.
    if let Some((scheme, rest)) = s.split_once("://") {
        let is_scheme = scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if is_scheme {
            s = rest;
        }
    }
    if let Some(idx) = s.find(['/', '?', '#']) {
        s = &s[..idx];
    }
    // Userinfo never names the registry; dropping it keeps `user@host` from
    // being mistaken for another host.
    if let Some(idx) = s.rfind('@') {
        s = &s[idx + 1..];
    }
    let s = s.trim_end_matches('.');
    if s.is_empty() {
        return Err(HostError::Empty);
    }
    // 253 for the name, plus ":" and a port.
    if s.len() > 253 + 6 {
        return Err(HostError::TooLong(s.len()));
    }
    let ok =
        s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_'));
    if !ok {
        return Err(HostError::InvalidChars(s.chars().take(80).collect()));
    }
    let s = match s.rsplit_once(':') {
        Some((host, "" | "443"))
            if !host.is_empty()
                && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']'))) =>
        {
            host
        }
        _ => s,
    };
    // A dot before the dropped port trails too (`host.:443`), and what is left
    // may be nothing (`.:`): normalising the answer again must give itself.
    let s = s.trim_end_matches('.');
    if s.is_empty() {
        return Err(HostError::Empty);
    }
    Ok(s.to_ascii_lowercase())
}

/// Splits off a `:port`, leaving bracketed IPv6 literals intact.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Whether `region` looks like an AWS region name (`us-gov-west-1`, `cn-north-1`).
pub fn is_region(region: &str) -> bool {
    let b = region.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1].is_ascii_digit()
        && region.contains('-')
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !region.contains("--")
}

/// Whether `id` is a 12-digit AWS account id.
pub fn is_account_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())
}

/// ECR Public's registry hostnames.
pub const PUBLIC_HOSTS: [&str; 2] = ["public.ecr.aws", "ecr-public.aws.com"];

/// Whether `host` (after [`normalize_host`]) is ECR Public, with or without a port.
pub fn is_public_host(host: &str) -> bool {
    PUBLIC_HOSTS.contains(&strip_port(host))
}

/// Parses an ECR private-registry hostname of any partition:
/// `<account>.dkr[.-]ecr[-fips].<region>.<suffix>`, after [`normalize_host`].
/// Anything else, including look-alikes, is `None`.
pub fn parse_ecr_host(host: &str) -> Option<EcrHost> {
    let host = strip_port(host);
    let (rest, suffix) = ECR_SUFFIXES.iter().find_map(|suffix| {
        let rest = host.strip_suffix(suffix)?.strip_suffix('.')?;
        Some((rest, *suffix))
    })?;
    let (rest, region) = rest.rsplit_once('.')?;
    let (account, service) = rest.split_once('.')?;
    let fips = match service {
        "dkr.ecr" | "dkr-ecr" => false,
        "dkr.ecr-fips" | "dkr-ecr-fips" => true,
        _ => return None,
    };
    if !is_account_id(account) || !is_region(region) {
        return None;
    }
    Some(EcrHost { account: account.to_owned(), region: region.to_owned(), fips, suffix })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_what_clients_send() {
        let cases = [
            ("https://Foo.Example:5000/v2/", "foo.example:5000"),
            ("http://127.0.0.1:5000", "127.0.0.1:5000"),
            ("  registry.example/  \n", "registry.example"),
            ("registry.example/ns/repo:tag", "registry.example"),
            ("https://index.docker.io/v1/", "index.docker.io"),
            ("user@registry.example", "registry.example"),
            ("[::1]:5000", "[::1]:5000"),
            // The default port and an empty one are the bare host.
            (
                "111122223333.dkr.ecr.eu-west-1.amazonaws.com:443",
                "111122223333.dkr.ecr.eu-west-1.amazonaws.com",
            ),
            ("111122223333.dkr.ecr.eu-west-1.amazonaws.com:", "111122223333.dkr.ecr.eu-west-1.amazonaws.com"),
            ("https://registry.example:443/v2/", "registry.example"),
            ("[::1]:443", "[::1]"),
            ("registry.example:4430", "registry.example:4430"),
            // A scheme counts only at the start.
            ("evil.example/x://111122223333.dkr.ecr.eu-west-1.amazonaws.com", "evil.example"),
            ("evil.example:1://111122223333.dkr.ecr.eu-west-1.amazonaws.com", "evil.example:1:"),
            ("oci+https://registry.example", "registry.example"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_host(input).as_deref(), Ok(want), "input {input:?}");
        }
        assert_eq!(normalize_host("  "), Err(HostError::Empty));
        assert_eq!(normalize_host("https:///v2/"), Err(HostError::Empty));
        // Found by the idempotence property: the port leaves only a dot.
        assert_eq!(normalize_host(".:?"), Err(HostError::Empty));
        assert_eq!(normalize_host("Example.COM.:443"), Ok("example.com".into()));
        assert!(matches!(normalize_host("bad host"), Err(HostError::InvalidChars(_))));
        assert!(matches!(normalize_host("h\u{0}st"), Err(HostError::InvalidChars(_))));
        assert_eq!(normalize_host(&"a".repeat(5000)), Err(HostError::TooLong(5000)));
    }

    #[test]
    fn parses_every_partition() {
        // (host, account, region, fips)
        let cases = [
            ("111122223333.dkr.ecr.eu-west-1.amazonaws.com", "eu-west-1", false),
            ("111122223333.dkr.ecr.cn-north-1.amazonaws.com.cn", "cn-north-1", false),
            ("111122223333.dkr.ecr.eusc-de-east-1.amazonaws.eu", "eusc-de-east-1", false),
            ("111122223333.dkr-ecr.us-east-1.on.aws", "us-east-1", false),
            ("111122223333.dkr-ecr.cn-northwest-1.on.amazonwebservices.com.cn", "cn-northwest-1", false),
            ("111122223333.dkr.ecr-fips.us-east-1.amazonaws.com", "us-east-1", true),
            ("111122223333.dkr-ecr-fips.us-east-1.on.aws", "us-east-1", true),
            ("111122223333.dkr.ecr.us-gov-west-1.amazonaws.com", "us-gov-west-1", false),
            ("111122223333.dkr.ecr-fips.us-gov-east-1.amazonaws.com", "us-gov-east-1", true),
            ("111122223333.dkr.ecr.us-iso-east-1.c2s.ic.gov", "us-iso-east-1", false),
            ("111122223333.dkr.ecr.us-isob-east-1.sc2s.sgov.gov", "us-isob-east-1", false),
            ("111122223333.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk", "eu-isoe-west-1", false),
            ("111122223333.dkr.ecr.us-isof-south-1.csp.hci.ic.gov", "us-isof-south-1", false),
            ("111122223333.dkr.ecr.eu-west-1.amazonaws.com:443", "eu-west-1", false),
        ];
        for (host, region, fips) in cases {
            let parsed = parse_ecr_host(host).unwrap_or_else(|| panic!("{host} should parse"));
            assert_eq!(parsed.account, "111122223333", "{host}");
            assert_eq!(parsed.region, region, "{host}");
            assert_eq!(parsed.fips, fips, "{host}");
        }
    }

    #[test]
    fn rejects_look_alikes() {
        let cases = [
            "111122223333.dkr.ecr.us-east-1.amazonaws.com.evil.example",
            "111122223333.dkr-ecr.us-east-1.on.aws.com.cn",
            "111122223333.dkr.ecr.us-east-1.amazonaws.co",
            "11112222333.dkr.ecr.us-east-1.amazonaws.com",
            "1111222233334.dkr.ecr.us-east-1.amazonaws.com",
            "evil.111122223333.dkr.ecr.us-east-1.amazonaws.com",
            "111122223333.dkr.ecr.us-east-1.evilamazonaws.com",
            "111122223333.dkrxecr.us-east-1.amazonaws.com",
            "111122223333.dkr.ecr..amazonaws.com",
            "111122223333.dkr.ecr.US_EAST_1.amazonaws.com",
            "aaaabbbbcccc.dkr.ecr.us-east-1.amazonaws.com",
            "111122223333.ecr.us-east-1.amazonaws.com",
            "public.ecr.aws",
            "docker.io",
            "",
        ];
        for host in cases {
            assert_eq!(parse_ecr_host(host), None, "{host} must not parse");
        }
    }

    #[test]
    fn knows_ecr_public() {
        for host in ["public.ecr.aws", "ecr-public.aws.com", "public.ecr.aws:443"] {
            assert!(is_public_host(host), "{host}");
        }
        for host in ["public.ecr.aws.evil.example", "xpublic.ecr.aws", "ecr-public.aws", "ecr.aws"] {
            assert!(!is_public_host(host), "{host}");
        }
    }
}
