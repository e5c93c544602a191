//! The end-to-end test bed: moto (STS + ECR), our IMDSv2 double, Debian's
//! docker-registry and the daemon, each a real process on loopback with a
//! clean environment, stopped when dropped (also when a test fails).
#![allow(dead_code)]

pub mod engine;
pub mod fault_proxy;
pub mod roots;
pub mod tls_proxy;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");
pub const DAEMON: &str = env!("CARGO_BIN_EXE_ecr-credd");
/// The Docker credential helper, built by the client crate beside the daemon.
pub static HELPER: LazyLock<String> = LazyLock::new(|| client_bin("docker-credential-ecr-credd"));

/// A program of the `ecr-credd-client` crate. Cargo names only a package's
/// own binaries to its tests; the workspace builds both into one directory.
pub fn client_bin(name: &str) -> String {
    let path = Path::new(DAEMON).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace (cargo test --workspace, as make test does)",
        path.display()
    );
    path.to_string_lossy().into_owned()
}
/// The loopback registry most tests configure.
pub const ALIAS: &str = "127.0.0.1:5000";
/// The account moto's token for a loopback registry is minted for.
pub const ACCOUNT: &str = "210987654321";
pub const PASSWORD: &str = "210987654321-auth-token";
pub const ROLE: &str = "arn:aws:iam::210987654321:role/ecr-pull";
/// The IMDS double's instance account; an unlisted ECR host in it.
pub const ECR_HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

/// A `[[registry]]` table for `host` in [`ACCOUNT`], us-east-1, assuming
/// `role` (or with the instance's credentials).
pub fn registry_toml(host: &str, role: Option<&str>) -> String {
    let role = role.map(|r| format!("role_arn = \"{r}\"\n")).unwrap_or_default();
    format!("[[registry]]\nhost = \"{host}\"\nregistry_id = \"{ACCOUNT}\"\nregion = \"us-east-1\"\n{role}")
}

/// A child process whose output is collected, killed on drop.
pub struct Proc {
    pub name: &'static str,
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
}

impl Proc {
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Proc {
        Proc::spawn_with_stdin(name, cmd, Stdio::null())
    }

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
                    out.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
        Proc { name, child, output }
    }

    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status();
    }

    /// SIGTERM, then wait up to `limit` for exit.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
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

/// A command with nothing inherited but a plain PATH and a private HOME.
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>, home: &Path) -> Command {
    let mut cmd = Command::new(program);
    let helper_dir = Path::new(&*HELPER).parent().unwrap();
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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

pub fn wait_port(port: u16, what: &str) {
    wait_until(what, Duration::from_secs(30), || TcpStream::connect(("127.0.0.1", port)).is_ok());
}

/// A minimal HTTP/1.1 request; returns status and body.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// moto with the launcher's fixes, and its call counter.
pub struct Moto {
    pub port: u16,
    stats_port: u16,
    _proc: Proc,
}

impl Moto {
    pub fn start(home: &Path) -> Moto {
        Moto::start_with(home, &[])
    }

    /// With launcher settings such as ECR_TOKEN_TTL or ECR_ROTATE_PASSWORD.
    pub fn start_with(home: &Path, env: &[(&str, &str)]) -> Moto {
        let (port, stats_port) = (free_port(), free_port());
        let python = format!("{ROOT}/.venv/bin/python");
        let mut cmd = clean_command(&python, home);
        cmd.arg(format!("{ROOT}/testbed/moto_launcher.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("STATS_PORT", stats_port.to_string())
            .envs(env.iter().copied());
        let proc = Proc::spawn("moto", &mut cmd);
        wait_port(port, "moto");
        wait_port(stats_port, "moto stats");
        Moto { port, stats_port, _proc: proc }
    }

    /// (AssumeRole, GetAuthorizationToken) calls so far.
    pub fn counts(&self) -> (u64, u64) {
        let (_, body) = http(self.stats_port, "GET", "/", "");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        (v["AssumeRole"].as_u64().unwrap(), v["GetAuthorizationToken"].as_u64().unwrap())
    }

    /// Calls of one kind so far (AssumeRole, GetAuthorizationToken, GetAuthorizationTokenPublic).
    pub fn count(&self, call: &str) -> u64 {
        let (_, body) = http(self.stats_port, "GET", "/", "");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()[call].as_u64().unwrap()
    }

    /// The web identity token the last AssumeRoleWithWebIdentity carried.
    pub fn last_web_identity_token(&self) -> String {
        let (_, body) = http(self.stats_port, "GET", "/", "");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["LastWebIdentityToken"].as_str().unwrap_or_default().to_owned()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Our IMDSv2 double.
pub struct Imds {
    pub port: u16,
    _proc: Proc,
}

impl Imds {
    pub fn start(home: &Path) -> Imds {
        Imds::start_with(home, &[])
    }

    /// With settings such as IMDS_EXPIRY_SECONDS.
    pub fn start_with(home: &Path, env: &[(&str, &str)]) -> Imds {
        let port = free_port();
        let mut cmd = clean_command("python3", home);
        cmd.arg(format!("{ROOT}/testbed/imds_double.py")).arg(port.to_string()).envs(env.iter().copied());
        let proc = Proc::spawn("imds", &mut cmd);
        wait_port(port, "imds double");
        Imds { port, _proc: proc }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// POST /_control/NAME with BODY (fail on|off, delay SECONDS, rotate).
    pub fn control(&self, name: &str, body: &str) {
        assert_eq!(http(self.port, "POST", &format!("/_control/{name}"), body).0, 200);
    }

    /// IMDS calls answered so far.
    pub fn calls(&self) -> u64 {
        let (_, body) = http(self.port, "GET", "/_control/stats", "");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["calls"].as_u64().unwrap()
    }

    /// The current (SecretAccessKey, Token), read the way the SDK reads them.
    pub fn secrets(&self) -> (String, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(s, "PUT /latest/api/token HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 0\r\n\r\n").unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let token = raw.split_once("\r\n\r\n").unwrap().1.to_owned();
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(s, "GET /latest/meta-data/iam/security-credentials/ecr-credd-instance HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-aws-ec2-metadata-token: {token}\r\n\r\n").unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let v: serde_json::Value = serde_json::from_str(raw.split_once("\r\n\r\n").unwrap().1).unwrap();
        (v["SecretAccessKey"].as_str().unwrap().into(), v["Token"].as_str().unwrap().into())
    }
}

/// Debian's docker-registry with htpasswd auth for user `AWS`.
pub struct Registry {
    pub port: u16,
    pub dir: PathBuf,
    _proc: Proc,
}

impl Registry {
    pub fn start(dir: &Path, password: &str) -> Registry {
        let port = free_port();
        let dir = dir.join(format!("registry-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let reg = Registry::write_htpasswd_at(&dir, password);
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {data}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: basic-realm\n    path: {reg}\n",
            data = dir.join("data").display(),
            reg = reg.display()
        );
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let mut cmd = clean_command("docker-registry", &dir);
        cmd.arg("serve").arg(&config_path);
        let proc = Proc::spawn("docker-registry", &mut cmd);
        wait_port(port, "docker-registry");
        Registry { port, dir, _proc: proc }
    }

    fn write_htpasswd_at(dir: &Path, password: &str) -> PathBuf {
        let out = Command::new("htpasswd").args(["-Bbn", "AWS", password]).output().unwrap();
        assert!(out.status.success(), "htpasswd failed");
        let path = dir.join("htpasswd");
        std::fs::write(&path, out.stdout).unwrap();
        path
    }

    /// Replaces the accepted password; the registry re-reads the file.
    pub fn set_password(&self, password: &str) {
        Registry::write_htpasswd_at(&self.dir, password);
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// The daemon under test.
pub struct Daemon {
    pub socket: PathBuf,
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
    pub fn helper(&self, action: &str, stdin: &str) -> (i32, String, String) {
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
                let mut cmd = clean_command(DAEMON, self.dir);
                cmd.args(["run", "--config"]).arg(&path);
                cmd
            }
            Some(prefix) => {
                let script = format!("{prefix} exec {DAEMON} run --config {}", path.display());
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

/// Runs `docker-credential-ecr-credd ACTION` with `stdin`; (code, stdout, stderr).
pub fn run_helper(socket: &Path, action: &str, stdin: &str) -> (i32, String, String) {
    run_client(&HELPER, &[action], socket, stdin)
}

/// Runs `cmd` with `stdin` written to it and collects its output.
pub fn output_with_stdin(cmd: &mut Command, stdin: &str) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // A program may exit without reading all of it (and that is its answer).
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

/// Runs a socket client (helper, kubelet provider) with `stdin`; (code, stdout, stderr).
pub fn run_client(program: &str, args: &[&str], socket: &Path, stdin: &str) -> (i32, String, String) {
    let mut cmd = clean_command(program, Path::new("/nonexistent"));
    let out = output_with_stdin(cmd.args(args).env("ECR_CREDD_SOCKET", socket), stdin);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends raw bytes on the socket and reads until the daemon closes or a line arrives.
pub fn raw_exchange(socket: &Path, bytes: &[u8]) -> String {
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.ends_with(b"\n") {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// moto with IAM enforced, an instance role allowed only `allow`, and a
/// registry role with no permissions; IMDS serves the instance role's session.
pub fn iam_bed(dir: &std::path::Path, allow: &str) -> (Moto, Imds, String) {
    let moto = Moto::start(dir);
    let out = clean_command(format!("{ROOT}/.venv/bin/python"), dir)
        .arg(format!("{ROOT}/testbed/moto_iam.py"))
        .arg(moto.endpoint())
        .arg(allow)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let keys: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = |k: &str| keys[k].as_str().unwrap().to_owned();
    let (akid, secret, token) = (key("AccessKeyId"), key("SecretAccessKey"), key("Token"));
    let imds = Imds::start_with(
        dir,
        &[("IMDS_ACCESS_KEY_ID", &akid), ("IMDS_SECRET_ACCESS_KEY", &secret), ("IMDS_TOKEN", &token)],
    );
    assert_eq!(http(moto.port, "POST", "/moto-api/reset-auth", "0").0, 200);
    (moto, imds, keys["RoleArn"].as_str().unwrap().to_owned())
}

/// An auth file (`REGISTRY_AUTH_FILE`) in `home` whose `credHelpers` route
/// each of `hosts` to the helper, and nothing else.
pub fn helper_auth_file(home: &Path, hosts: &[&str]) -> PathBuf {
    let routes: Vec<String> = hosts.iter().map(|h| format!("\"{h}\":\"ecr-credd\"")).collect();
    let auth = home.join("auth.json");
    std::fs::write(&auth, format!("{{\"credHelpers\":{{{}}}}}", routes.join(","))).unwrap();
    auth
}

/// `skopeo copy FROM TO` through the helper; TLS verification is off for the
/// side that is a (loopback, plain HTTP) registry.
pub fn skopeo_copy(home: &Path, auth: &Path, socket: &Path, from: &str, to: &str) -> Output {
    let flag =
        if from.starts_with("docker://") { "--src-tls-verify=false" } else { "--dest-tls-verify=false" };
    container_client("skopeo", home, auth, socket, &["copy", flag, from, to])
}

/// Runs a container client (skopeo, podman, buildah) with only the auth file and socket it is given.
pub fn container_client(program: &str, home: &Path, auth: &Path, socket: &Path, args: &[&str]) -> Output {
    clean_command(program, home)
        .env("REGISTRY_AUTH_FILE", auth)
        .env("ECR_CREDD_SOCKET", socket)
        .args(args)
        .output()
        .unwrap()
}

/// A finished command's stdout and stderr, for assertion messages.
pub fn output_text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A small OCI image layout at `home/image`; returns its `oci:` reference.
pub fn make_oci_image(home: &Path) -> String {
    let image = home.join("image");
    let made = clean_command("python3", home)
        .arg(format!("{ROOT}/testbed/make_oci.py"))
        .arg(&image)
        .status()
        .unwrap();
    assert!(made.success(), "make_oci.py failed");
    format!("oci:{}:latest", image.display())
}

/// Runs the helper's `get HOST` as `uid`:`gid` with no supplementary groups,
/// from a copy in `dir` (which must be reachable by that user).
pub fn helper_as(dir: &Path, socket: &Path, uid: u32, gid: u32, host: &str) -> (i32, String) {
    use std::os::unix::fs::PermissionsExt;
    let copy = dir.join("helper-copy");
    if !copy.exists() {
        std::fs::copy(&*HELPER, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut cmd = Command::new("setpriv");
    cmd.args([&format!("--reuid={uid}"), &format!("--regid={gid}"), "--clear-groups", "--"])
        .arg(&copy)
        .arg("get")
        .env_clear()
        .env("ECR_CREDD_SOCKET", socket);
    let out = output_with_stdin(&mut cmd, host);
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The overall exposure `systemd-analyze security` printed for ecr-credd.service.
pub fn exposure_score(report: &str) -> f64 {
    report
        .lines()
        .find_map(|l| l.split("ecr-credd.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no score in {report}"))
}

/// The one release artifact in dist/ whose name ends with `suffix`.
pub fn dist_file(suffix: &str) -> PathBuf {
    let dir = Path::new(ROOT).join("dist");
    let all: Vec<PathBuf> =
        std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    let found: Vec<PathBuf> = all.into_iter().filter(|p| p.to_string_lossy().ends_with(suffix)).collect();
    assert_eq!(found.len(), 1, "one *{suffix} in {} expected (run `make release`): {found:?}", dir.display());
    found[0].clone()
}
