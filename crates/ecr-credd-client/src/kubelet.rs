//! The kubelet image credential provider (`credentialprovider.kubelet.k8s.io/v1`):
//! reads a `CredentialProviderRequest`, asks the daemon, answers a
//! `CredentialProviderResponse`. Blocking and SDK-free, like the helper.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::client;
use crate::secret::Secret;
use crate::wire::{ErrorKind, Request, RequestBody, ResponseBody};

/// The only API version the kubelet speaks to us.
pub const API_VERSION: &str = "credentialprovider.kubelet.k8s.io/v1";
/// The kubelet caches no longer than the token stays usable minus this.
pub const CACHE_MARGIN_SECS: u64 = 5 * 60;
/// Most bytes read from stdin.
pub use crate::client::MAX_STDIN;

/// The kubelet's request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialProviderRequest {
    /// Must be [`API_VERSION`].
    pub api_version: String,
    /// Must be `CredentialProviderRequest`.
    pub kind: String,
    /// The image being pulled, e.g. `HOST/repo:tag`.
    pub image: String,
    /// The pod's bound service-account token for the configured audience
    /// (KEP-4412, `tokenAttributes`); absent when the kubelet sends none.
    #[serde(default)]
    pub service_account_token: Secret,
    /// The service account's annotations named in `tokenAttributes`.
    #[serde(default)]
    pub service_account_annotations: BTreeMap<String, String>,
}

/// The annotation a pod's service account names its pull role with, unless
/// the daemon's `[workload] role_annotation` says otherwise.
pub const ROLE_ANNOTATION: &str = "eks.amazonaws.com/ecr-role-arn";

/// Our answer.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialProviderResponse {
    /// [`API_VERSION`].
    pub api_version: &'static str,
    /// `CredentialProviderResponse`.
    pub kind: &'static str,
    /// `Registry`: one token serves every image of the registry.
    pub cache_key_type: &'static str,
    /// How long the kubelet may cache the answer, e.g. `21300s`.
    pub cache_duration: String,
    /// Credentials keyed by registry host.
    pub auth: BTreeMap<String, AuthConfig>,
}

/// Username and password for one registry.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct AuthConfig {
    /// `AWS`.
    pub username: String,
    /// The token's password.
    pub password: Secret,
}

/// The registry host of an image reference, by the docker reference rules:
/// the first path component if it looks like a host, else Docker Hub.
pub fn image_host(image: &str) -> &str {
    let image = image.strip_prefix("https://").unwrap_or(image);
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// Runs one request; returns the exit code. Errors go to stderr, where the kubelet logs them.
pub fn run(stdin: &mut dyn Read, stdout: &mut dyn Write, stderr: &mut dyn Write, socket: &Path) -> i32 {
    match answer(stdin, socket) {
        // The answer holds the token: zeroed once written.
        Ok(response) => match serde_json::to_string(&response).map(zeroize::Zeroizing::new) {
            Ok(text) if writeln!(stdout, "{}", text.as_str()).is_ok() => 0,
            _ => 1,
        },
        Err(msg) => {
            let _ = writeln!(stderr, "ecr-credd-kubelet-provider: {msg}");
            1
        }
    }
}

fn answer(stdin: &mut dyn Read, socket: &Path) -> Result<CredentialProviderResponse, String> {
    let buf = client::read_stdin(stdin)?;
    let request: CredentialProviderRequest =
        serde_json::from_slice(&buf).map_err(|e| format!("malformed CredentialProviderRequest: {e}"))?;
    if request.api_version != API_VERSION {
        return Err(format!(
            "unsupported apiVersion {:?}; this provider speaks {API_VERSION}",
            request.api_version
        ));
    }
    if request.kind != "CredentialProviderRequest" {
        return Err(format!("unexpected kind {:?}; expected CredentialProviderRequest", request.kind));
    }
    let host = image_host(&request.image);
    let workload = !request.service_account_token.is_empty();
    let names_role = !request.service_account_annotations.is_empty();
    let body = if workload || names_role {
        RequestBody::GetWorkload {
            host: host.to_owned(),
            service_account_token: request.service_account_token,
            service_account_annotations: request.service_account_annotations,
        }
    } else {
        RequestBody::Get { host: host.to_owned() }
    };
    let response = client::request(socket, &Request::new(body)).map_err(|e| e.to_string())?;
    match response.body {
        ResponseBody::Credentials { host, username, secret, expires_at } => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let cache = expires_at.saturating_sub(now).saturating_sub(CACHE_MARGIN_SECS);
            Ok(CredentialProviderResponse {
                api_version: API_VERSION,
                kind: "CredentialProviderResponse",
                cache_key_type: "Registry",
                cache_duration: format!("{cache}s"),
                auth: BTreeMap::from([(host, AuthConfig { username, password: secret })]),
            })
        }
        ResponseBody::Error { kind: ErrorKind::NotFound, .. } => {
            Err(format!("{host} (from image {:?}) is not a registry ecr-credd serves", request.image))
        }
        // A daemon older than workload identity: fail closed, never fall
        // back to a plain get, which would hand the pod the node's credentials.
        ResponseBody::Error { kind: ErrorKind::BadRequest, message }
            if (workload || names_role) && message.starts_with("unsupported request") =>
        {
            Err(format!(
                "the kubelet sent this pod's service-account token, but the ecr-credd daemon is too old to \
                 pull with the pod's own identity, so nothing was served (not even the node's credentials); \
                 upgrade the daemon, or remove tokenAttributes from the kubelet's credential provider config \
                 ({message})"
            ))
        }
        ResponseBody::Error { message, .. } => Err(message),
        _ => Err("the daemon gave an answer that does not fit a get".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_hosts() {
        let cases = [
            (
                "111122223333.dkr.ecr.eu-west-1.amazonaws.com/app:v1",
                "111122223333.dkr.ecr.eu-west-1.amazonaws.com",
            ),
            (
                "111122223333.dkr.ecr.eu-west-1.amazonaws.com/team/app@sha256:00",
                "111122223333.dkr.ecr.eu-west-1.amazonaws.com",
            ),
            ("127.0.0.1:5000/app", "127.0.0.1:5000"),
            ("localhost/app", "localhost"),
            ("nginx", "docker.io"),
            ("library/nginx:1", "docker.io"),
        ];
        for (image, host) in cases {
            assert_eq!(image_host(image), host, "{image}");
        }
    }

    #[test]
    fn bad_requests_are_refused_on_stderr() {
        let cases = [
            ("{", "malformed CredentialProviderRequest"),
            (
                "{\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1alpha1\",\"kind\":\"CredentialProviderRequest\",\"image\":\"x/y\"}",
                "unsupported apiVersion \"credentialprovider.kubelet.k8s.io/v1alpha1\"",
            ),
            ("{\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"kind\":\"Other\",\"image\":\"x/y\"}", "unexpected kind"),
        ];
        for (input, want) in cases {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let code = run(&mut input.as_bytes(), &mut out, &mut err, Path::new("/nonexistent.sock"));
            let err = String::from_utf8(err).unwrap();
            assert_eq!(code, 1);
            assert!(out.is_empty());
            assert!(err.starts_with("ecr-credd-kubelet-provider: ") && err.contains(want), "{err}");
        }
    }

    /// The kubelet's request as upstream's `CredentialProviderRequest`
    /// serialises it (KEP-4412 fields omitted when empty).
    #[test]
    fn parses_the_upstream_request_with_and_without_the_token_fields() {
        let plain = r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"127.0.0.1:5000/app:v1"}"#;
        let r: CredentialProviderRequest = serde_json::from_str(plain).unwrap();
        assert!(r.service_account_token.is_empty() && r.service_account_annotations.is_empty());
        let kep = r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"127.0.0.1:5000/app:v1","serviceAccountToken":"eyJhbGciOiJSUzI1NiJ9.e30.sig","serviceAccountAnnotations":{"eks.amazonaws.com/ecr-role-arn":"arn:aws:iam::111122223333:role/pull"}}"#;
        let r: CredentialProviderRequest = serde_json::from_str(kep).unwrap();
        assert_eq!(r.service_account_token.expose(), "eyJhbGciOiJSUzI1NiJ9.e30.sig");
        assert_eq!(r.service_account_annotations[ROLE_ANNOTATION], "arn:aws:iam::111122223333:role/pull");
        assert!(!format!("{r:?}").contains("eyJ"), "Debug shows no token");
    }

    /// A daemon older than get_workload answers "unsupported request"; the
    /// provider fails closed rather than asking again with a plain get.
    #[test]
    fn an_old_daemon_makes_a_pod_with_a_token_fail_closed() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("old.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let old = std::thread::spawn(move || {
            use std::io::{BufRead, BufReader};
            let mut asked = Vec::new();
            for conn in listener.incoming().take(1) {
                let mut conn = conn.unwrap();
                let mut line = String::new();
                BufReader::new(&conn).read_line(&mut line).unwrap();
                asked.push(line);
                // What 0.x daemons answer an op they do not know (recorded).
                conn.write_all(b"{\"v\":1,\"type\":\"error\",\"kind\":\"bad_request\",\"message\":\"unsupported request: this ecr-credd daemon (0.9.0) answers get, list and status; upgrade the daemon to match the client\"}\n").unwrap();
            }
            asked
        });
        let input = r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"127.0.0.1:5000/app:v1","serviceAccountToken":"jwt","serviceAccountAnnotations":{"eks.amazonaws.com/ecr-role-arn":"arn:aws:iam::111122223333:role/pull"}}"#;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(&mut input.as_bytes(), &mut out, &mut err, &socket);
        let asked = old.join().unwrap();
        let err = String::from_utf8(err).unwrap();
        assert_eq!((code, out.len(), asked.len()), (1, 0, 1), "one request, no fallback get: {err}");
        assert!(asked[0].contains("\"op\":\"get_workload\""));
        assert!(err.contains("too old to pull with the pod's own identity"), "{err}");
    }

    #[test]
    fn golden_response() {
        let r = CredentialProviderResponse {
            api_version: API_VERSION,
            kind: "CredentialProviderResponse",
            cache_key_type: "Registry",
            cache_duration: "21300s".into(),
            auth: BTreeMap::from([(
                "127.0.0.1:5000".to_owned(),
                AuthConfig { username: "AWS".into(), password: "pw".into() },
            )]),
        };
        crate::golden::assert_golden("kubelet-response.json", serde_json::to_string(&r).unwrap().as_bytes());
    }
}
