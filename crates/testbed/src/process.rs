//! Child processes: started with a clean environment, their output kept for
//! a failing test's report, killed when dropped (also when a test fails).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::paths::helper_bin;

/// A child process whose output is collected, killed on drop.
pub struct Proc {
    /// What the failure report calls it.
    pub name: &'static str,
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
}

impl Proc {
    /// Starts `cmd` with no stdin.
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Proc {
        Proc::spawn_with_stdin(name, cmd, Stdio::null())
    }

    /// Starts `cmd` with the given stdin.
    pub fn spawn_with_stdin(name: &'static str, cmd: &mut Command, stdin: Stdio) -> Proc {
        let mut child =
            cmd.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| {
                panic!("cannot start {name}: {e} (run `make test`, which installs the test bed)")
            });
        let output = Arc::new(Mutex::new(Vec::new()));
        for pipe in [
            child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
            child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let out = output.clone();
            std::thread::spawn(move || {
                let mut pipe = pipe;
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(&buf[..n]);
                }
            });
        }
        Proc { name, child, output }
    }

    /// Its stdout and stderr so far, interleaved as they arrived.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends signal `sig` (`TERM`, `HUP`, `INT`, `ABRT` or `KILL`). A
    /// system call, not `kill(1)`: minimal roots lack procps.
    pub fn signal(&self, sig: &str) {
        use rustix::process::{kill_process, Pid, Signal};
        let signal = match sig {
            "TERM" => Signal::TERM,
            "HUP" => Signal::HUP,
            "INT" => Signal::INT,
            "ABRT" => Signal::ABORT,
            "KILL" => Signal::KILL,
            other => panic!("signal {other} is not one the tests send"),
        };
        let pid = i32::try_from(self.child.id()).ok().and_then(Pid::from_raw);
        if let Some(pid) = pid {
            let _ = kill_process(pid, signal);
        }
    }

    /// SIGTERM, then wait up to `limit` for exit.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.signal("TERM");
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- {} output -----\n{}", self.name, self.output());
        }
    }
}

/// A command with nothing inherited but a plain PATH (the helper's directory
/// first) and a private HOME.
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>, home: &Path) -> Command {
    let mut cmd = Command::new(program);
    let helper_dir = Path::new(helper_bin()).parent().unwrap_or(Path::new("/"));
    cmd.env_clear()
        .env(
            "PATH",
            format!("{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", helper_dir.display()),
        )
        .env("HOME", home)
        .env("LANG", "C.UTF-8")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent");
    cmd
}

/// What a finished program said: exit code (-1 for a signal), stdout, stderr.
pub type Said = (i32, String, String);

/// Runs `cmd` with `stdin` written to it and collects its output.
pub fn output_with_stdin(cmd: &mut Command, stdin: &str) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // A program may exit without reading all of it (and that is its answer).
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

/// `program ARGS` in a clean environment with `stdin`.
pub fn run_clean(program: &str, args: &[&str], stdin: &str) -> Said {
    let mut cmd = clean_command(program, Path::new("/nonexistent"));
    said(&output_with_stdin(cmd.args(args), stdin))
}

/// `program ARGS`, which must succeed; its stdout.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", output_text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A finished command as (code, stdout, stderr).
pub fn said(out: &Output) -> Said {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A finished command's stdout and stderr, for assertion messages.
pub fn output_text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Makes `dir` (created if need be) one every user may enter (0755), for
/// tests that run clients as other users; returns it.
pub fn open_to_all(dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir.to_path_buf()
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `ok` every 25 ms; fails the test after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Waits up to 30 s for something to listen on 127.0.0.1:`port`.
pub fn wait_port(port: u16, what: &str) {
    wait_until(what, Duration::from_secs(30), || TcpStream::connect(("127.0.0.1", port)).is_ok());
}
