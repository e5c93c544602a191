//! The one accept loop both listeners use: at most `limit` connections at
//! once (the rest wait in the listen backlog), a task per connection, and
//! failed accepts paced instead of spun on.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// A listener the accept loop can take connections from.
pub(crate) trait Accept {
    /// One accepted connection.
    type Stream: Send + 'static;
    /// Waits for the next connection.
    fn accept(&self) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;
}

impl Accept for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn accept(&self) -> std::io::Result<Self::Stream> {
        tokio::net::UnixListener::accept(self).await.map(|(s, _)| s)
    }
}

impl Accept for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept(&self) -> std::io::Result<Self::Stream> {
        tokio::net::TcpListener::accept(self).await.map(|(s, _)| s)
    }
}

/// Accepts on `listener` until `stop` resolves, running `serve` on each
/// connection in its own task while it holds one of `limit`'s permits (so
/// the caller can drain by taking them all back).
pub(crate) async fn accept_loop<L, F>(
    listener: &L,
    name: &'static str,
    limit: &Arc<Semaphore>,
    stop: impl Future<Output = ()>,
    serve: impl Fn(L::Stream) -> F,
) where
    L: Accept + Sync,
    F: Future<Output = ()> + Send + 'static,
{
    let mut errors = AcceptErrors::default();
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = &mut stop => return,
        };
        let Some(stream) = next_stream(listener, name, &mut errors, &mut stop).await else { return };
        let connection = serve(stream);
        tokio::spawn(async move {
            connection.await;
            drop(permit);
        });
    }
}

/// Accepts on `listener` until `stop` resolves, never waiting for a free
/// slot: when `max` connections are open, the oldest is closed to make room.
/// For the health endpoint, whose clients send one small request at once: a
/// flood of slow connections cannot keep a probe waiting in the backlog, and
/// at most `max` descriptors are spent on it.
pub(crate) async fn accept_evicting<L, F>(
    listener: &L,
    name: &'static str,
    max: usize,
    stop: impl Future<Output = ()>,
    serve: impl Fn(L::Stream) -> F,
) where
    L: Accept + Sync,
    F: Future<Output = ()> + Send + 'static,
{
    let mut errors = AcceptErrors::default();
    let mut open: std::collections::VecDeque<tokio::task::AbortHandle> = std::collections::VecDeque::new();
    tokio::pin!(stop);
    loop {
        let Some(stream) = next_stream(listener, name, &mut errors, &mut stop).await else { break };
        open.retain(|t| !t.is_finished());
        while open.len() >= max.max(1) {
            if let Some(oldest) = open.pop_front() {
                oldest.abort();
            }
        }
        open.push_back(tokio::spawn(serve(stream)).abort_handle());
    }
    for t in open {
        t.abort();
    }
}

/// The next accepted connection, or `None` once `stop` resolves; a failed
/// accept pauses (see [`AcceptErrors`]) and is tried again.
async fn next_stream<L: Accept>(
    listener: &L,
    name: &str,
    errors: &mut AcceptErrors,
    stop: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Option<L::Stream> {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => return Some(s),
                Err(e) => errors.pause(name, &e).await,
            },
            _ = stop.as_mut() => return None,
        }
    }
}

/// At most one warning per [`LogThrottle::EVERY`], counting those held back,
/// so a flood of events (failed accepts, refused peers) cannot also flood the
/// journal until it drops the real errors.
#[derive(Debug, Default)]
pub(crate) struct LogThrottle {
    last: Option<Instant>,
    held_back: u64,
}

impl LogThrottle {
    /// The shortest gap between two warnings.
    pub(crate) const EVERY: Duration = Duration::from_secs(10);

    /// `Some(held back since the last warning)` when a warning may be logged now.
    pub(crate) fn admit(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_none_or(|t| now.duration_since(t) >= Self::EVERY) {
            self.last = Some(now);
            Some(std::mem::take(&mut self.held_back))
        } else {
            self.held_back += 1;
            None
        }
    }
}

/// Failed accepts (EMFILE and friends): a pause instead of a spin, and a
/// throttled warning.
#[derive(Default)]
struct AcceptErrors(LogThrottle);

impl AcceptErrors {
    async fn pause(&mut self, listener: &str, e: &std::io::Error) {
        if let Some(held_back) = self.0.admit(Instant::now()) {
            tracing::warn!(
                error = %e,
                held_back,
                "{listener}: accept failed: {e} ({held_back} more since the last warning)"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_period_counting_the_rest() {
        let mut t = LogThrottle::default();
        let start = Instant::now();
        assert_eq!(t.admit(start), Some(0));
        for i in 1..=500 {
            assert_eq!(t.admit(start + Duration::from_millis(i)), None);
        }
        assert_eq!(t.admit(start + LogThrottle::EVERY), Some(500));
        assert_eq!(t.admit(start + LogThrottle::EVERY), None);
    }
}
