//! Creating the daemon's Unix socket safely, and deciding which peers may use it.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The socket's mode: owner and group may connect, nobody else.
pub(crate) const SOCKET_MODE: u32 = 0o660;
/// The mode when `allowed_uids`/`allowed_gids` name peers outside the group:
/// they must be able to connect, and the peer check (SO_PEERCRED) is the gate.
pub(crate) const SOCKET_MODE_ALLOW_LISTS: u32 = 0o666;

/// Why the socket could not be set up.
#[derive(Debug, Error)]
pub enum SocketError {
    /// Another live daemon answers on the path.
    #[error("{path}: another ecr-credd is already listening there")]
    InUse {
        /// The socket path.
        path: PathBuf,
    },
    /// Something other than a socket sits at the path; we never delete it.
    #[error("{path}: exists and is not a socket; remove it or choose another [server] socket")]
    NotASocket {
        /// The socket path.
        path: PathBuf,
    },
    /// The socket's directory is writable by others, who could replace the socket.
    #[error("{path}: the socket directory is writable by others (mode {mode:04o}); use a directory only root can write, e.g. /run/ecr-credd")]
    DirWritable {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The socket's directory belongs to someone who could rename our socket
    /// away and bind their own in its place.
    #[error("{path}: the socket directory is owned by uid {owner}, not root or this daemon (uid {me}); use a directory only root can write, e.g. /run/ecr-credd")]
    DirOwner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The daemon's uid.
        me: u32,
    },
    /// The configured group does not exist.
    #[error("[server] group {group:?} does not exist in /etc/group; create it (groupadd --system {group}) or name an existing group, e.g. \"ecr-credd\", which the packages create")]
    NoSuchGroup {
        /// The group named.
        group: String,
    },
    /// An I/O step failed.
    #[error("{path}: cannot {action}: {cause}")]
    Io {
        /// The path acted on.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// Why it failed.
        cause: std::io::Error,
    },
}

fn io(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> SocketError {
    let path = path.to_owned();
    move |cause| SocketError::Io { path, action, cause }
}

/// This process's real uid (from the kernel: /proc/self belongs to root once
/// the process is not dumpable).
pub(crate) fn own_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// The group and mode of the file a listener is bound to: for a socket
/// systemd created, its `SocketGroup=` and `SocketMode=`, whatever the config
/// says. (fstat on the descriptor would describe the socket inode, not the
/// path's owner.) An abstract socket has neither: `(None, 0o666)`.
pub(crate) fn bound_owner(listener: &UnixListener) -> std::io::Result<(Option<u32>, u32)> {
    let addr = listener.local_addr()?;
    match addr.as_pathname() {
        Some(path) => {
            let meta = std::fs::metadata(path)?;
            Ok((Some(meta.gid()), meta.permissions().mode() & 0o7777))
        }
        None => Ok((None, 0o666)),
    }
}

/// Binds `path` with `mode` and group `gid`. The socket is bound under a
/// temporary name, given its mode and group, then renamed into place, so it
/// never exists at `path` with looser permissions. A stale socket left by a
/// crashed daemon is replaced; a live one or a non-socket file is an error.
pub(crate) fn bind(path: &Path, gid: Option<u32>, mode: u32) -> Result<UnixListener, SocketError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir, "create the socket directory"))?;
        let meta = std::fs::metadata(dir).map_err(io(dir, "inspect the socket directory"))?;
        let mode = meta.permissions().mode();
        // Anyone who can write the directory can swap our socket for theirs:
        // others and the group by its mode, the owner always.
        if mode & 0o022 != 0 {
            return Err(SocketError::DirWritable { path: dir.to_owned(), mode: mode & 0o7777 });
        }
        let me = own_uid();
        if meta.uid() != 0 && meta.uid() != me {
            return Err(SocketError::DirOwner { path: dir.to_owned(), owner: meta.uid(), me });
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(SocketError::NotASocket { path: path.to_owned() })
        }
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => return Err(SocketError::InUse { path: path.to_owned() }),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                tracing::info!(path = %path.display(), "replacing stale socket");
            }
            Err(e) => return Err(io(path, "probe the existing socket")(e)),
        },
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io(path, "inspect the socket path")(e)),
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(io(&tmp, "bind"))?;
    let result = (|| {
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
            .map_err(io(&tmp, "set the socket mode"))?;
        if let Some(gid) = gid {
            std::os::unix::fs::chown(&tmp, None, Some(gid)).map_err(io(&tmp, "set the socket group"))?;
        }
        std::fs::rename(&tmp, path).map_err(io(path, "move the socket into place"))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    listener.set_nonblocking(true).map_err(io(path, "make the socket non-blocking"))?;
    Ok(listener)
}

/// Removes the socket at `path` if it is still the one we bound (same inode).
pub(crate) fn remove_if_ours(path: &Path, inode: u64) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == inode) {
        let _ = std::fs::remove_file(path);
    }
}

/// Uids many unrelated processes run as: distroless's `nonroot` and `nobody`.
pub(crate) const SHARED_UIDS: [u32; 2] = [65532, 65534];

/// Which connecting processes may have tokens, beyond the file mode.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    /// The daemon's own uid (allowed, as is root); 0 when it is shared.
    pub own_uid: u32,
    /// Other allowed uids.
    pub uids: Vec<u32>,
    /// Allowed gids, primary or supplementary (the socket's group among them).
    pub gids: Vec<u32>,
    /// The socket's group, kept when a reload replaces the lists.
    pub socket_gid: Option<u32>,
}

impl PeerPolicy {
    /// The daemon's own uid plus what the config and socket group allow.
    /// Its own uid is not admitted when that uid is one many processes
    /// share: in a pod as distroless's `nonroot` or as `nobody`, any other
    /// pod running as it could take tokens.
    pub fn new(uids: &[u32], gids: &[u32], socket_gid: Option<u32>) -> Self {
        Self::for_daemon(own_uid(), uids, gids, socket_gid)
    }

    /// [`PeerPolicy::new`] for a daemon running as `daemon_uid`.
    pub fn for_daemon(daemon_uid: u32, uids: &[u32], gids: &[u32], socket_gid: Option<u32>) -> Self {
        let own_uid = Some(daemon_uid).filter(|u| !SHARED_UIDS.contains(u)).unwrap_or(0);
        let mut gids = gids.to_vec();
        gids.extend(socket_gid);
        PeerPolicy { own_uid, uids: uids.to_vec(), gids, socket_gid }
    }

    /// The same socket group with the allow-lists of a reloaded config.
    pub fn with_lists(&self, uids: &[u32], gids: &[u32]) -> Self {
        PeerPolicy::new(uids, gids, self.socket_gid)
    }

    /// Whether the peer (`uid`, primary `gid`, `pid`) may use the socket.
    pub fn allows(&self, uid: u32, gid: u32, pid: Option<i32>) -> bool {
        if uid == 0 || uid == self.own_uid || self.uids.contains(&uid) || self.gids.contains(&gid) {
            return true;
        }
        pid.is_some_and(|pid| supplementary_groups(pid).iter().any(|g| self.gids.contains(g)))
    }
}

/// The peer's supplementary groups from /proc (empty if it is gone).
fn supplementary_groups(pid: i32) -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| g.split_whitespace().filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_with_mode_and_replaces_stale_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/ecr-credd.sock");
        let l = bind(&path, None, SOCKET_MODE).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, SOCKET_MODE);
        // Live: refused.
        assert!(matches!(bind(&path, None, SOCKET_MODE), Err(SocketError::InUse { .. })));
        // Stale (listener gone): replaced.
        drop(l);
        let _l2 = bind(&path, None, SOCKET_MODE).unwrap();
        // A directory others can write is refused.
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = bind(&open.join("s.sock"), None, SOCKET_MODE).unwrap_err();
        assert!(err.to_string().contains("writable by others (mode 0777)"), "{err}");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o775)).unwrap();
        let err = bind(&open.join("s.sock"), None, SOCKET_MODE).unwrap_err();
        assert!(err.to_string().contains("(mode 0775)"), "group-writable: {err}");
        // Owned by someone else (who could rename our socket away): refused.
        if own_uid() == 0 {
            let theirs = dir.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
            let err = bind(&theirs.join("s.sock"), None, SOCKET_MODE).unwrap_err();
            assert!(err.to_string().contains("owned by uid 65534, not root or this daemon"), "{err}");
        }
        // Not a socket: never deleted.
        let file = dir.path().join("file");
        std::fs::write(&file, "keep").unwrap();
        assert!(matches!(bind(&file, None, SOCKET_MODE), Err(SocketError::NotASocket { .. })));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    }

    #[test]
    fn a_shared_daemon_uid_is_not_admitted() {
        assert!(PeerPolicy::for_daemon(64872, &[], &[], None).allows(64872, 64872, None));
        for shared in SHARED_UIDS {
            let p = PeerPolicy::for_daemon(shared, &[], &[], None);
            assert!(!p.allows(shared, shared, None), "{shared}");
            assert!(p.allows(0, 0, None), "root still is");
            let listed = PeerPolicy::for_daemon(shared, &[shared], &[], None);
            assert!(listed.allows(shared, shared, None), "unless the config lists it");
        }
    }

    #[test]
    fn peer_policy() {
        let p = PeerPolicy { own_uid: 999, uids: vec![1000], gids: vec![50], socket_gid: Some(50) };
        assert!(p.allows(0, 0, None));
        assert!(p.allows(999, 1, None));
        assert!(p.allows(1000, 1, None));
        assert!(p.allows(1234, 50, None));
        assert!(!p.allows(65534, 65534, None));
    }
}
