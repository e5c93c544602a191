//! Checks of single config values, kept apart from the parse loop.

use std::ops::Range;

use toml::Spanned;

use super::{RawRegistry, PUBLIC_ACCOUNT, PUBLIC_REGION};
use ecr_credd_client::registry::{is_account_id, is_region, parse_ecr_host};

/// An account and region, or the span and message of what is wrong.
pub(super) type Located = Result<(String, String), (Option<Range<usize>>, String)>;

/// ECR Public has no account to name and one region.
pub(super) fn public_location(r: &RawRegistry, host: &str, key: &dyn Fn(&str) -> String) -> Located {
    if let Some(id) = &r.registry_id {
        return Err((
            Some(id.span()),
            format!("{}: ECR Public host {host:?} has no registry id", key("registry_id")),
        ));
    }
    match &r.region {
        Some(reg) if reg.get_ref() != PUBLIC_REGION => Err((
            Some(reg.span()),
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
            return Err((
                Some(id.span()),
                format!(
                    "{}: {:?} contradicts the account {} in host {host:?}",
                    key("registry_id"),
                    id.get_ref(),
                    ecr.account
                ),
            ))
        }
        (Some(id), _) if !is_account_id(id.get_ref()) => {
            return Err((
                Some(id.span()),
                format!("{}: {:?} is not a 12-digit account id", key("registry_id"), id.get_ref()),
            ))
        }
        (Some(id), _) => id.get_ref().clone(),
        (None, Some(ecr)) => ecr.account.clone(),
        (None, None) => {
            return Err((
                Some(r.host.span()),
                format!("{}: required because host {host:?} is not an ECR hostname", key("registry_id")),
            ))
        }
    };
    let region = match (&r.region, &ecr) {
        (Some(reg), _) if !is_region(reg.get_ref()) => {
            return Err((
                Some(reg.span()),
                format!("{}: {:?} is not an AWS region name", key("region"), reg.get_ref()),
            ))
        }
        (Some(reg), Some(ecr)) if reg.get_ref() != &ecr.region => {
            return Err((
                Some(reg.span()),
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
            return Err((
                Some(r.host.span()),
                format!("{}: required because host {host:?} is not an ECR hostname", key("region")),
            ))
        }
    };
    Ok((account, region))
}

/// A proxy URL must be `http://` or `https://` with a host.
pub(super) fn check_proxy(proxy: Option<Spanned<String>>) -> Result<Option<String>, (Range<usize>, String)> {
    let Some(p) = proxy else { return Ok(None) };
    let url = p.get_ref();
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    match rest.map(|r| r.trim_end_matches('/')) {
        Some(r) if !r.is_empty() && !r.contains(['/', ' ']) => Ok(Some(url.clone())),
        _ => Err((p.span(), format!("aws.https_proxy: {url:?} is not an http:// or https:// proxy URL"))),
    }
}

/// `arn:<partition>:iam::<account>:role/<name>`.
pub(super) fn check_role_arn(arn: &str) -> Result<(), String> {
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

pub(super) fn is_session_name(name: &str) -> bool {
    (2..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// An optional region setting (`sts_region`), which must look like one.
pub(super) fn check_region(
    value: Option<Spanned<String>>,
    key: &str,
) -> Result<Option<String>, (Range<usize>, String)> {
    match value {
        None => Ok(None),
        Some(r) if is_region(r.get_ref()) => Ok(Some(r.into_inner())),
        Some(r) => Err((
            r.span(),
            format!("{key}: {:?} is not an AWS region name (e.g. eu-west-1, us-gov-west-1)", r.get_ref()),
        )),
    }
}
