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
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    errors.pause(name, &e).await;
                    continue;
                }
            },
            _ = &mut stop => return,
        };
        let connection = serve(stream);
        tokio::spawn(async move {
            connection.await;
            drop(permit);
        });
    }
}

/// Failed accepts (EMFILE and friends): a pause instead of a spin, and a
/// warning at most every 10 s that counts what it held back, so a flood
/// cannot also flood the journal.
#[derive(Default)]
struct AcceptErrors {
    last: Option<Instant>,
    held_back: u64,
}

impl AcceptErrors {
    async fn pause(&mut self, listener: &str, e: &std::io::Error) {
        let now = Instant::now();
        if self.last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
            tracing::warn!(
                error = %e,
                held_back = self.held_back,
                "{listener}: accept failed: {e} ({} more since the last warning)",
                self.held_back
            );
            self.last = Some(now);
            self.held_back = 0;
        } else {
            self.held_back += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
