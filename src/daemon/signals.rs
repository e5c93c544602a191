//! Signals and shutdown: SIGTERM/SIGINT stop the daemon, SIGHUP reloads the
//! config, and the tasks that outlive the socket server stop on one watch.

use std::path::PathBuf;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::config::{self, Config};

/// Resolves on SIGTERM or SIGINT.
pub(crate) async fn shutdown_signal() {
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; stop with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}

/// Re-reads the config on every SIGHUP; an invalid one is logged and skipped,
/// so the config in force stays.
pub(crate) fn reload_on_sighup(path: PathBuf) -> std::io::Result<mpsc::UnboundedReceiver<Config>> {
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            // The same checks as at start: a config others can write is
            // refused on reload too, or anyone could swap in their role.
            match config::load_trusted(&path) {
                Ok(c) => {
                    tracing::info!(path = %path.display(), "SIGHUP: reloading config from {}", path.display());
                    if tx.send(c).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: new config rejected; keeping the one in force: {e}")
                }
            }
        }
    });
    Ok(rx)
}

/// Resolves once `stop` turns true (or its sender is gone).
pub(crate) async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    // The guard wait_for returns is not Send; drop it before any await.
    let _ = stop.wait_for(|s| *s).await.is_ok();
}
