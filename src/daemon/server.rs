//! The Unix socket server: one task per connection, bounded frames and idle
//! time, a peer check, and a drain on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf, UCred};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use super::accept::accept_loop;
use super::accept::LogThrottle;
use super::slots::{UidSlots, PER_UID};
use super::socket::PeerPolicy;
use crate::metrics::RequestOutcome;
use crate::tokens::TokenSource;
use crate::tokens::{GetError, RegistryCredentials, TokenCache};
use crate::workload::{WorkloadError, Workloads};
use ecr_credd_client::wire::{self, ErrorKind, Framer, Next, RequestBody, Response, ResponseBody};

/// Most connections served at once; more wait in the listen backlog. Well
/// below the default soft limit of 1024 fds, so that with the health
/// endpoint's own cap and the AWS connections the daemon never runs out.
pub(super) const MAX_CONNECTIONS: usize = 512;
/// How long a client may take to send each request.
pub(super) const FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one answer may take to be written: a client that stops reading
/// loses its connection instead of holding it.
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest one connection may stay open, however busy it keeps.
pub(super) const CONNECTION_BUDGET: Duration = Duration::from_secs(30);
/// Most requests one connection may make. The helper, the kubelet provider
/// and the CLI make one; a peer pipelining thousands would only take CPU
/// from everyone else.
pub(super) const MAX_REQUESTS: usize = 64;
/// How long in-flight requests get to finish after shutdown begins:
/// longer than a `get` may wait for its token (12 s), so one waiting at
/// shutdown is still answered.
pub(super) const DRAIN_TIMEOUT: Duration = Duration::from_secs(13);

/// Serves `listener` until `shutdown` resolves, then drains in-flight connections.
pub(super) async fn serve<S: TokenSource>(
    listener: UnixListener,
    cache: Arc<TokenCache<S>>,
    workloads: Arc<Workloads>,
    peers: Peers,
    shutdown: impl Future<Output = ()>,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let refusals = Arc::new(std::sync::Mutex::new(LogThrottle::default()));
    let slots = UidSlots::new(MAX_CONNECTIONS);
    accept_loop(&listener, "socket", &limit, shutdown, |stream| {
        let (cache, peers, refusals, slots) = (cache.clone(), peers.clone(), refusals.clone(), slots.clone());
        let workloads = workloads.clone();
        async move {
            let served = handle(stream, (&cache, &workloads), &peers, &refusals, &slots);
            if tokio::time::timeout(CONNECTION_BUDGET, served).await.is_err() {
                tracing::debug!("connection open longer than {CONNECTION_BUDGET:?}; closed");
            }
        }
    })
    .await;
    tracing::info!("socket closed; draining in-flight requests");
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, limit.acquire_many(MAX_CONNECTIONS as u32)).await;
    if drained.is_err() {
        tracing::warn!("some requests did not finish within {DRAIN_TIMEOUT:?}");
    }
}

/// Who may connect; a reload replaces it.
pub(super) type Peers = Arc<std::sync::RwLock<PeerPolicy>>;

async fn handle<S: TokenSource>(
    stream: UnixStream,
    (cache, workloads): (&TokenCache<S>, &Workloads),
    peers: &Peers,
    refusals: &std::sync::Mutex<LogThrottle>,
    slots: &Arc<UidSlots>,
) {
    let cred = match stream.peer_cred() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read peer credentials; closing: {e}");
            return;
        }
    };
    let (mut read, mut write) = stream.into_split();
    let policy = crate::sync::read(peers).clone();
    if !policy.allows(cred.uid(), cred.gid(), cred.pid()) {
        cache.metrics().request(RequestOutcome::Forbidden, Duration::ZERO);
        // With allow-lists the socket is 0666: any local user could flood
        // the journal with refusals, so they are throttled.
        let admitted = crate::sync::lock(refusals).admit(Instant::now());
        if let Some(held_back) = admitted {
            tracing::warn!(
                uid = cred.uid(),
                gid = cred.gid(),
                pid = cred.pid(),
                held_back,
                "refused a peer not allowed to use the socket: uid {} gid {} pid {} ({held_back} more refused since the last warning)",
                cred.uid(),
                cred.gid(),
                cred.pid().unwrap_or(0)
            );
        }
        let msg = format!("uid {} is not allowed to use the ecr-credd socket", cred.uid());
        let _ = write_answer(&mut write, &Response::error(ErrorKind::Forbidden, msg)).await;
        return;
    }
    let Some(_slot) = slots.take(cred.uid()) else {
        cache.metrics().request(RequestOutcome::Other, Duration::ZERO);
        let msg = format!(
            "uid {} has too many connections to the ecr-credd socket open (at most {PER_UID} per user); close some and retry",
            cred.uid()
        );
        let _ = write_answer(&mut write, &Response::error(ErrorKind::Other, msg)).await;
        return;
    };
    let mut framer = Framer::new(wire::MAX_FRAME);
    for served in 1..=MAX_REQUESTS {
        let (frame, last) = match next_request(&mut read, &mut framer, cache, &cred).await {
            Ok(next) => next,
            Err(Some(answer)) => {
                let _ = write_answer(&mut write, &answer).await;
                return;
            }
            Err(None) => return,
        };
        let started = Instant::now();
        let response = respond(cache, workloads, &frame).await;
        if let ResponseBody::Error { kind, message } = &response.body {
            tracing::debug!(?kind, %message, pid = cred.pid(), "request failed");
        }
        let written = write_answer(&mut write, &response).await;
        let took = started.elapsed();
        cache.metrics().request(request_outcome(&response), took);
        tracing::trace!(micros = took.as_micros() as u64, "request served");
        if written.is_err() || last {
            return;
        }
        if served == MAX_REQUESTS {
            tracing::debug!(pid = cred.pid(), "{MAX_REQUESTS} requests on one connection; closing");
        }
        // One request per turn: a peer pipelining requests must not keep
        // others' connections (root's get) waiting behind its queue.
        tokio::task::yield_now().await;
    }
}

/// Writes one answer within [`WRITE_TIMEOUT`].
async fn write_answer(write: &mut OwnedWriteHalf, response: &Response) -> std::io::Result<()> {
    match tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&wire::encode(response))).await {
        Ok(written) => written,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the client stopped reading")),
    }
}

/// The next request frame, and whether it is the connection's last (its
/// sender closed without a newline). `Err` ends the connection, with an
/// answer when the client deserves one.
async fn next_request<S: TokenSource>(
    read: &mut OwnedReadHalf,
    framer: &mut Framer,
    cache: &TokenCache<S>,
    cred: &UCred,
) -> Result<(Zeroizing<Vec<u8>>, bool), Option<Response>> {
    // One deadline for the whole frame: a client trickling a byte at a time
    // cannot hold its connection open forever.
    let deadline = tokio::time::Instant::now() + FRAME_TIMEOUT;
    let mut chunk = Zeroizing::new([0u8; 4096]);
    loop {
        match framer.next_frame() {
            Next::Frame(frame) => return Ok((frame, false)),
            Next::TooLarge => {
                tracing::warn!(uid = cred.uid(), pid = cred.pid(), "oversized request; closing");
                cache.metrics().request(RequestOutcome::BadRequest, Duration::ZERO);
                let msg = format!("request larger than {} bytes", wire::MAX_FRAME);
                return Err(Some(Response::error(ErrorKind::BadRequest, msg)));
            }
            Next::NeedMore => {}
        }
        match tokio::time::timeout_at(deadline, read.read(&mut chunk[..])).await {
            Ok(Ok(0)) => {
                let rest = framer.take_rest();
                return if rest.is_empty() { Err(None) } else { Ok((rest, true)) };
            }
            Ok(Ok(n)) => framer.push(&chunk[..n]),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, pid = cred.pid(), "read failed");
                return Err(None);
            }
            Err(_) => {
                tracing::debug!(pid = cred.pid(), "client idle too long; closing");
                if framer.take_rest().is_empty() {
                    return Err(None);
                }
                let msg = format!("incomplete request: no newline within {FRAME_TIMEOUT:?}");
                return Err(Some(Response::error(ErrorKind::BadRequest, msg)));
            }
        }
    }
}

/// How a response counts in the metrics.
fn request_outcome(response: &Response) -> RequestOutcome {
    match &response.body {
        ResponseBody::Credentials { .. } => RequestOutcome::Ok,
        ResponseBody::Hosts { .. } => RequestOutcome::List,
        ResponseBody::Status { .. } => RequestOutcome::Status,
        ResponseBody::Error { kind: ErrorKind::NotFound, .. } => RequestOutcome::NotFound,
        ResponseBody::Error { kind: ErrorKind::Unavailable, .. } => RequestOutcome::Unavailable,
        ResponseBody::Error { kind: ErrorKind::BadRequest, .. } => RequestOutcome::BadRequest,
        ResponseBody::Error { kind: ErrorKind::Forbidden, .. } => RequestOutcome::Forbidden,
        ResponseBody::Error { kind: ErrorKind::Other, .. } | ResponseBody::Unknown => RequestOutcome::Other,
    }
}

/// Credentials as a client gets them on the wire.
fn credentials(c: RegistryCredentials) -> Response {
    Response::new(ResponseBody::Credentials {
        host: c.host,
        username: c.username,
        secret: c.secret,
        expires_at: c.expires_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    })
}

/// The wire error for a `get` that failed.
fn get_error(e: GetError) -> Response {
    match e {
        e @ GetError::NotFound { .. } => Response::error(ErrorKind::NotFound, e.to_string()),
        e @ GetError::BadHost(_) => Response::error(ErrorKind::BadRequest, e.to_string()),
        e => Response::error(ErrorKind::Unavailable, e.to_string()),
    }
}

async fn respond<S: TokenSource>(cache: &TokenCache<S>, workloads: &Workloads, frame: &[u8]) -> Response {
    let request = match wire::decode_request(frame) {
        Ok(r) => r,
        Err(e) => return Response::error(ErrorKind::BadRequest, e.to_string()),
    };
    match request.body {
        RequestBody::List => Response::new(ResponseBody::Hosts { hosts: cache.hosts() }),
        RequestBody::Unsupported => Response::error(
            ErrorKind::BadRequest,
            format!(
                "unsupported request: this ecr-credd daemon ({}) answers get, get_workload, list and status; upgrade the daemon to match the client",
                env!("CARGO_PKG_VERSION")
            ),
        ),
        RequestBody::Status => {
            let registries = cache.status();
            let ready = crate::tokens::all_ready(&registries);
            Response::new(ResponseBody::Status { ready, registries, credential_source: cache.credential_source() })
        }
        RequestBody::Get { host } => cache.get(&host).await.map_or_else(get_error, credentials),
        RequestBody::GetWorkload { host, service_account_token, service_account_annotations } => {
            match workloads.get(cache, &host, service_account_token, &service_account_annotations).await {
                Ok(c) => credentials(c),
                Err(WorkloadError::Get(e)) => get_error(e),
                Err(e @ WorkloadError::Refused { .. }) => Response::error(ErrorKind::Forbidden, e.to_string()),
                Err(e @ WorkloadError::Fetch { .. }) => Response::error(ErrorKind::Unavailable, e.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn a_get_is_answered_before_its_client_or_the_drain_gives_up() {
        let wait = crate::tokens::RefreshPolicy::default().get_wait;
        assert!(wait + Duration::from_secs(2) <= ecr_credd_client::client::REPLY_TIMEOUT);
        assert!(wait < super::DRAIN_TIMEOUT);
    }
}
