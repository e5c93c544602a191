//! Doctor's checks on this machine: the daemon's socket and the tokens it
//! holds, and the clients' configuration.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Check, Target};
use ecr_credd_client::client;
use ecr_credd_client::groups::group_name;
use ecr_credd_client::wire::{RegistryStatus, Request, RequestBody, ResponseBody};

/// The daemon: socket present, its mode and group, reachable, tokens ready.
pub(super) async fn daemon(socket: &Path, targets: &[Target]) -> Vec<Check> {
    let start = "start it: systemctl enable --now ecr-credd.socket ecr-credd.service";
    let meta = match std::fs::metadata(socket) {
        Ok(m) => m,
        Err(e) => {
            return vec![Check::fail(
                "daemon socket",
                None,
                format!("{}: {e}", socket.display()),
                start.into(),
            )]
        }
    };
    let group = group_name(meta.gid());
    let join = format!("add this user to the socket's group (sudo usermod -aG {group} USER, then log in again), or to [server] allowed_uids");
    let mut checks = vec![Check::pass(
        "daemon socket",
        None,
        format!("{} mode {:04o} group {}", socket.display(), meta.permissions().mode() & 0o7777, group),
    )];
    let path = socket.to_owned();
    let status =
        tokio::task::spawn_blocking(move || client::request(&path, &Request::new(RequestBody::Status))).await;
    match status {
        Ok(Ok(resp)) => match resp.body {
            ResponseBody::Status { registries, .. } => checks.extend(token_checks(&registries, targets)),
            ResponseBody::Error { message, .. } => {
                checks.push(Check::fail("daemon access", None, message, join))
            }
            _ => checks.push(Check::fail(
                "daemon access",
                None,
                "unexpected answer".into(),
                "upgrade ecr-credd and the helper together".into(),
            )),
        },
        // A socket file nobody listens on (the daemon stopped) is not a
        // permission problem: joining the group would not help.
        Ok(Err(e @ client::ClientError::Connect { .. })) => {
            checks.push(Check::fail("daemon access", None, e.to_string(), start.into()))
        }
        Ok(Err(e)) => checks.push(Check::fail("daemon access", None, e.to_string(), join)),
        Err(e) => checks.push(Check::fail("daemon access", None, e.to_string(), start.into())),
    }
    checks
}

/// Whether the running daemon holds a usable token for each target.
fn token_checks(registries: &[RegistryStatus], targets: &[Target]) -> Vec<Check> {
    let check = |t: &Target| {
        let host = Some(t.registry.host.as_str());
        match registries.iter().find(|s| s.host == t.registry.host) {
            Some(s) if s.ready => Check::pass("daemon token", host, "the daemon holds a usable token".into()),
            Some(s) => Check::fail(
                "daemon token",
                host,
                s.last_error.clone().unwrap_or_else(|| "no token yet".into()),
                "see the failing step above; the daemon retries with backoff".into(),
            ),
            None => Check::fail(
                "daemon token",
                host,
                "the running daemon does not serve this registry".into(),
                "add it to the config and run: systemctl reload ecr-credd".into(),
            ),
        }
    };
    targets.iter().map(check).collect()
}

/// Whether docker's and containers' auth files route each host to the helper.
pub(super) fn client_config(targets: &[Target], homes: &[PathBuf]) -> Vec<Check> {
    // The invoking user's docker config must exist; the others are checked when present.
    let mut files: Vec<PathBuf> = homes.iter().take(1).map(|h| h.join(".docker/config.json")).collect();
    let mut optional: Vec<PathBuf> =
        homes.iter().skip(1).map(|h| h.join(".docker/config.json")).filter(|f| !files.contains(f)).collect();
    files.dedup();
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE") {
        optional.push(PathBuf::from(f));
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        optional.push(PathBuf::from(d).join("containers/auth.json"));
    }
    let mut checks = Vec::new();
    for (file, required) in files.iter().map(|f| (f, true)).chain(optional.iter().map(|f| (f, false))) {
        let value: Option<serde_json::Value> =
            std::fs::read_to_string(file).ok().and_then(|t| serde_json::from_str(&t).ok());
        let Some(value) = value else {
            if required {
                let snippet = format!(
                    "{{\"credHelpers\": {{{}}}}}",
                    targets
                        .iter()
                        .map(|t| format!("\"{}\": \"ecr-credd\"", t.registry.host))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                checks.push(Check::fail(
                    "client config",
                    None,
                    format!("{} is missing or not JSON", file.display()),
                    format!("create it with: {snippet}"),
                ));
            }
            continue;
        };
        for t in targets {
            let host = t.registry.host.as_str();
            let helper = value["credHelpers"][host].as_str();
            let store = value["credsStore"].as_str();
            if helper == Some("ecr-credd") || (helper.is_none() && store == Some("ecr-credd")) {
                checks.push(Check::pass(
                    "client config",
                    Some(host),
                    format!("{} routes it to docker-credential-ecr-credd", file.display()),
                ));
            } else {
                checks.push(Check::fail(
                    "client config",
                    Some(host),
                    format!("{} does not route it to the helper", file.display()),
                    format!("add to {}: \"credHelpers\": {{\"{host}\": \"ecr-credd\"}}", file.display()),
                ));
            }
        }
    }
    checks
}
