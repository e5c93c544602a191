//! `check-config`: the config as the daemon will read it, with the socket,
//! the proxy and each registry's endpoints, or the exact error.

use std::path::PathBuf;

use anyhow::Result;

use super::{load_config, table};
use crate::config::Config;

/// `check-config`: the resolved registries, or the exact error.
pub(super) fn check_config(flag: Option<PathBuf>) -> Result<String> {
    let (path, c) = load_config(flag)?;
    let mut out = format!("{}: OK\n", path.display());
    let group = c.socket_group.name();
    let missing = match crate::daemon::socket_gid(&c)? {
        Some(_) => "",
        None => ", which does not exist here: only root and the daemon's user could connect",
    };
    out += &format!(
        "socket: {} (group {group}{missing}; a socket from systemd keeps its SocketGroup=)\n",
        c.socket.display()
    );
    if let Some(addr) = c.health_listen {
        out += &format!("health: {addr}\n");
    }
    out += &match crate::aws::http::Proxy::resolve(&c) {
        Some(p) => format!("AWS proxy: {} (bypassed for {})\n", p.display_url(), p.no_proxy()),
        None => "AWS proxy: none (direct)\n".to_owned(),
    };
    out += &format!(
        "unlisted ECR hosts: {}\n",
        if c.serve_unlisted_ecr { "served with instance credentials" } else { "refused" }
    );
    let rows: Vec<[String; 4]> = c
        .registries
        .iter()
        .map(|r| {
            [
                r.host.clone(),
                r.account.clone(),
                r.region.clone(),
                r.role_arn.clone().unwrap_or_else(|| "(instance credentials)".into()),
            ]
        })
        .collect();
    out += &table(["HOST", "ACCOUNT", "REGION", "ROLE"], &rows);
    out += &endpoint_lines(&c);
    Ok(out)
}

/// Per registry, the STS and ECR endpoints its calls go to, as the SDKs
/// resolve them. Without `sts_region` STS is called in this instance's region,
/// which only IMDS knows at run time: the line says which region stands in.
fn endpoint_lines(c: &Config) -> String {
    let settings = crate::aws::chain::AwsSettings::from_config(c);
    let mut out = String::new();
    for r in &c.registries {
        // The daemon's own order, without the instance's region (IMDS).
        let (sts_region, fips) = settings.sts_target(r, None);
        let configured = r.sts_region.is_some() || c.sts_region.is_some();
        let note = if configured { "" } else { " (or this instance's region, when IMDS gives it)" };
        let line = match crate::aws::ecr::endpoints(r, &sts_region, fips) {
            Ok((sts, ecr)) => format!(
                "{}: AssumeRole at {sts}{note}; GetAuthorizationToken at {ecr}{}\n",
                r.host,
                if r.role_arn.is_none() { " (no role: STS only tells /status who we are)" } else { "" }
            ),
            Err(e) => format!("{}: no endpoint: {e}\n", r.host),
        };
        out += &line;
    }
    out
}
