//! Doctor's checks on this machine and the registry: the registry accepts
//! the token, the daemon's socket, and the clients' configuration.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use http_body_util::Empty;
use hyper::body::Bytes;

use super::classify::repository_fix;
use super::report::Report;
use super::{Check, Target};
use crate::cmd::iam::Setup;
use crate::config::RegistryConfig;
use ecr_credd_client::client;
use ecr_credd_client::groups::group_name;
use ecr_credd_client::wire::{RegistryStatus, Request, RequestBody, ResponseBody};

/// Plain HTTP only for a loopback address (a test registry), HTTPS for
/// everything else: the request carries the token, and a name that merely
/// starts like one (`localhost.corp.example`, `127.example`) is not loopback.
fn base_url(host: &str) -> String {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host
            .rsplit_once(':')
            .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h),
    };
    let loopback = name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    format!("{}://{host}", if loopback { "http" } else { "https" })
}

/// `GET /v2/` (or the repository's tag list, or `HEAD` of a tag's manifest)
/// with the token.
pub(super) async fn registry_reachable(
    r: &RegistryConfig,
    repo: Option<&str>,
    (user, secret): (&str, &str),
    setup: &Setup,
    report: &mut Report,
) {
    let host = Some(r.host.as_str());
    // HOST/REPO:TAG heads the manifest; HOST/REPO lists tags; HOST alone is /v2/.
    let path = match repo.map(|r| r.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')).ok_or(r)) {
        None => "/v2/".to_owned(),
        Some(Ok((name, tag))) => format!("/v2/{name}/manifests/{tag}"),
        Some(Err(name)) => format!("/v2/{name}/tags/list"),
    };
    let method = if path.contains("/manifests/") { hyper::Method::HEAD } else { hyper::Method::GET };
    let url = format!("{}{path}", base_url(&r.host));
    let connector = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(b) => b.https_or_http().enable_http1().build(),
        Err(e) => {
            return report.fail(
                "registry",
                host,
                format!("no TLS roots: {e}"),
                "install ca-certificates".into(),
            )
        }
    };
    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
    let request = hyper::Request::builder()
        .method(method.clone())
        .uri(&url)
        .header(hyper::header::AUTHORIZATION, format!("Basic {auth}"))
        .header(hyper::header::ACCEPT, MANIFEST_TYPES)
        .body(Empty::<Bytes>::new());
    let request = match request {
        Ok(req) => req,
        Err(e) => return report.fail("registry", host, format!("{url}: {e}"), "check the host name".into()),
    };
    let late = (format!("{url}: no answer in time"), "check outbound HTTPS to the registry".to_owned());
    let probe = format!("{method} {path}");
    report
        .step("registry", host, client.request(request), late, |answer| match answer {
            Ok(resp) => judge_registry(resp.status().as_u16(), &probe, repo.is_some(), setup),
            Err(e) => Err((
                format!("{url}: {e}"),
                "check DNS, the VPC endpoint for ECR (dkr), and outbound HTTPS".into(),
            )),
        })
        .await;
}

/// Every manifest type a pull accepts, so a tag of any kind answers.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// What the registry's answer to `probe` (`METHOD PATH`) says.
fn judge_registry(
    status: u16,
    probe: &str,
    has_repo: bool,
    setup: &Setup,
) -> Result<((), String), (String, String)> {
    match status {
        200..=299 => Ok(((), format!("{probe} with the token: HTTP {status}"))),
        401 | 403 => Err((format!("{probe} refused the token: HTTP {status}"), repository_fix(setup))),
        404 if has_repo => Err((
            format!("{probe}: HTTP 404"),
            "the repository does not exist (or the name is misspelt)".into(),
        )),
        _ => Err((format!("{probe}: HTTP {status}"), "unexpected answer from the registry".into())),
    }
}

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

#[cfg(test)]
mod tests {
    use super::base_url;

    #[test]
    fn plain_http_only_for_exact_loopback_addresses() {
        for host in ["127.0.0.1:5000", "127.1.2.3", "localhost", "localhost:5000", "[::1]:5000", "[::1]"] {
            assert!(base_url(host).starts_with("http://"), "{host}");
        }
        for host in [
            "localhost.corp.example",
            "localhost.corp.example:5000",
            "127.example",
            "127.0.0.1.nip.example",
            "111122223333.dkr.ecr.eu-west-1.amazonaws.com",
            "[::2]:5000",
        ] {
            assert!(base_url(host).starts_with("https://"), "{host}");
        }
    }
}
