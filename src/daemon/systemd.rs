//! systemd integration: readiness and watchdog notifications, and the
//! listening socket passed by socket activation. All are no-ops outside systemd.

use std::os::unix::net::UnixListener;
use std::time::Duration;

use sd_notify::NotifyState;

/// Tells systemd the daemon is ready (sockets bound with their final mode).
pub(super) fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd a reload has begun.
pub(super) fn reloading() {
    notify(&[NotifyState::Reloading]);
}

/// Tells systemd the reload is done, with a status line.
pub(super) fn reloaded(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd the daemon is stopping.
pub(super) fn stopping() {
    notify(&[NotifyState::Stopping]);
}

/// Pings the watchdog.
pub(super) fn watchdog() {
    notify(&[NotifyState::Watchdog]);
}

fn notify(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::warn!(error = %e, "cannot notify systemd: {e}");
    }
}

/// How often to ping the watchdog (half its timeout), if systemd set one.
pub(super) fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}

/// The Unix listener systemd passed (`LISTEN_FDS`/`LISTEN_PID`), if any.
pub(super) fn activated_listener() -> std::io::Result<Option<UnixListener>> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    let listener = fds.take_unix_listener(0)?;
    if let Some(l) = &listener {
        l.set_nonblocking(true)?;
    }
    Ok(listener)
}
