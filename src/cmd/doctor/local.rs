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
        let dir = file.parent().map(|d| d.display().to_string()).unwrap_or_default();
        let is_docker = file.ends_with(".docker/config.json");
        // The exact command that makes the check pass.
        let fix = |hosts: &str| {
            let command = if is_docker {
                format!("ecr-credd configure docker --config-dir {dir} {hosts}")
            } else {
                "ecr-credd configure containers".to_owned()
            };
            format!("run: {command}\n(it routes each host to the helper: \"credHelpers\": {{\"HOST\": \"ecr-credd\"}})")
        };
        let Some(value) = value else {
            if required {
                let hosts: Vec<&str> = targets.iter().map(|t| t.registry.host.as_str()).collect();
                checks.push(Check::fail(
                    "client config",
                    None,
                    format!("{} is missing or not JSON", file.display()),
                    fix(&hosts.join(" ")),
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
            } else if !is_docker && containers_drop_in(homes).is_some() {
                // The drop-in asks the helper before any auth file.
                continue;
            } else {
                checks.push(Check::fail(
                    "client config",
                    Some(host),
                    format!("{} does not route it to the helper", file.display()),
                    fix(host),
                ));
            }
        }
    }
    if let Some(drop_in) = containers_drop_in(homes) {
        checks.push(Check::pass(
            "client config",
            None,
            format!("{} makes podman, skopeo and buildah ask the helper first", drop_in.display()),
        ));
    }
    checks
}

/// The `configure containers` drop-in, system-wide or the invoking user's.
fn containers_drop_in(homes: &[PathBuf]) -> Option<PathBuf> {
    let name = crate::cmd::configure::CONTAINERS_DROP_IN;
    std::iter::once(PathBuf::from("/etc/containers/registries.conf.d").join(name))
        .chain(homes.iter().take(1).map(|h| h.join(".config/containers/registries.conf.d").join(name)))
        .find(|p| p.exists())
}

/// Whether the kubelet's provider config asks ecr-credd's provider for each
/// target: the file given, or the one `configure kubelet` writes when there
/// is one (a node without a kubelet has nothing to check).
pub(super) fn kubelet_config(targets: &[Target], given: Option<&Path>) -> Vec<Check> {
    use crate::cmd::configure::kubelet::{configured_images, matches, DEFAULT_OUTPUT};
    let path = given.unwrap_or(Path::new(DEFAULT_OUTPUT));
    let fix = format!("run: ecr-credd configure kubelet --output {}", path.display());
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(_) if given.is_none() => return Vec::new(),
        Err(e) => return vec![Check::fail("kubelet config", None, format!("{}: {e}", path.display()), fix)],
    };
    let images = configured_images(&text);
    let theirs = !text.starts_with("# Written by `ecr-credd configure kubelet`");
    let fix = if theirs {
        format!("{fix} --force (it replaces the file), or add each host to matchImages")
    } else {
        fix
    };
    targets
        .iter()
        .map(|t| {
            let host = t.registry.host.as_str();
            match images.iter().find(|p| matches(p, host)) {
                Some(p) => Check::pass(
                    "kubelet config",
                    Some(host),
                    format!("{}: matchImages {p:?} sends it to the provider", path.display()),
                ),
                None => Check::fail(
                    "kubelet config",
                    Some(host),
                    format!("{}: no matchImages of ecr-credd-kubelet-provider matches it", path.display()),
                    fix.clone(),
                ),
            }
        })
        .collect()
}
