//! The daemon's top level: listeners from the config (or from systemd), and
//! [`run`], which tests drive exactly as `ecr-credd run` does.

mod accept;
mod health;
mod server;
pub(crate) mod signals;
mod slots;
pub(crate) mod socket;
mod systemd;

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;
use tokio::sync::{mpsc, watch};

use crate::config::{Config, SocketGroup};
use crate::metrics::Metrics;
use crate::tokens::TokenSource;
use crate::tokens::{RefreshPolicy, SystemClock, TokenCache};
use crate::workload::Workloads;
pub use socket::{PeerPolicy, SocketError};

/// Why the daemon could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The Unix socket could not be set up.
    #[error(transparent)]
    Socket(#[from] SocketError),
    /// The health endpoint's address could not be bound.
    #[error("[health] listen {addr}: cannot bind: {cause}")]
    Health {
        /// The configured address.
        addr: SocketAddr,
        /// Why the bind failed.
        cause: std::io::Error,
    },
    /// systemd passed a socket we cannot use.
    #[error("the socket passed by systemd (LISTEN_FDS) is unusable: {0}")]
    Activation(std::io::Error),
}

/// The daemon's bound sockets, ready for [`run`].
pub struct Listeners {
    /// The Unix socket clients use.
    pub unix: tokio::net::UnixListener,
    /// Who may use it.
    pub peers: PeerPolicy,
    /// The health endpoint, when configured.
    pub health: Option<tokio::net::TcpListener>,
    /// Path and inode of a socket we created ourselves (removed on exit);
    /// `None` when systemd owns it.
    owned: Option<(PathBuf, u64)>,
}

impl Listeners {
    /// Takes the socket systemd passed, or binds the configured one with its
    /// mode and group; binds the health endpoint. Must run inside a tokio runtime.
    pub async fn bind(config: &Config) -> Result<Self, StartError> {
        let map_io = |action, cause| SocketError::Io { path: config.socket.clone(), action, cause };
        let (std_listener, owned, gid) = match systemd::activated_listener()
            .map_err(StartError::Activation)?
        {
            Some(l) => {
                let gid = activated_gid(config, &l)?;
                let group = gid.map(ecr_credd_client::groups::group_name).unwrap_or_else(|| "-".into());
                tracing::info!(gid = ?gid, "using the socket passed by systemd (group {group})");
                (l, None, gid)
            }
            None => {
                let gid = socket_gid(config)?;
                if gid.is_none() {
                    let group = config.socket_group.name();
                    tracing::warn!(
                        group = %group,
                        "socket group {group} does not exist, so only root and the daemon's own user may connect; \
                         create it (groupadd --system {group}) or set [server] group"
                    );
                }
                let mode = socket_mode(config);
                let l = socket::bind(&config.socket, gid, mode)?;
                let inode = std::fs::metadata(&config.socket).map(|m| m.ino()).unwrap_or(0);
                let group = gid
                    .map(ecr_credd_client::groups::group_name)
                    .unwrap_or_else(|| "the daemon's own".into());
                tracing::info!(
                    path = %config.socket.display(),
                    mode = format!("{mode:04o}"),
                    gid = ?gid,
                    "listening on {} (mode {mode:04o}, group {group})",
                    config.socket.display()
                );
                (l, Some((config.socket.clone(), inode)), gid)
            }
        };
        let unix = tokio::net::UnixListener::from_std(std_listener)
            .map_err(|e| map_io("register the socket with the runtime", e))?;
        let health = match config.health_listen {
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|cause| StartError::Health { addr, cause })?;
                tracing::info!(%addr, "health endpoint listening on {addr}");
                Some(l)
            }
            None => None,
        };
        Ok(Listeners {
            unix,
            peers: PeerPolicy::new(&config.allowed_uids, &config.allowed_gids, gid),
            health,
            owned,
        })
    }
}

/// 0660, or 0666 when allow-lists name peers the group does not cover: a
/// mode they cannot pass would refuse them at connect(), before the check.
fn socket_mode(config: &Config) -> u32 {
    if config.allowed_uids.is_empty() && config.allowed_gids.is_empty() {
        socket::SOCKET_MODE
    } else {
        socket::SOCKET_MODE_ALLOW_LISTS
    }
}

/// The group for a socket we bind: the configured one (which must exist when
/// named), else the default group when the host has it, else `None` (our
/// own). `check-config` asks the same.
pub(crate) fn socket_gid(config: &Config) -> Result<Option<u32>, SocketError> {
    let group = &config.socket_group;
    match (ecr_credd_client::groups::lookup_group(group.name()), group) {
        (Some(gid), _) => Ok(Some(gid)),
        (None, SocketGroup::Named(name)) => Err(SocketError::NoSuchGroup { group: name.clone() }),
        (None, SocketGroup::Default) => Ok(None),
    }
}

/// The group of a socket systemd created. Its `SocketGroup=` decides who can
/// connect, so peers are checked against it, not against the config's guess.
fn activated_gid(config: &Config, listener: &UnixListener) -> Result<Option<u32>, StartError> {
    let (gid, mode) = socket::bound_owner(listener).map_err(StartError::Activation)?;
    if socket_mode(config) == socket::SOCKET_MODE_ALLOW_LISTS && mode & 0o006 != 0o006 {
        tracing::warn!(
            "[server] allowed_uids/allowed_gids name users outside the socket's group, but systemd made the socket \
             with mode {mode:04o}, so they cannot connect; set SocketMode=0666 (systemctl edit ecr-credd.socket): \
             the daemon's peer check still refuses everyone not allowed"
        );
    }
    if let SocketGroup::Named(group) = &config.socket_group {
        let wanted = ecr_credd_client::groups::lookup_group(group)
            .ok_or_else(|| SocketError::NoSuchGroup { group: group.clone() })?;
        if gid.is_some_and(|g| g != wanted) {
            let actual = gid.map(ecr_credd_client::groups::group_name).unwrap_or_default();
            tracing::warn!(
                "[server] group is {group} but systemd made the socket with group {actual}; \
                 the socket's group decides who may connect (change it with: systemctl edit ecr-credd.socket)"
            );
        }
    }
    Ok(gid)
}

/// Serves tokens for `config` until `shutdown` resolves; applies each config
/// received on `reloads`; then drains in-flight requests and removes the
/// socket it created.
pub async fn run<S: TokenSource>(
    config: Config,
    listeners: Listeners,
    source: S,
    metrics: Arc<Metrics>,
    mut reloads: mpsc::UnboundedReceiver<Config>,
    shutdown: impl Future<Output = ()>,
) {
    let cache = Arc::new(TokenCache::new(
        &config.registries,
        config.serve_unlisted_ecr,
        source,
        Arc::new(SystemClock),
        RefreshPolicy { safety_margin: config.safety_margin, ..RefreshPolicy::default() },
        metrics.clone(),
    ));
    cache.start();
    let workloads = Arc::new(Workloads::new(
        config.workload.clone(),
        config.safety_margin,
        Arc::new(SystemClock),
        metrics,
    ));
    let Listeners { unix, peers, health, owned } = listeners;
    let peers: server::Peers = Arc::new(std::sync::RwLock::new(peers));
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Some(listener) = health {
        tokio::spawn(health::serve(listener, cache.clone(), stop_rx.clone()));
    }
    let reloader = {
        let (cache, peers, mut stop) = (cache.clone(), peers.clone(), stop_rx.clone());
        let workloads = workloads.clone();
        let mut current = config.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    c = reloads.recv() => match c { Some(c) => c, None => return },
                    _ = signals::until_stopped(&mut stop) => return,
                };
                systemd::reloading();
                apply_reload(&cache, &peers, &current, &next);
                workloads.reconfigure(&next.workload);
                current = next;
                systemd::reloaded("reloaded");
            }
        })
    };
    let summary = format!("serving {} registries", config.registries.len());
    tracing::info!(
        registries = config.registries.len(),
        "ecr-credd started: {summary} (version {})",
        env!("CARGO_PKG_VERSION")
    );
    systemd::ready(&summary);
    // After READY=1: systemd expects no watchdog ping before it.
    if let Some(every) = systemd::watchdog_interval() {
        tokio::spawn(watchdog(cache.clone(), every, stop_rx.clone()));
    }
    server::serve(unix, cache.clone(), workloads.clone(), peers, shutdown).await;
    systemd::stopping();
    let _ = stop_tx.send(true);
    reloader.abort();
    if let Some((path, inode)) = owned {
        socket::remove_if_ours(&path, inode);
    }
    tracing::info!("ecr-credd stopped");
}

fn apply_reload<S: TokenSource>(cache: &TokenCache<S>, peers: &server::Peers, old: &Config, new: &Config) {
    let restart_only: Vec<&str> = [
        ("[server] socket", new.socket != old.socket),
        ("[server] group", new.socket_group != old.socket_group),
        ("[health] listen", new.health_listen != old.health_listen),
        ("[aws] use_fips", new.use_fips != old.use_fips),
        ("[aws] sts_region", new.sts_region != old.sts_region),
        ("[aws] credentials", new.credentials != old.credentials),
        ("[aws] https_proxy", new.https_proxy != old.https_proxy),
        ("[aws] no_proxy", new.no_proxy != old.no_proxy),
        ("[tokens] safety_margin", new.safety_margin != old.safety_margin),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect();
    if !restart_only.is_empty() {
        let keys = restart_only.join(", ");
        tracing::warn!(
            "config reload: {keys} changed but take effect only at the next restart (systemctl restart ecr-credd); \
             until then the old values stay in force"
        );
    }
    if new.allowed_uids != old.allowed_uids || new.allowed_gids != old.allowed_gids {
        let mut policy = crate::sync::write(peers);
        *policy = policy.with_lists(&new.allowed_uids, &new.allowed_gids);
        tracing::info!(
            "config reload: [server] allowed_uids {:?} and allowed_gids {:?} apply to every new connection",
            new.allowed_uids,
            new.allowed_gids
        );
    }
    let r = cache.reconfigure(&new.registries, new.serve_unlisted_ecr);
    tracing::info!(
        kept = r.kept,
        added = r.added,
        removed = r.removed,
        "config reloaded: {} registries kept, {} added, {} removed",
        r.kept,
        r.added,
        r.removed
    );
}

/// Pings systemd's watchdog while every configured registry's refresh makes
/// progress (see [`TokenCache::stalled`]), so a wedged daemon is restarted.
async fn watchdog<S: TokenSource>(
    cache: Arc<TokenCache<S>>,
    every: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = signals::until_stopped(&mut stop) => return,
        }
        let stalled = cache.stalled();
        if stalled.is_empty() {
            systemd::watchdog();
        } else {
            let stalled = stalled.join("; ");
            tracing::error!(
                "refresh stalled ({stalled}); withholding the watchdog ping so systemd restarts us"
            );
        }
    }
}
