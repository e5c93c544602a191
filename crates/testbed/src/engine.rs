//! A private dockerd for tests: its own data and exec roots, vfs storage, no
//! iptables or bridge (containers use the host network), stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::process::{output_text, wait_until, Proc};

/// A running dockerd and the `docker` client pointed at it.
pub struct Dockerd {
    host: String,
    dir: PathBuf,
    proc: Proc,
}

impl Dockerd {
    /// Starts dockerd with its state under `dir` (a short path: it holds sockets).
    pub fn start(dir: &Path) -> Dockerd {
        let sock = dir.join("docker.sock");
        let mut cmd = Command::new("dockerd");
        cmd.arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args([
                "--iptables=false",
                "--ip-masq=false",
                "--bridge=none",
                "--storage-driver=vfs",
                "--log-level=warn",
            ]);
        let proc = Proc::spawn("dockerd", &mut cmd);
        let d = Dockerd { host: format!("unix://{}", sock.display()), dir: dir.to_owned(), proc };
        wait_until("dockerd to answer", Duration::from_secs(60), || d.docker(&["version"]).status.success());
        d
    }

    /// A `docker` command pointed at this engine.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_HOST", &self.host);
        cmd
    }

    /// `docker ARGS`, whatever the outcome.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// `docker ARGS`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(out.status.success(), "docker {args:?}: {}", output_text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `docker exec -i [-u USER] CONTAINER ARGS` with `stdin`.
    pub fn exec(&self, container: &str, user: Option<&str>, args: &[&str], stdin: &str) -> Output {
        let mut cmd = self.command();
        cmd.args(["exec", "-i"]);
        if let Some(u) = user {
            cmd.args(["-u", u]);
        }
        super::output_with_stdin(cmd.arg(container).args(args), stdin)
    }

    /// Imports a root file system as image `name` (`tar | docker import`).
    pub fn import(&self, root: &Path, name: &str) {
        let script = format!("tar -C '{}' -c . | docker import - {name} >/dev/null", root.display());
        let out = Command::new("sh").args(["-c", &script]).env("DOCKER_HOST", &self.host).output().unwrap();
        assert!(out.status.success(), "import {}: {}", root.display(), output_text(&out));
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let ids = self.docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        let _ = self.proc.terminate(Duration::from_secs(20));
        // dockerd leaves its network namespace mounted under the exec root;
        // unmount whatever is left under our directory so nothing outlives the test.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let prefix = self.dir.display().to_string();
        let mut ours: Vec<&str> =
            mounts.lines().filter_map(|l| l.split(' ').nth(1)).filter(|m| m.starts_with(&prefix)).collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
    }
}
