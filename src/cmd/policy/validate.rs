//! The flags' values, checked as IAM and Kubernetes accept them, before any
//! document is built from them.

use ecr_credd_client::registry::is_account_id;

use super::{PolicyError, Setup};

/// A name IAM accepts: letters, digits, `_-.` and the `extra` bytes, 1 to 256 of them.
pub(super) fn check_name(flag: &'static str, value: &str, extra: &[u8]) -> Result<(), PolicyError> {
    let ok = !value.is_empty()
        && value.len() <= 256
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b) || extra.contains(&b));
    if ok {
        Ok(())
    } else {
        Err(PolicyError::Name { flag, value: value.into() })
    }
}

/// The issuer an EKS cluster's OIDC provider ARN names
/// (`arn:aws:iam::ACCOUNT:oidc-provider/oidc.eks.REGION.amazonaws.com/id/ID`).
pub(super) fn oidc_issuer(provider: &str) -> Result<String, PolicyError> {
    provider
        .split_once(":oidc-provider/")
        .map(|(_, issuer)| issuer.to_owned())
        .filter(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| PolicyError::Name { flag: "--oidc-provider", value: provider.to_owned() })
}

impl Setup {
    /// Every account id and name must be one IAM accepts.
    pub(in crate::cmd) fn check(&self) -> Result<(), PolicyError> {
        for (flag, value) in
            [("--registry-account", &self.registry_account), ("--instance-account", &self.instance_account)]
        {
            if !is_account_id(value) {
                return Err(PolicyError::Account { flag, value: value.clone() });
            }
        }
        check_name("--role-name", &self.role_name, b"+=,@")?;
        if let Some(r) = &self.instance_role {
            check_name("--instance-role", r, b"+=,@")?;
        }
        for r in &self.repositories {
            check_name("--repository", r, b"/")?;
        }
        Ok(())
    }

    /// The service account as (namespace, name): `--service-account NS/NAME`,
    /// or `--namespace NS --service-account NAME`.
    pub(super) fn service_account(&self) -> Result<Option<(String, String)>, PolicyError> {
        let Some(account) = &self.service_account else {
            return match &self.namespace {
                Some(_) => Err(PolicyError::Missing { flag: "--service-account", why: "with --namespace" }),
                None => Ok(None),
            };
        };
        let bad = || PolicyError::Name { flag: "--service-account", value: account.clone() };
        let (ns, name) = match &self.namespace {
            Some(ns) => (ns.as_str(), account.as_str()),
            None => account.split_once('/').ok_or_else(bad)?,
        };
        // Kubernetes names: DNS labels (namespaces) and subdomains (accounts).
        let valid = |s: &str, extra: &[u8]| {
            !s.is_empty()
                && s.len() <= 253
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || extra.contains(&b))
        };
        if !valid(ns, b"") {
            return Err(PolicyError::Name { flag: "--namespace", value: ns.to_owned() });
        }
        if !valid(name, b".") {
            return Err(bad());
        }
        Ok(Some((ns.to_owned(), name.to_owned())))
    }
}
