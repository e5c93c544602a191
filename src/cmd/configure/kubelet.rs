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
    fn the_patterns_are_the_examples() {
        let example = include_str!("../../../examples/kubernetes/credential-provider-config.yaml");
        let listed: Vec<&str> = example
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- \"").and_then(|l| l.strip_suffix('"')))
            .collect();
        assert_eq!(listed, ECR_PATTERNS);
    }
}
