//! `[workload]`: per-workload pulls (KEP-4412), where the kubelet passes each
//! pod's service-account token and the daemon exchanges it for the pod's
//! own role. Off unless enabled, so an upgrade changes nothing.

use serde::Deserialize;
use toml::Spanned;

use super::validate::Invalid;

/// The annotation naming a pod's pull role unless `role_annotation` says otherwise.
pub const DEFAULT_ROLE_ANNOTATION: &str = ecr_credd_client::kubelet::ROLE_ANNOTATION;
/// The EKS Pod Identity Agent's IPv4 address and path.
pub const POD_IDENTITY_AGENT: &str = "http://169.254.170.23/v1/credentials";
/// The agent's IPv6 address and path.
pub const POD_IDENTITY_AGENT_V6: &str = "http://[fd00:ec2::23]/v1/credentials";
/// Most workload tokens cached unless `max_cached` says otherwise.
pub const DEFAULT_MAX_CACHED: usize = 1024;

/// How a workload's token becomes AWS credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum ExchangeKind {
    /// IRSA: `sts:AssumeRoleWithWebIdentity` into the role the pod's service
    /// account names in its annotation.
    Irsa,
    /// EKS Pod Identity: the node's agent returns the credentials of the
    /// pod's association.
    PodIdentity,
}

impl ExchangeKind {
    /// The config's spelling, also the metrics' `exchange` label.
    pub fn name(self) -> &'static str {
        match self {
            ExchangeKind::Irsa => "irsa",
            ExchangeKind::PodIdentity => "pod-identity",
        }
    }
}

/// What a request without a workload identity to exchange gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The node's credentials, as without `[workload]`.
    Node,
    /// A refusal: every pod must pull as itself.
    Deny,
}

/// The validated `[workload]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// Whether the daemon exchanges workload tokens at all.
    pub enabled: bool,
    /// How it exchanges them.
    pub exchange: ExchangeKind,
    /// The service-account annotation that names the role (IRSA).
    pub role_annotation: String,
    /// What a pod with no token, or (IRSA) no role, gets.
    pub fallback: Fallback,
    /// Role ARN patterns (`*` matches any run) pods may name; empty: any.
    /// STS's trust policy is the real gate; this is defence in depth.
    pub allowed_roles: Vec<String>,
    /// Assume the registry's own `role_arn` with the workload's credentials
    /// (role chaining), for registries whose role trusts workload roles.
    pub assume_registry_role: bool,
    /// Most workload tokens held at once (least recently used go first).
    pub max_cached: usize,
    /// The Pod Identity Agent's URL (tests point it at a double).
    pub pod_identity_endpoint: String,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            enabled: false,
            exchange: ExchangeKind::Irsa,
            role_annotation: DEFAULT_ROLE_ANNOTATION.to_owned(),
            fallback: Fallback::Node,
            allowed_roles: Vec::new(),
            assume_registry_role: false,
            max_cached: DEFAULT_MAX_CACHED,
            pod_identity_endpoint: POD_IDENTITY_AGENT.to_owned(),
        }
    }
}

/// `[workload]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkload {
    enabled: Option<bool>,
    exchange: Option<Spanned<String>>,
    role_annotation: Option<Spanned<String>>,
    fallback: Option<Spanned<String>>,
    #[serde(default)]
    allowed_roles: Vec<Spanned<String>>,
    assume_registry_role: Option<bool>,
    max_cached: Option<Spanned<u64>>,
    pod_identity_endpoint: Option<Spanned<String>>,
}

/// The checked `[workload]` table.
pub(super) fn resolve(raw: RawWorkload) -> Result<WorkloadConfig, Invalid> {
    let d = WorkloadConfig::default();
    let exchange = match raw.exchange {
        None => d.exchange,
        Some(e) => keyword(
            &e,
            "exchange",
            &[("irsa", ExchangeKind::Irsa), ("pod-identity", ExchangeKind::PodIdentity)],
        )?,
    };
    let fallback = match raw.fallback {
        None => d.fallback,
        Some(f) => keyword(&f, "fallback", &[("node", Fallback::Node), ("deny", Fallback::Deny)])?,
    };
    let role_annotation = match raw.role_annotation {
        None => d.role_annotation,
        Some(a) if valid_annotation_key(a.get_ref()) => a.into_inner(),
        Some(a) => {
            return Err(Invalid::at(
                &a,
                format!("workload.role_annotation: {:?} is not a Kubernetes annotation key", a.get_ref()),
            ))
        }
    };
    let mut allowed_roles = Vec::with_capacity(raw.allowed_roles.len());
    for (i, p) in raw.allowed_roles.into_iter().enumerate() {
        if !p.get_ref().starts_with("arn:") || p.get_ref().contains(char::is_whitespace) {
            return Err(Invalid::at(
                &p,
                format!(
                    "workload.allowed_roles[{i}]: {:?} is not a role ARN pattern (arn:PARTITION:iam::ACCOUNT:role/NAME, * for any run)",
                    p.get_ref()
                ),
            ));
        }
        allowed_roles.push(p.into_inner());
    }
    let max_cached = match raw.max_cached {
        None => d.max_cached,
        Some(m) if (1..=1_000_000).contains(m.get_ref()) => *m.get_ref() as usize,
        Some(m) => {
            return Err(Invalid::at(
                &m,
                format!("workload.max_cached: {} is outside 1..=1000000", m.get_ref()),
            ))
        }
    };
    let pod_identity_endpoint = match raw.pod_identity_endpoint {
        None => d.pod_identity_endpoint,
        Some(u) => check_agent_url(&u)?,
    };
    Ok(WorkloadConfig {
        enabled: raw.enabled.unwrap_or(false),
        exchange,
        role_annotation,
        fallback,
        allowed_roles,
        assume_registry_role: raw.assume_registry_role.unwrap_or(false),
        max_cached,
        pod_identity_endpoint,
    })
}

/// The value `choices` names for `v`, or an error listing them.
fn keyword<T: Copy>(v: &Spanned<String>, key: &str, choices: &[(&str, T)]) -> Result<T, Invalid> {
    match choices.iter().find(|(name, _)| name == v.get_ref()) {
        Some((_, value)) => Ok(*value),
        None => {
            let names: Vec<String> = choices.iter().map(|(name, _)| format!("{name:?}")).collect();
            Err(Invalid::at(
                v,
                format!("workload.{key}: {:?} is not one of {}", v.get_ref(), names.join(", ")),
            ))
        }
    }
}

/// `prefix/name` or `name`, as Kubernetes allows annotation keys.
fn valid_annotation_key(key: &str) -> bool {
    let (prefix, name) = key.rsplit_once('/').unwrap_or(("", key));
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    let prefix_ok = prefix.len() <= 253
        && prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c));
    name_ok && prefix_ok && !(key.contains('/') && prefix.is_empty())
}

/// The agent is plain HTTP on a link-local address; anything else would send
/// pods' tokens off the node. Loopback is allowed for tests and local agents.
fn check_agent_url(u: &Spanned<String>) -> Result<String, Invalid> {
    let url = u.get_ref();
    let host = url.strip_prefix("http://").and_then(|rest| {
        let authority = rest.split('/').next()?;
        Some(match authority.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) && !h.ends_with(':') => h,
            _ => authority,
        })
    });
    let allowed = host.is_some_and(|h| {
        let h = h.trim_start_matches('[').trim_end_matches(']');
        matches!(h, "169.254.170.23" | "fd00:ec2::23" | "localhost")
            || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    });
    if !allowed {
        return Err(Invalid::at(
            u,
            format!(
                "workload.pod_identity_endpoint: {url:?} is not the Pod Identity Agent ({POD_IDENTITY_AGENT} or {POD_IDENTITY_AGENT_V6}) nor a loopback http:// URL"
            ),
        ));
    }
    Ok(url.clone())
}

/// Whether `role_arn` matches `pattern`, where `*` matches any run of characters.
pub fn role_matches(pattern: &str, role_arn: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = role_arn.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests;
