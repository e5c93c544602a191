//! The daemon under test: its config, its start, and asking it through the helper.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::aws::{Imds, Moto, ACCOUNT, ROLE};
use crate::clients::run_helper;
use crate::paths::daemon_bin;
use crate::process::{clean_command, output_text, wait_until, Proc, Said};

/// The loopback registry most tests configure.
pub const ALIAS: &str = "127.0.0.1:5000";

/// A `[[registry]]` table for `host` in [`ACCOUNT`], us-east-1, assuming
/// `role` (or with the instance's credentials).
pub fn registry_toml(host: &str, role: Option<&str>) -> String {
    let role = role.map(|r| format!("role_arn = \"{r}\"\n")).unwrap_or_default();
    format!("[[registry]]\nhost = \"{host}\"\nregistry_id = \"{ACCOUNT}\"\nregion = \"us-east-1\"\n{role}")
}

/// `extra` (settings before the tables), then [`ALIAS`] assuming [`ROLE`].
pub fn alias_config(extra: &str) -> String {
    format!("{extra}\n{}", registry_toml(ALIAS, Some(ROLE)))
}

/// A running `ecr-credd run`.
pub struct Daemon {
    /// Its Unix socket.
    pub socket: PathBuf,
    /// The process.
    pub proc: Proc,
}

impl Daemon {
    /// How to start `ecr-credd run` in `dir`: with `.config(..)` (the socket
    /// line is added), `.env(..)`, `.log(..)` and `.shell_prefix(..)`, then
    /// `.start()`, which waits for its socket.
    pub fn builder(dir: &Path) -> DaemonBuilder<'_> {
        DaemonBuilder { dir, config: "", env: &[], log: "info", shell_prefix: None }
    }

    /// Writes `dir/config.toml` with the socket under `dir/run`; returns its path.
    pub fn write_config(dir: &Path, config: &str) -> PathBuf {
        let socket = dir.join("run/ecr-credd.sock");
        let path = dir.join("config.toml");
        std::fs::write(&path, format!("[server]\nsocket = \"{}\"\n\n{config}", socket.display())).unwrap();
        path
    }

    /// The environment pointing the daemon at the emulators.
    pub fn aws_env(moto: &Moto, imds: &Imds) -> Vec<(&'static str, String)> {
        vec![("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint()), ("AWS_ENDPOINT_URL", moto.endpoint())]
    }

    /// Runs the helper as a client would.
    pub fn helper(&self, action: &str, stdin: &str) -> Said {
        run_helper(&self.socket, action, stdin)
    }

    /// The secret the helper's `get` returns for `host`, or `None` if it fails.
    pub fn secret(&self, host: &str) -> Option<String> {
        let (code, out, _) = self.helper("get", host);
        (code == 0).then(|| {
            serde_json::from_str::<serde_json::Value>(&out).unwrap()["Secret"].as_str().unwrap().to_owned()
        })
    }
}

/// The daemon to start; see [`Daemon::builder`].
pub struct DaemonBuilder<'a> {
    dir: &'a Path,
    config: &'a str,
    env: &'a [(&'a str, String)],
    log: &'a str,
    shell_prefix: Option<&'a str>,
}

impl<'a> DaemonBuilder<'a> {
    /// The config, without its `[server] socket` line.
    pub fn config(mut self, config: &'a str) -> Self {
        self.config = config;
        self
    }

    /// Extra environment (usually [`Daemon::aws_env`]).
    pub fn env(mut self, env: &'a [(&'a str, String)]) -> Self {
        self.env = env;
        self
    }

    /// `RUST_LOG` (default `info`).
    pub fn log(mut self, filter: &'a str) -> Self {
        self.log = filter;
        self
    }

    /// Runs it as `sh -c "PREFIX exec ecr-credd run …"` (for `ulimit`, which
    /// Command cannot set safely).
    pub fn shell_prefix(mut self, prefix: &'a str) -> Self {
        self.shell_prefix = Some(prefix);
        self
    }

    /// Starts the daemon and waits for its socket.
    pub fn start(self) -> Daemon {
        let socket = self.dir.join("run/ecr-credd.sock");
        let path = Daemon::write_config(self.dir, self.config);
        let mut cmd = match self.shell_prefix {
            None => {
                let mut cmd = clean_command(daemon_bin(), self.dir);
                cmd.args(["run", "--config"]).arg(&path);
                cmd
            }
            Some(prefix) => {
                let script = format!("{prefix} exec {} run --config {}", daemon_bin(), path.display());
                let mut cmd = clean_command("sh", self.dir);
                cmd.args(["-c", &script]).current_dir(self.dir);
                cmd
            }
        };
        cmd.env("RUST_LOG", self.log).envs(self.env.iter().map(|(k, v)| (k, v)));
        let proc = Proc::spawn("ecr-credd", &mut cmd);
        wait_until("the daemon's socket", Duration::from_secs(20), || socket.exists());
        Daemon { socket, proc }
    }
}

/// moto, the IMDS double and a daemon using both, in a temporary directory
/// of their own. Bind every field (`let Stack { dir, moto, imds, daemon } =
/// ...`): the daemon is then dropped first and the directory last.
pub struct Stack {
    /// Their directory.
    pub dir: tempfile::TempDir,
    /// moto.
    pub moto: Moto,
    /// The IMDS double.
    pub imds: Imds,
    /// The daemon, with `config`.
    pub daemon: Daemon,
}

impl Stack {
    /// Starts the three, the daemon with `config` (without its socket line).
    pub fn start(config: &str) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let (moto, imds) = (Moto::start(dir.path()), Imds::start(dir.path()));
        let daemon = Daemon::builder(dir.path()).config(config).env(&Daemon::aws_env(&moto, &imds)).start();
        Stack { dir, moto, imds, daemon }
    }

    /// [`Stack::start`], then waits up to 20 s until the helper gets a token for `host`.
    pub fn serving(config: &str, host: &str) -> Stack {
        let stack = Stack::start(config);
        wait_until("a token", Duration::from_secs(20), || stack.daemon.helper("get", host).0 == 0);
        stack
    }
}

/// `ecr-credd doctor --config CONFIG ARGS` with HOME at `home` and `env`;
/// its exit code and everything it printed. Fails the test if it hangs past 40 s.
pub fn doctor(home: &Path, config: &Path, args: &[&str], env: &[(&str, String)]) -> (i32, String) {
    let start = std::time::Instant::now();
    let out = clean_command(daemon_bin(), home)
        .args(["doctor", "--config"])
        .arg(config)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(40), "doctor must not hang");
    (out.status.code().unwrap_or(-1), output_text(&out))
}
