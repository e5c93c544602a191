//! `[workload]` as written and as checked.

use super::*;

#[test]
fn role_patterns() {
    let arn = "arn:aws:iam::111122223333:role/pull-team-a";
    for (pattern, want) in [
        (arn, true),
        ("arn:aws:iam::111122223333:role/pull-*", true),
        ("arn:aws:iam::*:role/pull-team-a", true),
        ("arn:aws:iam::*:role/*-a", true),
        ("*", true),
        ("arn:aws:iam::111122223333:role/pull-", false),
        ("arn:aws:iam::444455556666:role/*", false),
        ("arn:aws:iam::111122223333:role/pull-team-a-*", false),
        ("arn:aws:iam::*:role/*-b", false),
    ] {
        assert_eq!(role_matches(pattern, arn), want, "{pattern}");
    }
}

#[test]
fn annotation_keys() {
    for good in ["eks.amazonaws.com/ecr-role-arn", "pull-role", "a.b/c_d.e"] {
        assert!(valid_annotation_key(good), "{good}");
    }
    for bad in ["", "/x", "Eks.com/x", "a/-x", "a/x-", "a b/c"] {
        assert!(!valid_annotation_key(bad), "{bad}");
    }
}

use crate::config::{parse, ConfigError};

fn workload(table: &str) -> Result<WorkloadConfig, String> {
    match parse(&format!("[workload]\n{table}\n"), std::path::Path::new("c.toml")) {
        Ok(c) => Ok(c.workload),
        Err(ConfigError::Invalid { line, message, .. }) => Err(format!("{line}: {message}")),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn off_unless_enabled_and_every_key_checked_with_its_line() {
    assert_eq!(workload("").unwrap(), WorkloadConfig::default());
    assert!(!WorkloadConfig::default().enabled, "an upgrade changes nothing");
    let c = workload("enabled = true\nexchange = \"pod-identity\"\nfallback = \"deny\"\nmax_cached = 10")
        .unwrap();
    assert_eq!((c.exchange, c.fallback, c.max_cached), (ExchangeKind::PodIdentity, Fallback::Deny, 10));
    assert_eq!(
        workload("exchange = \"oidc\"").unwrap_err(),
        "2: workload.exchange: \"oidc\" is not one of \"irsa\", \"pod-identity\""
    );
    assert_eq!(
        workload("fallback = \"allow\"").unwrap_err(),
        "2: workload.fallback: \"allow\" is not one of \"node\", \"deny\""
    );
    assert!(workload("max_cached = 0").unwrap_err().contains("workload.max_cached: 0 is outside"));
    assert!(workload("allowed_roles = [\"pod-*\"]").unwrap_err().contains("is not a role ARN pattern"));
    assert!(workload("role_annotation = \"bad key/\"")
        .unwrap_err()
        .contains("not a Kubernetes annotation key"));
    assert!(workload("exchnage = \"irsa\"").is_err(), "an unknown key is refused");
}

#[test]
fn the_agent_is_only_ever_its_link_local_addresses_or_loopback() {
    for url in [
        POD_IDENTITY_AGENT,
        POD_IDENTITY_AGENT_V6,
        "http://[fd00:ec2::23]:80/v1/credentials",
        "http://127.0.0.1:8080/v1/credentials",
        "http://[::1]:8080/v1/credentials",
        "http://localhost:2703/v1/credentials",
    ] {
        let c = workload(&format!("pod_identity_endpoint = \"{url}\"")).unwrap();
        assert_eq!(c.pod_identity_endpoint, url);
    }
    for url in [
        "https://169.254.170.23/v1/credentials",
        "http://169.254.170.23.example.com/v1/credentials",
        "http://169.254.170.23@example.com/v1/credentials",
        "http://[fd00:ec2::24]/v1/credentials",
        "http://10.0.0.1/v1/credentials",
        "169.254.170.23/v1/credentials",
    ] {
        let err = workload(&format!("pod_identity_endpoint = \"{url}\"")).unwrap_err();
        assert!(err.starts_with("2: workload.pod_identity_endpoint:"), "{url}: {err}");
    }
}
