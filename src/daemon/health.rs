//! The health endpoint (loopback HTTP): `/healthz`, `/readyz`, `/status`,
//! `/metrics`. Nothing it serves contains a secret.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::accept::accept_evicting;
use super::signals::until_stopped;
use crate::tokens::{all_ready, not_ready, TokenCache, TokenSource};
use ecr_credd_client::wire::RegistryStatus;

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a connection may stay open (one request: no keep-alive).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// Most connections open at once. Monitoring needs a handful; a new one
/// closes the oldest, so any local user's flood of connections costs no file
/// descriptors that the token socket needs, and never makes a probe wait.
pub(super) const MAX_CONNECTIONS: usize = 32;
/// How long the first `/status` waits for the identity lookup it starts.
const IDENTITY_WAIT: Duration = Duration::from_millis(1500);
/// Largest request head accepted (hyper's minimum buffer).
const MAX_HEAD: usize = 8 * 1024;

#[derive(Serialize)]
struct Status<'a> {
    ready: bool,
    identity: Option<String>,
    credential_source: Option<String>,
    registries: &'a [RegistryStatus],
}

#[derive(Serialize)]
struct NotReady<'a> {
    host: &'a str,
    reason: String,
}

/// Why a registry is not ready, in words a person can act on.
pub(super) fn not_ready_reason(s: &RegistryStatus) -> String {
    match (&s.last_error, s.expires_at) {
        (Some(e), _) => e.clone(),
        (None, None) => "no token yet: the first fetch is still running".into(),
        (None, Some(_)) => {
            "the token is within the safety margin of expiry and the refresh has not finished".into()
        }
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json(status: StatusCode, value: &impl Serialize) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    reply(status, "application/json", body)
}

/// Answers one request.
pub(super) fn route<S: TokenSource>(
    cache: &TokenCache<S>,
    method: &Method,
    path: &str,
) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if method != Method::GET && method != Method::HEAD {
        let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "method not allowed\n");
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/healthz" => match cache.stalled() {
            stalled if stalled.is_empty() => reply(StatusCode::OK, TEXT, "ok\n"),
            stalled => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                format!("refresh stalled: {}\n", stalled.join("; ")),
            ),
        },
        "/readyz" => {
            let status = cache.status();
            let not_ready: Vec<NotReady> =
                not_ready(&status).map(|s| NotReady { host: &s.host, reason: not_ready_reason(s) }).collect();
            if not_ready.is_empty() {
                json(StatusCode::OK, &serde_json::json!({ "ready": true }))
            } else {
                json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({ "ready": false, "not_ready": not_ready }),
                )
            }
        }
        "/status" => {
            let registries = cache.status();
            let ready = all_ready(&registries);
            json(
                StatusCode::OK,
                &Status {
                    ready,
                    identity: cache.identity(),
                    credential_source: cache.credential_source(),
                    registries: &registries,
                },
            )
        }
        "/metrics" => {
            let status = cache.status();
            let configured = status.iter().filter(|s| s.configured);
            cache.metrics().readiness(configured.map(|s| (s.host.as_str(), s.ready)));
            reply(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                cache.metrics().encode(),
            )
        }
        _ => reply(StatusCode::NOT_FOUND, TEXT, "not found; try /healthz, /readyz, /status or /metrics\n"),
    }
}

/// Serves the endpoint until `stop` turns true.
pub(super) async fn serve<S: TokenSource>(
    listener: TcpListener,
    cache: Arc<TokenCache<S>>,
    mut stop: watch::Receiver<bool>,
) {
    accept_evicting(&listener, "health endpoint", MAX_CONNECTIONS, until_stopped(&mut stop), |stream| {
        let cache = cache.clone();
        async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let cache = cache.clone();
                async move {
                    // The identity is looked up only once someone asks for it.
                    if req.uri().path() == "/status" {
                        cache.want_identity(IDENTITY_WAIT).await;
                    }
                    Ok::<_, Infallible>(route(&cache, req.method(), req.uri().path()))
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .keep_alive(false)
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                Ok(Err(e)) => tracing::debug!(error = %e, "health endpoint: connection error"),
                Err(_) => tracing::debug!("health endpoint: connection open too long; closed"),
                Ok(Ok(())) => {}
            }
        }
    })
    .await;
}
