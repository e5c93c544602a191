//! A fleet of real daemons booting against one account's quotas: N `ecr-credd
//! run` processes, each with base credentials of its own (`credentials =
//! "env"`, one key each) and 1 to 3 registries on one role, behind the fault
//! proxy's token buckets; each node has a client asking through the real
//! helper on the kubelet's retry schedule. Every AWS call is logged and traced
//! to its node, so the figures come from what the buckets saw.

pub mod report;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::aws::{Moto, ACCOUNT, ROLE};
use crate::fault_proxy::{Bucket, Call, Fault, FaultProxy};
use crate::paths::{daemon_bin, helper_bin};
use crate::tls_proxy::TlsProxy;

/// When a kubelet retries a failed pull (its image back-off: 10 s doubling).
pub const KUBELET_RETRIES: [u64; 6] = [0, 10, 30, 70, 150, 310];

/// What each node runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contender {
    /// ecr-credd as this checkout builds it.
    Ours,
    /// ecr-credd built from an earlier commit (`scripts/build-baseline.sh`):
    /// the directory holding its daemon and helper, and the commit.
    Baseline {
        /// Holds `ecr-credd` and `docker-credential-ecr-credd`.
        bin_dir: PathBuf,
        /// The commit they were built from.
        commit: String,
    },
    /// `docker-credential-ecr-login`, exec'd by each pull (no daemon), its
    /// AWS calls through the TLS proxy.
    EcrLogin,
}

/// One fleet run.
#[derive(Clone, Debug)]
pub struct FleetSpec {
    /// What the nodes run.
    pub contender: Contender,
    /// How many nodes.
    pub nodes: usize,
    /// How many registries a node has, all on one role: node i has the
    /// range's i-th value, cycling.
    pub registries: std::ops::RangeInclusive<usize>,
    /// Boot times are spread evenly over this window (zero: all at once).
    pub spread: Duration,
    /// The GetAuthorizationToken quota.
    pub ecr: Bucket,
    /// The STS (AssumeRole) quota.
    pub sts: Bucket,
    /// Every AssumeRole is denied (a trust policy that refuses the fleet).
    pub denied: bool,
    /// The run stops after this long, ready or not.
    pub limit: Duration,
}

impl FleetSpec {
    /// How many registries node `i` has (at least one).
    pub fn registries_of(&self, i: usize) -> usize {
        let (low, high) = (*self.registries.start(), *self.registries.end());
        (low + i % (high.saturating_sub(low) + 1)).max(1)
    }
}

/// What one node did, in seconds since the fleet started.
#[derive(Clone, Debug, Default)]
pub struct NodeResult {
    /// When it booted.
    pub boot: f64,
    /// When its first GetAuthorizationToken was admitted.
    pub token: Option<f64>,
    /// When its client's first `get` succeeded.
    pub client: Option<f64>,
    /// Its client's attempts.
    pub client_attempts: u32,
    /// Resident and proportional set size of its daemon at the end, KiB.
    pub rss_kib: u64,
    /// Proportional set size, KiB.
    pub pss_kib: u64,
}

/// A finished run: per node, and every call the buckets saw.
#[derive(Clone, Debug)]
pub struct FleetResult {
    /// The run's shape.
    pub spec: FleetSpec,
    /// One per node, in node order.
    pub nodes: Vec<NodeResult>,
    /// Every AWS call, with `at` counted from the fleet's start.
    pub calls: Vec<(f64, Call)>,
    /// How long it ran.
    pub wall: f64,
}

/// The node's own access key id: what its AssumeRole is signed with.
pub fn node_key(i: usize) -> String {
    format!("AKIAFLEET{i:011}")
}

/// Per node: when its client first succeeded, and how many times it asked.
type ClientLog = Mutex<Vec<(Option<f64>, u32)>>;

struct Node {
    dir: PathBuf,
    child: Option<Child>,
    boot: Duration,
}

/// Runs the fleet against `motos` (through a bucketed proxy that spreads
/// the calls over them) from `dir`.
pub fn run(dir: &Path, motos: &[Moto], spec: &FleetSpec) -> FleetResult {
    let proxy = FaultProxy::start_to_all(motos.iter().map(|m| m.port).collect());
    for moto in motos {
        answer_first(moto.pid());
    }
    // ecr-login talks to the real AWS hostnames over TLS: the TLS proxy
    // answers as them and relays to the bucketed proxy.
    let tls = (spec.contender == Contender::EcrLogin).then(|| TlsProxy::start_to(dir, proxy.port));
    proxy.limit("GetAuthorizationToken", spec.ecr);
    proxy.limit("AssumeRole", spec.sts);
    if spec.denied {
        proxy.set(Fault::Deny);
    }
    let mut nodes: Vec<Node> = (0..spec.nodes)
        .map(|i| {
            let boot = spec.spread.mul_f64(i as f64 / spec.nodes.max(1) as f64);
            Node { dir: node_dir(dir, i, spec), child: None, boot }
        })
        .collect();
    let clients: Arc<ClientLog> = Arc::new(Mutex::new(vec![(None, 0); spec.nodes]));
    let t0 = Instant::now();
    let mut client_threads = Vec::new();
    for (i, node) in nodes.iter_mut().enumerate() {
        sleep_until(t0 + node.boot);
        let pull = match (&spec.contender, &tls) {
            (Contender::EcrLogin, Some(tls)) => Pull::ecr_login(&node.dir, i, tls),
            (contender, _) => {
                let bins = match contender {
                    Contender::Baseline { bin_dir, .. } => Some(bin_dir.as_path()),
                    _ => None,
                };
                node.child = Some(spawn_daemon(bins, &node.dir, i, &proxy.endpoint()));
                Pull::helper(bins, &node.dir)
            }
        };
        let (clients, boot, limit) = (clients.clone(), node.boot, spec.limit);
        client_threads.push(std::thread::spawn(move || client(i, &pull, t0, boot, limit, &clients)));
    }
    for t in client_threads {
        let _ = t.join();
    }
    let wall = t0.elapsed().as_secs_f64();
    let offset = t0.saturating_duration_since(proxy.started()).as_secs_f64();
    let calls: Vec<(f64, Call)> =
        proxy.calls().into_iter().map(|c| (c.at.as_secs_f64() - offset, c)).collect();
    let clients = clients.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let first = first_tokens(&calls);
    let results = nodes
        .iter_mut()
        .enumerate()
        .map(|(i, node)| {
            let token = first.get(node_key(i).as_str()).copied();
            let (rss_kib, pss_kib) = node.child.as_ref().map(|c| memory(c.id())).unwrap_or_default();
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            let (client, client_attempts) = clients[i];
            NodeResult { boot: node.boot.as_secs_f64(), token, client, client_attempts, rss_kib, pss_kib }
        })
        .collect();
    FleetResult { spec: spec.clone(), nodes: results, calls, wall }
}

fn node_dir(dir: &Path, i: usize, spec: &FleetSpec) -> PathBuf {
    let node = dir.join(format!("n{i}"));
    std::fs::create_dir_all(&node).unwrap_or_else(|e| panic!("{}: {e}", node.display()));
    let registries: String = (0..spec.registries_of(i))
        .map(|j| {
            format!(
                "[[registry]]\nhost = \"127.0.0.1:{}\"\nregistry_id = \"{ACCOUNT}\"\nregion = \"us-east-1\"\nrole_arn = \"{ROLE}\"\n",
                6000 + j
            )
        })
        .collect();
    let config = format!(
        "serve_unlisted_ecr = false\n[server]\nsocket = \"{}\"\n[aws]\ncredentials = \"env\"\n{registries}",
        node.join("s.sock").display()
    );
    std::fs::write(node.join("config.toml"), config).unwrap_or_else(|e| panic!("{}: {e}", node.display()));
    node
}

/// `bins`' program `name`, or this checkout's `ours`.
fn program(bins: Option<&Path>, name: &str, ours: &str) -> PathBuf {
    bins.map_or_else(|| PathBuf::from(ours), |d| d.join(name))
}

/// Gives `pid` (a moto) and its threads real-time priority, so it answers
/// whenever a call waits: AWS has machines of its own, and a thousand nodes
/// sharing this one's cores must not slow it (best effort: without the
/// privilege, moto keeps the nodes' priority and the run says so).
fn answer_first(pid: u32) {
    let done = Command::new("/usr/bin/chrt")
        .args(["--all-tasks", "--rr", "--pid", "1"])
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !done {
        eprintln!("moto {pid} keeps normal priority (chrt --rr failed): a large fleet may starve it");
    }
}

/// A node's program, run at a lower priority than the emulated AWS (moto and
/// the proxy): on real nodes each daemon has its own CPU and AWS its own
/// machines, so a thousand daemons starting must not starve moto here.
fn node_command(program: &Path) -> Command {
    // A full path: with PATH in its environment and a bare name, std forks
    // (copying this thousand-thread process) instead of posix_spawn.
    let mut cmd = Command::new("/usr/bin/nice");
    cmd.args(["-n", "10"]).arg(program);
    cmd
}

fn spawn_daemon(bins: Option<&Path>, dir: &Path, i: usize, endpoint: &str) -> Child {
    let log = File::create(dir.join("daemon.log")).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let err = log.try_clone().unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    node_command(&program(bins, "ecr-credd", daemon_bin()))
        .args(["run", "--config"])
        .arg(dir.join("config.toml"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", dir)
        .env("RUST_LOG", "warn")
        .env("AWS_ACCESS_KEY_ID", node_key(i))
        .env("AWS_SECRET_ACCESS_KEY", "fleet-secret")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start daemon {i}: {e}"))
}

/// How a node's pull asks for credentials: the program, its environment,
/// the host on its stdin, and the socket to wait for (the helper's).
struct Pull {
    program: PathBuf,
    env: Vec<(&'static str, String)>,
    host: String,
    socket: Option<PathBuf>,
}

impl Pull {
    /// ecr-credd's helper, asking the node's daemon.
    fn helper(bins: Option<&Path>, dir: &Path) -> Pull {
        let socket = dir.join("s.sock");
        Pull {
            program: program(bins, "docker-credential-ecr-credd", helper_bin()),
            env: vec![("ECR_CREDD_SOCKET", socket.display().to_string())],
            host: "127.0.0.1:6000".into(),
            socket: Some(socket),
        }
    }

    /// ecr-login assuming the role from the node's own key (in a shared
    /// credentials file: keys in the environment would win over the
    /// profile's role), its file cache in the node's home.
    fn ecr_login(dir: &Path, i: usize, tls: &TlsProxy) -> Pull {
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            path.display().to_string()
        };
        let config = write(
            "aws-config",
            format!("[profile fleet]\nrole_arn = {ROLE}\nsource_profile = node\nregion = us-east-1\n"),
        );
        let credentials = write(
            "aws-credentials",
            format!("[node]\naws_access_key_id = {}\naws_secret_access_key = fleet-secret\n", node_key(i)),
        );
        Pull {
            program: PathBuf::from("docker-credential-ecr-login"),
            env: vec![
                ("HOME", dir.display().to_string()),
                ("AWS_CONFIG_FILE", config),
                ("AWS_SHARED_CREDENTIALS_FILE", credentials),
                ("AWS_PROFILE", "fleet".into()),
                ("AWS_EC2_METADATA_DISABLED", "true".into()),
                ("HTTPS_PROXY", tls.url()),
                ("SSL_CERT_FILE", tls.ca.display().to_string()),
            ],
            host: format!("{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"),
            socket: None,
        }
    }

    fn succeeds(&self) -> bool {
        node_command(&self.program)
            .arg("get")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                if let Some(mut stdin) = c.stdin.take() {
                    let _ = writeln!(stdin, "{}", self.host);
                }
                c.wait()
            })
            .is_ok_and(|s| s.success())
    }
}

/// The node's client: a pull at each kubelet retry until one succeeds or
/// the run's limit passes.
fn client(i: usize, pull: &Pull, t0: Instant, boot: Duration, limit: Duration, out: &ClientLog) {
    // Under systemd the socket exists before the daemon (socket activation),
    // so a pod's first pull never misses it; here the daemon binds it itself
    // a few milliseconds after its start.
    sleep_until(t0 + boot);
    let ready_by = Instant::now() + Duration::from_secs(5);
    while pull.socket.as_ref().is_some_and(|s| !s.exists()) && Instant::now() < ready_by {
        // Not tighter: a thousand threads at 2 ms are half a million wakeups a
        // second on the cores the daemons start on.
        std::thread::sleep(Duration::from_millis(20));
    }
    for offset in KUBELET_RETRIES {
        let at = boot + Duration::from_secs(offset);
        if at > limit {
            return;
        }
        sleep_until(t0 + at);
        let ok = pull.succeeds();
        let mut out = out.lock().unwrap_or_else(PoisonError::into_inner);
        out[i].1 += 1;
        if ok {
            out[i].0 = Some(t0.elapsed().as_secs_f64());
            return;
        }
    }
}

fn sleep_until(when: Instant) {
    std::thread::sleep(when.saturating_duration_since(Instant::now()));
}

/// (RSS, PSS) of `pid` in KiB, from /proc/PID/smaps_rollup.
fn memory(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

/// Per node key, when its first GetAuthorizationToken was admitted.
pub fn first_tokens(calls: &[(f64, Call)]) -> std::collections::HashMap<&str, f64> {
    let mut first = std::collections::HashMap::new();
    for (at, c) in calls.iter().filter(|(_, c)| c.admitted && c.api == "GetAuthorizationToken") {
        first.entry(c.node.as_str()).or_insert(*at);
    }
    first
}

impl FleetResult {
    /// The time by which fraction `x` of the nodes held a token (`None`:
    /// fewer did by the end).
    pub fn token_quantile(&self, x: f64) -> Option<f64> {
        quantile(self.nodes.iter().map(|n| n.token), x)
    }

    /// The time by which fraction `x` of the nodes' clients had succeeded.
    pub fn client_quantile(&self, x: f64) -> Option<f64> {
        quantile(self.nodes.iter().map(|n| n.client), x)
    }

    /// The lower bound on `token_quantile(x)`: every node must have booted
    /// (x·S), and the bucket must have admitted x·N·d calls, d being the
    /// calls a node needs from it (one GetAuthorizationToken).
    pub fn bound(&self, x: f64) -> f64 {
        let n = self.spec.nodes as f64;
        let b = self.spec.ecr;
        let boot = x * self.spec.spread.as_secs_f64();
        let drain = ((x * n - b.burst).max(0.0)) / b.rate;
        boot.max(drain)
    }

    /// Calls of `api` per node: (admitted, rejected), averaged.
    pub fn calls_per_node(&self, api: &str) -> (f64, f64) {
        let n = self.spec.nodes.max(1) as f64;
        let of = |admitted| self.calls.iter().filter(|(_, c)| c.api == api && c.admitted == admitted).count();
        (of(true) as f64 / n, of(false) as f64 / n)
    }

    /// The most calls of `api` any one node made (admitted or not).
    pub fn max_calls_per_node(&self, api: &str) -> usize {
        self.most_by_one_node(|c| c.api == api)
    }

    /// The most admitted calls of `api` any one node made.
    pub fn max_admitted_per_node(&self, api: &str) -> usize {
        self.most_by_one_node(|c| c.api == api && c.admitted)
    }

    fn most_by_one_node(&self, which: impl Fn(&Call) -> bool) -> usize {
        let mut per: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (_, c) in self.calls.iter().filter(|(_, c)| which(c)) {
            *per.entry(c.node.as_str()).or_default() += 1;
        }
        per.values().copied().max().unwrap_or(0)
    }
}

/// The `x` quantile of the finish times, counting unfinished ones as never.
fn quantile(times: impl Iterator<Item = Option<f64>>, x: f64) -> Option<f64> {
    let all: Vec<Option<f64>> = times.collect();
    let mut done: Vec<f64> = all.iter().flatten().copied().collect();
    done.sort_by(f64::total_cmp);
    let need = ((x * all.len() as f64).ceil() as usize).max(1);
    done.get(need - 1).copied()
}
