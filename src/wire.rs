//! The messages on the daemon's Unix socket, shared by the daemon and every
//! client. One JSON object per line, each way; a connection may carry several
//! requests. Within version 1 either side can grow: unknown fields are
//! ignored, and every enum has a catch-all variant, so an older helper shows a
//! newer daemon's error message and an older daemon answers a newer request
//! with a clear "unsupported" error. (Packages replace the daemon and the
//! helpers at different moments, so both skews happen.)

use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::secret::Secret;

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// The largest request the daemon accepts, newline included.
pub const MAX_FRAME: usize = 16 * 1024;

/// The largest response a client accepts: `status` and `list` grow with the
/// number of registries (about 300 bytes each), so they need more than a request.
pub const MAX_RESPONSE: usize = 8 * 1024 * 1024;

/// A request with its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Protocol version of the sender.
    pub v: u32,
    /// The request itself.
    #[serde(flatten)]
    pub body: RequestBody,
}

/// What a client asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RequestBody {
    /// Credentials for a registry, given as the client saw it (URL or host).
    Get {
        /// Server URL or host as the client sent it.
        host: String,
    },
    /// The configured registry hosts.
    List,
    /// Every registry's state, without secrets.
    Status,
    /// An operation from a newer client; answered with a `bad_request` error.
    #[serde(other)]
    Unsupported,
}

/// A response with its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Protocol version of the daemon.
    pub v: u32,
    /// The answer itself.
    #[serde(flatten)]
    pub body: ResponseBody,
}

/// What the daemon answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseBody {
    /// Registry credentials.
    Credentials {
        /// The normalised registry host.
        host: String,
        /// Always `AWS` for ECR.
        username: String,
        /// The registry password.
        secret: Secret,
        /// When the token expires, in Unix seconds (wall clock).
        expires_at: u64,
    },
    /// The configured hosts.
    Hosts {
        /// Normalised hosts, in config order.
        hosts: Vec<String>,
    },
    /// Every registry's state.
    Status {
        /// True when every configured registry holds a usable token.
        ready: bool,
        /// One entry per registry, configured ones first.
        registries: Vec<RegistryStatus>,
        /// Which source gave the base credentials (no secret): e.g.
        /// `instance profile (IMDS)`, `web identity`. Absent before the first fetch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credential_source: Option<String>,
    },
    /// A failure; `kind` tells the client how to react.
    Error {
        /// The class of failure.
        kind: ErrorKind,
        /// A one-line reason a person can act on.
        message: String,
    },
    /// A message type from a newer daemon.
    #[serde(other)]
    Unknown,
}

/// One registry's state, as `/status` and `ecr-credd status` show it. It
/// holds no secret, not even part of one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryStatus {
    /// Normalised host.
    pub host: String,
    /// Registry account id.
    pub account: String,
    /// ECR API region.
    pub region: String,
    /// Role assumed first, if any.
    pub role_arn: Option<String>,
    /// Whether this registry came from the config (else: an unlisted ECR host).
    pub configured: bool,
    /// Whether a token with more than the safety margin left is held.
    pub ready: bool,
    /// Token expiry, Unix seconds.
    pub expires_at: Option<u64>,
    /// Last successful refresh, Unix seconds.
    pub last_refresh: Option<u64>,
    /// Next scheduled refresh or retry, Unix seconds.
    pub next_refresh: Option<u64>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// The last failure, in words a person can act on.
    pub last_error: Option<String>,
}

/// Classes of failure, each with a distinct reaction in the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Not a registry this daemon serves: docker should fall back to anonymous access.
    NotFound,
    /// A registry we serve, but no usable token right now: show the message.
    Unavailable,
    /// The request was malformed: a client bug.
    BadRequest,
    /// The peer is not allowed to use the socket.
    Forbidden,
    /// A kind from a newer daemon: show its message, as for `unavailable`.
    #[serde(other)]
    Other,
}

/// Why a frame could not be decoded.
#[derive(Debug, Error)]
pub enum WireError {
    /// Not JSON, or not one of our messages.
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A version this build does not speak.
    #[error("unsupported protocol version {got} (this build speaks {VERSION})")]
    Version {
        /// The version received.
        got: u32,
    },
}

impl Request {
    /// A current-version request.
    pub fn new(body: RequestBody) -> Self {
        Request { v: VERSION, body }
    }
}

impl Response {
    /// A current-version response.
    pub fn new(body: ResponseBody) -> Self {
        Response { v: VERSION, body }
    }

    /// A current-version error response.
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        Response::new(ResponseBody::Error { kind, message: message.into() })
    }
}

/// Serialises a message as one line, newline included.
pub fn encode<T: Serialize>(msg: &T) -> Zeroizing<Vec<u8>> {
    // Our message types serialise infallibly (string keys, no maps with
    // non-string keys), so an error here would be a bug; report it as a
    // frame the peer will reject rather than panic.
    let mut out = Zeroizing::new(serde_json::to_vec(msg).unwrap_or_else(|_| b"{}".to_vec()));
    // A frame may carry a token: zeroed when dropped. Reserve first so the
    // push cannot move the bytes and leave a copy behind.
    out.reserve_exact(1);
    out.push(b'\n');
    out
}

/// Peeks at the version before decoding, so a newer peer gets a version error
/// rather than a confusing field error.
fn check_version(line: &[u8]) -> Result<(), WireError> {
    #[derive(Deserialize)]
    struct Probe {
        v: u32,
    }
    let probe: Probe = serde_json::from_slice(line)?;
    if probe.v != VERSION {
        return Err(WireError::Version { got: probe.v });
    }
    Ok(())
}

/// Decodes one request frame (with or without its newline).
pub fn decode_request(line: &[u8]) -> Result<Request, WireError> {
    check_version(line)?;
    Ok(serde_json::from_slice(line)?)
}

/// Decodes one response frame (with or without its newline).
pub fn decode_response(line: &[u8]) -> Result<Response, WireError> {
    check_version(line)?;
    Ok(serde_json::from_slice(line)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden<T: Serialize>(msg: &T, want: &str) {
        assert_eq!(String::from_utf8(encode(msg).to_vec()).unwrap(), want);
    }

    /// Messages recorded from a newer peer, against today's decoder.
    #[test]
    fn newer_peers_messages_decode_to_the_catch_alls() {
        let r = decode_response(
            b"{\"v\":1,\"type\":\"error\",\"kind\":\"throttled\",\"message\":\"ECR is throttling; retry in 3s\"}\n",
        )
        .unwrap();
        let message = "ECR is throttling; retry in 3s".to_owned();
        assert_eq!(r.body, ResponseBody::Error { kind: ErrorKind::Other, message });
        let r =
            decode_response(b"{\"v\":1,\"type\":\"credentials_v2\",\"token\":{\"parts\":[1]}}\n").unwrap();
        assert_eq!(r.body, ResponseBody::Unknown);
        let q = decode_request(b"{\"v\":1,\"op\":\"rotate\",\"host\":\"x\"}\n").unwrap();
        assert_eq!(q.body, RequestBody::Unsupported);
        // New fields in known messages are ignored.
        let q = decode_request(b"{\"v\":1,\"op\":\"get\",\"host\":\"h\",\"trace_id\":\"abc\"}").unwrap();
        assert_eq!(q.body, RequestBody::Get { host: "h".into() });
        let r =
            decode_response(b"{\"v\":1,\"type\":\"hosts\",\"hosts\":[\"a\"],\"generated_at\":1}").unwrap();
        assert_eq!(r.body, ResponseBody::Hosts { hosts: vec!["a".into()] });
    }

    #[test]
    fn golden_requests() {
        let get = Request::new(RequestBody::Get { host: "https://127.0.0.1:5000".into() });
        golden(&get, "{\"v\":1,\"op\":\"get\",\"host\":\"https://127.0.0.1:5000\"}\n");
        golden(&Request::new(RequestBody::List), "{\"v\":1,\"op\":\"list\"}\n");
        golden(&Request::new(RequestBody::Status), "{\"v\":1,\"op\":\"status\"}\n");
        for msg in [get, Request::new(RequestBody::List)] {
            assert_eq!(decode_request(&encode(&msg)).unwrap(), msg);
        }
    }

    #[test]
    fn golden_responses() {
        let creds = Response::new(ResponseBody::Credentials {
            host: "127.0.0.1:5000".into(),
            username: "AWS".into(),
            secret: Secret::from("pw"),
            expires_at: 1_800_000_000,
        });
        golden(
            &creds,
            "{\"v\":1,\"type\":\"credentials\",\"host\":\"127.0.0.1:5000\",\"username\":\"AWS\",\"secret\":\"pw\",\"expires_at\":1800000000}\n",
        );
        let hosts =
            Response::new(ResponseBody::Hosts { hosts: vec!["a.example".into(), "b.example:5000".into()] });
        golden(&hosts, "{\"v\":1,\"type\":\"hosts\",\"hosts\":[\"a.example\",\"b.example:5000\"]}\n");
        let cases = [
            (ErrorKind::NotFound, "not_found"),
            (ErrorKind::Unavailable, "unavailable"),
            (ErrorKind::BadRequest, "bad_request"),
            (ErrorKind::Forbidden, "forbidden"),
        ];
        for (kind, name) in cases {
            let err = Response::error(kind, "why");
            golden(
                &err,
                &format!("{{\"v\":1,\"type\":\"error\",\"kind\":\"{name}\",\"message\":\"why\"}}\n"),
            );
            assert_eq!(decode_response(&encode(&err)).unwrap(), err);
        }
        let status = Response::new(ResponseBody::Status {
            ready: false,
            credential_source: None,
            registries: vec![RegistryStatus {
                host: "127.0.0.1:5000".into(),
                account: "210987654321".into(),
                region: "us-east-1".into(),
                role_arn: Some("arn:aws:iam::210987654321:role/r".into()),
                configured: true,
                ready: false,
                expires_at: None,
                last_refresh: Some(1_800_000_000),
                next_refresh: Some(1_800_000_030),
                consecutive_failures: 2,
                last_error: Some("why".into()),
            }],
        });
        golden(
            &status,
            concat!(
                "{\"v\":1,\"type\":\"status\",\"ready\":false,\"registries\":[{\"host\":\"127.0.0.1:5000\",",
                "\"account\":\"210987654321\",\"region\":\"us-east-1\",\"role_arn\":\"arn:aws:iam::210987654321:role/r\",",
                "\"configured\":true,\"ready\":false,\"expires_at\":null,\"last_refresh\":1800000000,",
                "\"next_refresh\":1800000030,\"consecutive_failures\":2,\"last_error\":\"why\"}]}\n"
            ),
        );
        for msg in [creds, hosts, status] {
            assert_eq!(decode_response(&encode(&msg)).unwrap(), msg);
        }
    }

    #[test]
    fn tolerates_unknown_fields_and_rejects_other_versions() {
        let req = decode_request(b"{\"v\":1,\"op\":\"list\",\"future\":true}").unwrap();
        assert_eq!(req.body, RequestBody::List);
        assert!(matches!(decode_request(b"{\"v\":2,\"op\":\"list\"}"), Err(WireError::Version { got: 2 })));
        assert!(matches!(decode_request(b"garbage"), Err(WireError::Malformed(_))));
        // An op from a newer client is not malformed: the daemon says it is unsupported.
        assert_eq!(decode_request(b"{\"v\":1,\"op\":\"launch\"}").unwrap().body, RequestBody::Unsupported);
        assert!(matches!(decode_request(b"{\"v\":1,\"op\":\"get\"}"), Err(WireError::Malformed(_))));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let creds = Response::new(ResponseBody::Credentials {
            host: "h".into(),
            username: "AWS".into(),
            secret: Secret::from("s3cr3t-value"),
            expires_at: 0,
        });
        assert!(!format!("{creds:?}").contains("s3cr3t-value"));
    }
}
