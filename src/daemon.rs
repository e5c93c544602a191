//! The daemon's top level: socket set-up from the config, and [`run`], which
//! tests drive exactly as `ecr-credd run` does.

use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Config;
use crate::server;
use crate::socket::{self, PeerPolicy, SocketError};
use crate::token_cache::{Policy, SystemClock, TokenCache};
use crate::token_source::TokenSource;

/// A bound socket, ready for [`run`].
pub struct Listener {
    /// The listening socket.
    pub listener: tokio::net::UnixListener,
    /// Who may use it.
    pub peers: PeerPolicy,
    /// Where it is, and its inode, so shutdown removes only our own file.
    pub path: PathBuf,
    inode: u64,
}

impl Listener {
    /// Binds the configured socket with its mode and group; must run inside a
    /// tokio runtime.
    pub fn bind(config: &Config) -> Result<Self, SocketError> {
        let gid = match &config.socket_group {
            Some(group) => match socket::lookup_group(group) {
                Some(gid) => Some(gid),
                None if config.socket_group_explicit => {
                    return Err(SocketError::NoSuchGroup { group: group.clone() })
                }
                None => {
                    tracing::warn!(group = %group, "socket group does not exist; keeping the daemon's own group");
                    None
                }
            },
            None => None,
        };
        let std_listener = socket::bind(&config.socket, gid)?;
        let inode = std::fs::metadata(&config.socket).map(|m| m.ino()).unwrap_or(0);
        let listener =
            tokio::net::UnixListener::from_std(std_listener).map_err(|source| SocketError::Io {
                path: config.socket.clone(),
                action: "register the socket with the runtime",
                source,
            })?;
        tracing::info!(path = %config.socket.display(), mode = "0660", gid = ?gid, "listening");
        Ok(Listener {
            listener,
            peers: PeerPolicy::new(&config.allowed_uids, &config.allowed_gids, gid),
            path: config.socket.clone(),
            inode,
        })
    }
}

/// Serves tokens for `config` on `listener` until `shutdown` resolves, then
/// drains in-flight requests and removes the socket.
pub async fn run<S: TokenSource>(
    config: &Config,
    listener: Listener,
    source: S,
    shutdown: impl Future<Output = ()>,
) {
    let cache = Arc::new(TokenCache::new(
        &config.registries,
        config.serve_unlisted_ecr,
        source,
        Arc::new(SystemClock),
        Policy::default(),
        Arc::default(),
    ));
    cache.start();
    tracing::info!(registries = config.registries.len(), "ecr-credd started");
    let Listener { listener, peers, path, inode } = listener;
    server::serve(listener, cache, Arc::new(peers), shutdown).await;
    socket::remove_if_ours(&path, inode);
    tracing::info!("ecr-credd stopped");
}
