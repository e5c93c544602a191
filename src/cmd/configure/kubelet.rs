//! `configure kubelet`: the kubelet's `CredentialProviderConfig` for the
//! configured registries, the flags that load it, and nodeadm's snippet.

use crate::cmd::policy::{IRSA_AUDIENCE, POD_IDENTITY_AUDIENCE};
use crate::config::workload::{ExchangeKind, DEFAULT_ROLE_ANNOTATION};
use crate::config::Config;

/// The provider binary's name, which `name:` must equal.
pub(crate) const PROVIDER: &str = "ecr-credd-kubelet-provider";
/// Where the packages install the provider (the kubelet's bin dir).
pub(crate) const BIN_DIR: &str = "/usr/bin";
/// Where the written config goes unless `--output` says otherwise.
pub(crate) const DEFAULT_OUTPUT: &str = "/etc/kubernetes/ecr-credd-provider.yaml";

/// Every ECR private-registry host pattern, one `*` per DNS label, as
/// `examples/kubernetes/credential-provider-config.yaml` lists them.
pub(crate) const ECR_PATTERNS: &[&str] = &[
    "*.dkr.ecr.*.amazonaws.com",
    "*.dkr.ecr-fips.*.amazonaws.com",
    "*.dkr.ecr.*.amazonaws.com.cn",
    "*.dkr.ecr.*.amazonaws.eu",
    "*.dkr-ecr.*.on.aws",
    "*.dkr-ecr-fips.*.on.aws",
    "*.dkr-ecr.*.on.amazonwebservices.com.cn",
    "*.dkr.ecr.*.sc2s.sgov.gov",
    "*.dkr.ecr.*.c2s.ic.gov",
    "*.dkr.ecr.*.cloud.adc-e.uk",
    "*.dkr.ecr.*.csp.hci.ic.gov",
];

/// The images the provider is asked for: exactly the configured registries,
/// plus every ECR host when the daemon serves unlisted ones.
pub(crate) fn match_images(config: &Config) -> Vec<String> {
    let mut out: Vec<String> = config.registries.iter().map(|r| r.host.clone()).collect();
    if config.serve_unlisted_ecr {
        out.extend(ECR_PATTERNS.iter().map(|p| (*p).to_owned()));
    }
    out.dedup();
    out
}

/// Whether the kubelet asks the provider for images on `host` under the
/// `matchImages` entry `pattern` (k8s.io/kubernetes credentialprovider's
/// URLsMatch: as many DNS labels, each matched by its glob, the same port).
/// A pattern with a path matches some of the host's images, which counts.
pub(crate) fn matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.split('/').next().unwrap_or_default();
    let split = |h: &str| match h.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (name.to_owned(), port.to_owned())
        }
        _ => (h.to_owned(), String::new()),
    };
    let ((p_name, p_port), (h_name, h_port)) = (split(pattern), split(host));
    let (p_labels, h_labels): (Vec<&str>, Vec<&str>) =
        (p_name.split('.').collect(), h_name.split('.').collect());
    p_port == h_port
        && p_labels.len() == h_labels.len()
        && p_labels.iter().zip(&h_labels).all(|(p, h)| glob(p, h))
}

/// `*` matching any run within one label, as Go's path.Match does.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            text.starts_with(head) && (head.len()..=text.len()).any(|i| glob(rest, &text[i..]))
        }
    }
}

/// The `matchImages` of ecr-credd's provider in a kubelet config file,
/// YAML as `configure kubelet` writes it or JSON as EKS's nodes keep it.
pub(crate) fn configured_images(text: &str) -> Vec<String> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        return v["providers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["name"] == PROVIDER)
            .flat_map(|p| p["matchImages"].as_array().cloned().unwrap_or_default())
            .filter_map(|m| m.as_str().map(str::to_owned))
            .collect();
    }
    super::provider_yaml::match_images(text, PROVIDER)
}

/// A YAML string: JSON's quoting is YAML's too.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The config file for `config`, with `tokenAttributes` for `workload`.
pub(crate) fn provider_config(config: &Config, workload: Option<ExchangeKind>, output: &str) -> String {
    let mut out = format!(
        "# Written by `ecr-credd configure kubelet`. The kubelet loads it with\n\
         #   --image-credential-provider-config={output}\n\
         #   --image-credential-provider-bin-dir={BIN_DIR}\n\
         # The provider asks the ecr-credd daemon on the node; it never calls AWS itself.\n\
         apiVersion: kubelet.config.k8s.io/v1\n\
         kind: CredentialProviderConfig\n\
         providers:\n  - name: {PROVIDER}\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n    matchImages:\n"
    );
    for m in match_images(config) {
        out += &format!("      - {}\n", quoted(&m));
    }
    // The response carries its own cacheDuration (the token's life minus the margin).
    out += "    defaultCacheDuration: \"6h\"\n";
    if let Some(kind) = workload {
        let audience = match kind {
            ExchangeKind::Irsa => IRSA_AUDIENCE,
            ExchangeKind::PodIdentity => POD_IDENTITY_AUDIENCE,
        };
        out += &format!(
            "    tokenAttributes:\n      serviceAccountTokenAudience: {audience}\n      cacheType: Token\n      requireServiceAccount: false\n"
        );
        if kind == ExchangeKind::Irsa {
            let key = if config.workload.role_annotation.is_empty() {
                DEFAULT_ROLE_ANNOTATION
            } else {
                &config.workload.role_annotation
            };
            out += &format!("      optionalServiceAccountAnnotationKeys:\n        - {key}\n");
        }
    }
    out += &format!(
        "    env:\n      - name: ECR_CREDD_SOCKET\n        value: {}\n",
        quoted(&config.socket.display().to_string())
    );
    out
}

/// What to tell the admin after writing `output`: the flags, and the same
/// for an EKS AL2023 node's nodeadm `NodeConfig`.
pub(crate) fn next_steps(output: &str) -> String {
    format!(
        "add to the kubelet's flags:\n  --image-credential-provider-config={output}\n  --image-credential-provider-bin-dir={BIN_DIR}\n\
         on EKS AL2023 nodes, in the user data's nodeadm NodeConfig:\n\
         ---\napiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  kubelet:\n    flags:\n      \
         - --image-credential-provider-config={output}\n      - --image-credential-provider-bin-dir={BIN_DIR}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::parse(text, std::path::Path::new("c.toml")).unwrap()
    }

    #[test]
    fn match_images_are_the_configured_hosts_and_the_ecr_patterns_only_when_unlisted_are_served() {
        let listed = "[[registry]]\nhost = \"111122223333.dkr.ecr.eu-west-1.amazonaws.com\"\nrole_arn = \"arn:aws:iam::111122223333:role/r\"\n";
        assert_eq!(
            match_images(&config(&format!("serve_unlisted_ecr = false\n{listed}"))),
            ["111122223333.dkr.ecr.eu-west-1.amazonaws.com"]
        );
        let all = match_images(&config(listed));
        assert_eq!(all.len(), 1 + ECR_PATTERNS.len());
        let text = provider_config(&config(listed), Some(ExchangeKind::Irsa), DEFAULT_OUTPUT);
        for needle in [
            "serviceAccountTokenAudience: sts.amazonaws.com",
            "cacheType: Token",
            "- eks.amazonaws.com/ecr-role-arn",
            "value: \"/run/ecr-credd/ecr-credd.sock\"",
        ] {
            assert!(text.contains(needle), "{needle} in\n{text}");
        }
    }

    #[test]
    fn hosts_match_as_the_kubelet_matches_them() {
        let ecr = "111122223333.dkr.ecr.eu-west-1.amazonaws.com";
        assert!(matches("*.dkr.ecr.*.amazonaws.com", ecr));
        assert!(matches(ecr, ecr));
        assert!(matches("1111*.dkr.ecr.eu-west-1.amazonaws.com", ecr));
        assert!(!matches("*.dkr.ecr.*.amazonaws.com", "111122223333.dkr.ecr.eu-west-1.amazonaws.com.cn"));
        assert!(!matches("*.amazonaws.com", ecr), "a * is one label");
        assert!(matches("127.0.0.1:5000", "127.0.0.1:5000"));
        assert!(!matches("127.0.0.1", "127.0.0.1:5000"), "the port must be the same");
        assert!(matches("127.0.0.1:5000/team", "127.0.0.1:5000"));
        // From the file configure writes, and from EKS's JSON.
        let written = provider_config(&config("serve_unlisted_ecr = false\n[[registry]]\nhost = \"127.0.0.1:5000\"\nregistry_id = \"111122223333\"\nregion = \"us-east-1\"\n"), None, DEFAULT_OUTPUT);
        assert_eq!(configured_images(&written), ["127.0.0.1:5000"]);
        let eks = r#"{"apiVersion":"kubelet.config.k8s.io/v1","kind":"CredentialProviderConfig","providers":[{"name":"ecr-credential-provider","matchImages":["*.dkr.ecr.*.amazonaws.com"]},{"name":"ecr-credd-kubelet-provider","matchImages":["a.example"]}]}"#;
        assert_eq!(configured_images(eks), ["a.example"]);
    }

    #[test]
    fn the_patterns_are_the_examples() {
        let example = include_str!("../../../examples/kubernetes/credential-provider-config.yaml");
        let listed: Vec<&str> = example
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- \"").and_then(|l| l.strip_suffix('"')))
            .collect();
        assert_eq!(listed, ECR_PATTERNS);
        assert_eq!(configured_images(example), ECR_PATTERNS, "read as doctor reads it");
    }
}
