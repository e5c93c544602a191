//! A blocking socket client for the helper and the CLI: no async runtime, so
//! the helper stays small and starts fast.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::wire::{self, Request, Response};
use thiserror::Error;

/// Where the daemon listens unless `ECR_CREDD_SOCKET` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/ecr-credd/ecr-credd.sock";

/// How long a client waits for the daemon's answer: longer than the
/// daemon's own wait for a token (12 s).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// How long to wait for room in the daemon's listen backlog. A connect on a
/// Unix socket blocks only while the backlog is full, which a daemon under a
/// flood of connections can have; the client then fails with a clear error
/// instead of hanging the pull.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the daemon could not answer.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Nothing listening (or no permission) at the socket path.
    #[error("cannot reach the ecr-credd daemon at {path} ({cause}); start it with 'systemctl start ecr-credd.socket ecr-credd.service', or set ECR_CREDD_SOCKET to its socket")]
    Connect {
        /// The socket path tried.
        path: PathBuf,
        /// Why the connect failed.
        cause: std::io::Error,
    },
    /// The daemon's listen backlog stayed full: it is overloaded or wedged.
    #[error("the ecr-credd daemon at {path} accepts no connections ({cause}); it may be overloaded or stuck: see 'journalctl -u ecr-credd' and its /healthz")]
    Busy {
        /// The socket path tried.
        path: PathBuf,
        /// The last connect error.
        cause: std::io::Error,
    },
    /// The socket exists but this user may not open it (not in its group).
    #[error("permission denied on the ecr-credd socket {path}: only root and members of group {group} may use it; add this user with 'sudo usermod -aG {group} USER' and log in again, or list its uid in [server] allowed_uids")]
    Denied {
        /// The socket path.
        path: PathBuf,
        /// The socket's group, by name when it has one.
        group: String,
    },
    /// The connection broke or timed out mid-request.
    #[error("lost the connection to the ecr-credd daemon at {path}: {cause}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// What broke.
        cause: std::io::Error,
    },
    /// The daemon answered something we cannot read (version skew?).
    #[error("unreadable answer from the ecr-credd daemon at {path}: {cause}")]
    Protocol {
        /// The socket path.
        path: PathBuf,
        /// What could not be read.
        cause: wire::WireError,
    },
}

/// Most bytes a client program (helper, kubelet provider) reads from stdin;
/// a server URL or a CredentialProviderRequest is far shorter.
pub const MAX_STDIN: usize = 64 * 1024;

/// All of stdin, refusing more than [`MAX_STDIN`] bytes without reading the rest.
pub fn read_stdin(stdin: &mut dyn Read) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    stdin.take(MAX_STDIN as u64 + 1).read_to_end(&mut buf).map_err(|e| format!("cannot read stdin: {e}"))?;
    if buf.len() > MAX_STDIN {
        return Err(format!("input on stdin is larger than {MAX_STDIN} bytes"));
    }
    Ok(buf)
}

/// The socket path from `ECR_CREDD_SOCKET`, else the default.
pub fn socket_path() -> PathBuf {
    std::env::var_os("ECR_CREDD_SOCKET")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_SOCKET), PathBuf::from)
}

fn connect_error(path: &Path, source: std::io::Error) -> ClientError {
    if source.kind() == std::io::ErrorKind::PermissionDenied {
        // A systemd unit cannot be started by this user anyway; name the group.
        if let Ok(meta) = std::fs::metadata(path) {
            let group = crate::groups::group_name(std::os::unix::fs::MetadataExt::gid(&meta));
            return ClientError::Denied { path: path.to_owned(), group };
        }
    }
    if source.kind() == std::io::ErrorKind::TimedOut {
        return ClientError::Busy { path: path.to_owned(), cause: source };
    }
    ClientError::Connect { path: path.to_owned(), cause: source }
}

/// Connects to `path`, giving up after `timeout` while the backlog is full.
/// (A non-blocking Unix connect says EAGAIN then, and cannot be polled for
/// completion: it is tried again.)
fn connect(path: &Path, timeout: Duration) -> std::io::Result<UnixStream> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    let addr = SocketAddrUnix::new(path)?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match rustix::net::connect(&fd, &addr) {
            Ok(()) => break,
            Err(rustix::io::Errno::AGAIN) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(rustix::io::Errno::AGAIN) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the daemon accepted no connection within {}s", timeout.as_secs()),
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
    rustix::io::ioctl_fionbio(&fd, false)?;
    Ok(UnixStream::from(fd))
}

/// Sends one request and reads one response.
pub fn request(path: &Path, req: &Request) -> Result<Response, ClientError> {
    let io = |cause| ClientError::Io { path: path.to_owned(), cause };
    let mut stream = connect(path, CONNECT_TIMEOUT).map_err(|source| connect_error(path, source))?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(REPLY_TIMEOUT)).map_err(io)?;
    // A daemon that refuses this peer answers at once and closes, perhaps
    // before our request is written: read its answer even after EPIPE.
    if let Err(e) = wire::write_frame(&mut stream, req) {
        if !matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset) {
            return Err(io(e));
        }
    }
    let frame = match wire::read_frame(&mut stream, &mut wire::Framer::new(wire::MAX_RESPONSE)) {
        Ok(frame) => frame,
        Err(wire::WireError::Io(e)) => return Err(io(e)),
        Err(cause) => return Err(ClientError::Protocol { path: path.to_owned(), cause }),
    };
    wire::decode_response(&frame).map_err(|cause| ClientError::Protocol { path: path.to_owned(), cause })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{RegistryStatus, RequestBody, ResponseBody};
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixListener;
    use zeroize::Zeroizing;

    #[test]
    fn connect_gives_up_when_the_backlog_stays_full() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        // A listener that never accepts: its backlog fills, then connects wait.
        let _listener = UnixListener::bind(&path).unwrap();
        let mut held = Vec::new();
        let started = std::time::Instant::now();
        let err = loop {
            match connect(&path, Duration::from_millis(300)) {
                Ok(s) => held.push(s),
                Err(e) => break e,
            }
            assert!(held.len() < 100_000, "the backlog never filled");
        };
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains("accepted no connection within"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!held.is_empty());
    }

    #[test]
    fn reads_a_status_for_hundreds_of_registries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let registries: Vec<RegistryStatus> = (0..500)
            .map(|i| RegistryStatus {
                host: format!("{:012}.dkr.ecr.eu-west-1.amazonaws.com", 100_000_000_000u64 + i),
                account: format!("{:012}", 100_000_000_000u64 + i),
                region: "eu-west-1".into(),
                role_arn: Some(format!("arn:aws:iam::{:012}:role/ecr-pull", 100_000_000_000u64 + i)),
                configured: true,
                ready: true,
                expires_at: Some(1),
                last_refresh: Some(1),
                next_refresh: Some(1),
                consecutive_failures: 0,
                last_error: None,
            })
            .collect();
        let answer = wire::encode(&Response::new(ResponseBody::Status {
            ready: true,
            registries,
            credential_source: None,
        }));
        assert!(answer.len() > 8 * wire::MAX_FRAME, "the test needs a big answer");
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&mut conn).read_line(&mut line).unwrap();
            conn.write_all(&answer).unwrap();
        });
        let resp = request(&path, &Request::new(RequestBody::Status)).unwrap();
        server.join().unwrap();
        match resp.body {
            ResponseBody::Status { registries, .. } => assert_eq!(registries.len(), 500),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Answers that carry a token sit in buffers that zero themselves.
    #[test]
    fn frames_are_zeroed_on_drop() {
        let frame: Zeroizing<Vec<u8>> = wire::encode(&Request::new(RequestBody::Status));
        assert!(frame.ends_with(b"\n"));
    }
}
