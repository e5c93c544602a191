//! The messages on the daemon's Unix socket, shared by the daemon and every
//! client. One JSON object per line, each way; a connection may carry several
//! requests. Within version 1 either side can grow: unknown fields are
//! ignored, and every enum has a catch-all variant, so an older helper shows a
//! newer daemon's error message and an older daemon answers a newer request
//! with a clear "unsupported" error. (Packages replace the daemon and the
//! helpers at different moments, so both skews happen.)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::secret::Secret;

mod frame;
#[cfg(test)]
mod golden_tests;
pub use frame::{read_frame, write_frame, Framer, Next};

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
    /// Credentials for a registry as one workload (a pod) sees it: the
    /// daemon exchanges the workload's own token for its own role's
    /// credentials (KEP-4412). An older daemon answers it as `Unsupported`,
    /// so a client fails closed instead of getting the node's credentials.
    GetWorkload {
        /// Server URL or host as the client sent it.
        host: String,
        /// The workload's bound service-account token (a JWT) for the
        /// configured audience; empty when the kubelet sent none.
        #[serde(default, skip_serializing_if = "Secret::is_empty")]
        service_account_token: Secret,
        /// The service account's annotations the kubelet passed on (only the
        /// configured keys).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        service_account_annotations: BTreeMap<String, String>,
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
        /// The registry host the credentials are for.
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
    /// The registry host, as configured or asked for.
    pub host: String,
    /// The registry's AWS account.
    pub account: String,
    /// The registry's region.
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
    Malformed(serde_json::Error),
    /// A version this build does not speak.
    #[error("unsupported protocol version {got} (this build speaks {VERSION})")]
    Version {
        /// The version the peer sent.
        got: u32,
    },
    /// More than `limit` bytes without a newline.
    #[error("message larger than {limit} bytes")]
    TooLarge {
        /// The most a frame may hold.
        limit: usize,
    },
    /// The peer closed the connection before sending a message.
    #[error("the connection closed before a message arrived")]
    Closed,
    /// The connection failed while reading.
    #[error("read failed: {0}")]
    Io(std::io::Error),
}

// Causes are said in the message, so neither is also a `source()`.
impl From<serde_json::Error> for WireError {
    fn from(e: serde_json::Error) -> Self {
        WireError::Malformed(e)
    }
}

impl From<std::io::Error> for WireError {
    fn from(e: std::io::Error) -> Self {
        WireError::Io(e)
    }
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
