//! Checks of single config values, kept apart from the parse loop.

use std::ops::Range;

use toml::Spanned;

use super::{RawRegistry, PUBLIC_ACCOUNT, PUBLIC_REGION};
use ecr_credd_client::registry::{is_account_id, is_public_host, is_region, parse_ecr_host};

/// A value the config may not have: where it stands and what is wrong,
/// naming the key.
#[derive(Debug)]
pub(super) struct Invalid {
    /// The value's bytes in the file; `None` for the start of the file.
    pub(super) span: Option<Range<usize>>,
    /// What is wrong, naming the key.
    pub(super) message: String,
}

impl Invalid {
    /// `value` is wrong because of `message`.
    pub(super) fn at<T>(value: &Spanned<T>, message: String) -> Self {
        Invalid { span: Some(value.span()), message }
    }
}

/// An account and region, or what is wrong.
pub(super) type Located = Result<(String, String), Invalid>;

/// ECR Public has no account to name and one region.
pub(super) fn public_location(r: &RawRegistry, host: &str, key: &dyn Fn(&str) -> String) -> Located {
    if let Some(id) = &r.registry_id {
        return Err(Invalid::at(
            id,
            format!("{}: ECR Public host {host:?} has no registry id", key("registry_id")),
        ));
    }
    match &r.region {
        Some(reg) if reg.get_ref() != PUBLIC_REGION => Err(Invalid::at(
            reg,
            format!(
                "{}: ECR Public's API runs only in {PUBLIC_REGION}, not {:?}",
                key("region"),
                reg.get_ref()
            ),
        )),
        _ => Ok((PUBLIC_ACCOUNT.to_owned(), PUBLIC_REGION.to_owned())),
    }
}

/// The account and region from the ECR hostname, the keys, or both if they agree.
pub(super) fn private_location(r: &RawRegistry, host: &str, key: &dyn Fn(&str) -> String) -> Located {
    let ecr = parse_ecr_host(host);
    let account = match (&r.registry_id, &ecr) {
        (Some(id), Some(ecr)) if id.get_ref() != &ecr.account => {
            return Err(Invalid::at(
                id,
                format!(
                    "{}: {:?} contradicts the account {} in host {host:?}",
                    key("registry_id"),
                    id.get_ref(),
                    ecr.account
                ),
            ))
        }
        (Some(id), _) if !is_account_id(id.get_ref()) => {
            return Err(Invalid::at(
                id,
                format!("{}: {:?} is not a 12-digit account id", key("registry_id"), id.get_ref()),
            ))
        }
        (Some(id), _) => id.get_ref().clone(),
        (None, Some(ecr)) => ecr.account.clone(),
        (None, None) => {
            return Err(Invalid::at(
                &r.host,
                format!("{}: required because host {host:?} is not an ECR hostname", key("registry_id")),
            ))
        }
    };
    let region = match (&r.region, &ecr) {
        (Some(reg), _) if !is_region(reg.get_ref()) => {
            return Err(Invalid::at(
                reg,
                format!("{}: {:?} is not an AWS region name", key("region"), reg.get_ref()),
            ))
        }
        (Some(reg), Some(ecr)) if reg.get_ref() != &ecr.region => {
            return Err(Invalid::at(
                reg,
                format!(
                    "{}: {:?} contradicts the region {} in host {host:?}",
                    key("region"),
                    reg.get_ref(),
                    ecr.region
                ),
            ))
        }
        (Some(reg), _) => reg.get_ref().clone(),
        (None, Some(ecr)) => ecr.region.clone(),
        (None, None) => {
            return Err(Invalid::at(
                &r.host,
                format!("{}: required because host {host:?} is not an ECR hostname", key("region")),
            ))
        }
    };
    Ok((account, region))
}

/// A proxy URL must be `http://` or `https://` with a host.
pub(super) fn check_proxy(proxy: Option<Spanned<String>>) -> Result<Option<String>, Invalid> {
    let Some(p) = proxy else { return Ok(None) };
    let url = p.get_ref();
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    match rest.map(|r| r.trim_end_matches('/')) {
        Some(r) if !r.is_empty() && !r.contains(['/', ' ']) => Ok(Some(url.clone())),
        _ => {
            // Redacted first: a password with a `/` or a space is what fails here.
            let shown = crate::aws::http::redact_userinfo(url);
            Err(Invalid::at(
                &p,
                format!("aws.https_proxy: {shown:?} is not an http:// or https:// proxy URL"),
            ))
        }
    }
}

/// `arn:<partition>:iam::<account>:role/<name>`.
fn check_role_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && is_account_id(parts[4])
        && parts[5].strip_prefix("role/").is_some_and(|n| !n.is_empty());
    if ok {
        Ok(())
    } else {
        Err(format!("{arn:?} is not an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)"))
    }
}

fn is_session_name(name: &str) -> bool {
    (2..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// Whether the registry is ECR Public: as `public` says, else by its host.
pub(super) fn is_public(r: &RawRegistry, host: &str, key: &dyn Fn(&str) -> String) -> Result<bool, Invalid> {
    match &r.public {
        Some(p) if !*p.get_ref() && is_public_host(host) => {
            Err(Invalid::at(p, format!("{}: {host:?} is ECR Public; remove public = false", key("public"))))
        }
        Some(p) => Ok(*p.get_ref()),
        None => Ok(is_public_host(host)),
    }
}

/// The role settings: `role_arn` must be a role's ARN, `external_id` goes
/// with a role, and the session name (or the default) fits STS's rules.
pub(super) fn check_role(r: &RawRegistry, key: &dyn Fn(&str) -> String) -> Result<String, Invalid> {
    if let Some(arn) = &r.role_arn {
        check_role_arn(arn.get_ref())
            .map_err(|why| Invalid::at(arn, format!("{}: {why}", key("role_arn"))))?;
    }
    if let Some(ext) = &r.external_id {
        if !(2..=1224).contains(&ext.get_ref().len()) {
            return Err(Invalid::at(ext, format!("{}: must be 2-1224 characters", key("external_id"))));
        }
        if r.role_arn.is_none() {
            return Err(Invalid::at(ext, format!("{}: only makes sense with role_arn", key("external_id"))));
        }
    }
    match &r.session_name {
        Some(name) if !is_session_name(name.get_ref()) => Err(Invalid::at(
            name,
            format!(
                "{}: {:?} must be 2-64 characters of letters, digits and +=,.@_-",
                key("session_name"),
                name.get_ref()
            ),
        )),
        Some(name) => Ok(name.get_ref().clone()),
        None => Ok(super::DEFAULT_SESSION_NAME.to_owned()),
    }
}

/// An optional region setting (`sts_region`), which must look like one.
pub(super) fn check_region(value: Option<Spanned<String>>, key: &str) -> Result<Option<String>, Invalid> {
    match value {
        None => Ok(None),
        Some(r) if is_region(r.get_ref()) => Ok(Some(r.into_inner())),
        Some(r) => Err(Invalid::at(
            &r,
            format!("{key}: {:?} is not an AWS region name (e.g. eu-west-1, us-gov-west-1)", r.get_ref()),
        )),
    }
}
