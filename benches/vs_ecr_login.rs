//! `make bench`: ecr-credd side by side with Debian's docker-credential-ecr-login
//! on the same emulated AWS, in one run, and the results written to
//! BENCHMARKS.md and docs/bench-latency.svg.
//!
//! ecr-login cannot be pointed at a custom endpoint, so both tools reach moto
//! the same way: the real AWS hostnames through testbed/connect_proxy.py
//! (HTTPS_PROXY), which answers with a test CA (SSL_CERT_FILE) and relays to
//! moto. IMDS is our double for both.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ecr_credd_client::wire::{Request, RequestBody, ResponseBody};
use testbed::timing::report::{plot, render, Case, RssRow};
use testbed::timing::{exec_samples, ms, percentile, socket_load};
use testbed::tls_proxy::TlsProxy;
use testbed::{clean_command, daemon_bin, helper_bin, Daemon, Imds, Moto, Proc, ROLE, ROOT};

/// The IMDS double's own account: served with instance credentials.
const INSTANCE_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
/// Another account, reached through ROLE.
const CROSS_HOST: &str = "210987654321.dkr.ecr.us-east-1.amazonaws.com";

struct Bed {
    moto: Moto,
    imds: Imds,
    proxy: TlsProxy,
}

impl Bed {
    /// (IMDS, AssumeRole, GetAuthorizationToken) calls so far.
    fn calls(&self) -> [u64; 3] {
        [self.imds.calls(), self.moto.count("AssumeRole"), self.moto.count("GetAuthorizationToken")]
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", self.imds.endpoint()),
            ("HTTPS_PROXY", self.proxy.url()),
            ("SSL_CERT_FILE", self.proxy.ca.display().to_string()),
        ]
    }
}

fn measure(
    bed: &Bed,
    tool: &'static str,
    label: &'static str,
    make: impl FnMut() -> Command,
    host: &str,
    warm: usize,
    runs: usize,
) -> Case {
    let before = bed.calls();
    let times = exec_samples(make, format!("{host}\n").as_bytes(), warm, runs);
    let after = bed.calls();
    let per_get = std::array::from_fn(|i| (after[i] - before[i]) as f64 / (warm + runs) as f64);
    let case = Case { tool, label, times, per_get };
    eprintln!(
        "{tool:<10} {label:<44} median {} ms  p99 {} ms",
        ms(case.median()),
        ms(percentile(&case.times, 0.99))
    );
    case
}

const COLD_STARTS: usize = 7;

/// From spawning a daemon to the helper's first cross-account token.
fn cold_start(bed: &Bed, dir: &Path, registries: &str) -> Duration {
    std::fs::create_dir_all(dir).expect("dir");
    let config = Daemon::write_config(dir, registries);
    let socket = dir.join("run/ecr-credd.sock");
    let spawned = Instant::now();
    let mut cmd = clean_command(daemon_bin(), dir);
    cmd.args(["run", "--config"]).arg(&config).env("RUST_LOG", "warn").envs(bed.env());
    let _daemon = Proc::spawn("ecr-credd (cold)", &mut cmd);
    loop {
        let out = clean_command(helper_path(), dir)
            .arg("get")
            .env("ECR_CREDD_SOCKET", &socket)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().expect("stdin").write_all(format!("{CROSS_HOST}\n").as_bytes())?;
                child.wait_with_output()
            })
            .expect("helper");
        if out.status.success() {
            return spawned.elapsed();
        }
        assert!(spawned.elapsed() < Duration::from_secs(30), "no token 30 s after start");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn ecr_login(bed: &Bed, home: &Path, extra: &[(&str, &str)]) -> Command {
    let mut cmd = clean_command("docker-credential-ecr-login", home);
    cmd.arg("get").envs(bed.env()).envs(extra.iter().copied());
    cmd
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS value")
}

fn wait_ready(socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut waiting = Vec::new();
    while Instant::now() < deadline {
        if let Ok(resp) = ecr_credd_client::client::request(socket, &Request::new(RequestBody::Status)) {
            if let ResponseBody::Status { registries, .. } = resp.body {
                waiting = registries
                    .into_iter()
                    .filter(|r| r.configured && !r.ready)
                    .map(|r| format!("{}: {}", r.host, r.last_error.unwrap_or_default()))
                    .collect();
                if waiting.is_empty() {
                    return;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{} registries not ready in 60 s: {:?}", waiting.len(), &waiting[..waiting.len().min(5)]);
}

/// Daemon RSS with `n` registries, after start and after 10,000 gets.
fn rss_case(dir: &Path, moto: &Moto, imds: &Imds, n: usize) -> RssRow {
    let dir = dir.join(format!("rss-{n}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let hosts: Vec<String> = (0..n).map(|i| format!("registry-{i}.internal:5000")).collect();
    let mut config = String::new();
    for (i, host) in hosts.iter().enumerate() {
        let _ = write!(
            config,
            "[[registry]]\nhost = \"{host}\"\nregistry_id = \"{:012}\"\nregion = \"us-east-1\"\nrole_arn = \"{ROLE}\"\n",
            300_000_000_000u64 + i as u64
        );
    }
    let before = [moto.count("AssumeRole"), moto.count("GetAuthorizationToken")];
    let daemon = Daemon::builder(&dir).config(&config).env(&Daemon::aws_env(moto, imds)).log("warn").start();
    wait_ready(&daemon.socket);
    let start = rss_kib(daemon.proc.pid());
    for i in 0..10_000 {
        let get = Request::new(RequestBody::Get { host: hosts[i % n].clone() });
        ecr_credd_client::client::request(&daemon.socket, &get).expect("get");
    }
    let after = rss_kib(daemon.proc.pid());
    let calls = [moto.count("AssumeRole") - before[0], moto.count("GetAuthorizationToken") - before[1]];
    eprintln!(
        "rss with {n:>3} registries: {start} KiB after start, {after} KiB after 10,000 gets, calls {calls:?}"
    );
    RssRow { registries: n, start_kib: start, after_kib: after, calls }
}

/// The helper to time: the shipped static one (`make bench` unpacks it from
/// dist/ and names it in SHIPPED_HELPER), else the one cargo built.
fn helper_path() -> String {
    std::env::var("SHIPPED_HELPER").unwrap_or_else(|_| helper_bin().to_owned())
}

fn main() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path();
    let moto = Moto::start(home);
    let imds = Imds::start(home);
    let proxy = TlsProxy::start(home, &moto);
    let bed = Bed { moto, imds, proxy };
    let mut cases = Vec::new();

    // ecr-credd: the daemon holds both tokens; every get is the helper asking it.
    let registries = format!("[[registry]]\nhost = \"{CROSS_HOST}\"\nrole_arn = \"{ROLE}\"\n[[registry]]\nhost = \"{INSTANCE_HOST}\"\n");
    let daemon = Daemon::builder(home).config(&registries).env(&bed.env()).log("warn").start();
    let helper = || {
        let mut cmd = clean_command(helper_path(), home);
        cmd.arg("get").env("ECR_CREDD_SOCKET", &daemon.socket);
        cmd
    };
    cases.push(measure(&bed, "ecr-credd", "cached token, instance account", helper, INSTANCE_HOST, 20, 500));
    cases.push(measure(&bed, "ecr-credd", "cached token, cross-account role", helper, CROSS_HOST, 20, 500));
    let floor = exec_samples(|| Command::new("/bin/true"), b"", 20, 500);
    eprintln!("/bin/true exec floor: median {} ms", ms(percentile(&floor, 0.5)));

    // 10,000 gets over the socket: the AWS calls they cost.
    let before = bed.calls();
    for i in 0..10_000 {
        let host = if i % 2 == 0 { CROSS_HOST } else { INSTANCE_HOST };
        ecr_credd_client::client::request(
            &daemon.socket,
            &Request::new(RequestBody::Get { host: host.into() }),
        )
        .expect("get");
    }
    let after = bed.calls();
    let credd_10k: [u64; 3] = std::array::from_fn(|i| after[i] - before[i]);

    let socket_rows: Vec<(usize, f64, Duration, Duration)> = [1usize, 8, 64]
        .iter()
        .map(|&clients| {
            let get = Request::new(RequestBody::Get { host: CROSS_HOST.into() });
            let (rate, lat) = socket_load(&daemon.socket, &get, clients, 3);
            eprintln!("socket {clients:>2} clients: {rate:.0}/s p99 {} ms", ms(percentile(&lat, 0.99)));
            (clients, rate, percentile(&lat, 0.5), percentile(&lat, 0.99))
        })
        .collect();
    drop(daemon);

    // Cold: spawn a daemon, then exec the helper until it has the token. The
    // AWS emulators are warm by now (moto loads each service on first use).
    let mut colds = Vec::new();
    let before = bed.calls();
    for i in 0..COLD_STARTS {
        colds.push(cold_start(&bed, &home.join(format!("cold-{i}")), &registries));
    }
    let after = bed.calls();
    let start_calls: [f64; 3] = std::array::from_fn(|i| (after[i] - before[i]) as f64 / COLD_STARTS as f64);
    colds.sort();
    let cold = percentile(&colds, 0.5);
    eprintln!(
        "ecr-credd  daemon spawn to first cross-account token: median {} ms of {COLD_STARTS}",
        ms(cold)
    );

    // ecr-login, the same two registries.
    let profile = home.join("aws-config");
    std::fs::write(
        &profile,
        format!("[profile cross]\nrole_arn = {ROLE}\ncredential_source = Ec2InstanceMetadata\nregion = us-east-1\n"),
    )
    .expect("profile");
    let profile = profile.display().to_string();
    let cross = [("AWS_CONFIG_FILE", profile.as_str()), ("AWS_PROFILE", "cross")];
    let no_cache = [("AWS_ECR_DISABLE_CACHE", "true")];
    cases.push(measure(
        &bed,
        "ecr-login",
        "warm file cache, instance account",
        || ecr_login(&bed, home, &[]),
        INSTANCE_HOST,
        5,
        300,
    ));
    cases.push(measure(
        &bed,
        "ecr-login",
        "cold (cache off), IMDS -> ECR",
        || ecr_login(&bed, home, &no_cache),
        INSTANCE_HOST,
        5,
        200,
    ));
    cases.push(measure(
        &bed,
        "ecr-login",
        "cold (cache off), static keys -> ECR",
        || {
            ecr_login(
                &bed,
                home,
                &[
                    no_cache[0],
                    ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEBENCH0001"),
                    ("AWS_SECRET_ACCESS_KEY", "bench"),
                ],
            )
        },
        INSTANCE_HOST,
        5,
        200,
    ));
    cases.push(measure(
        &bed,
        "ecr-login",
        "cross-account profile, cache on",
        || ecr_login(&bed, home, &cross),
        CROSS_HOST,
        5,
        200,
    ));

    // Daemon memory, direct to moto (no proxy needed).
    let rss: Vec<RssRow> =
        [1usize, 10, 100].iter().map(|&n| rss_case(home, &bed.moto, &bed.imds, n)).collect();

    let report = render(&cases, (cold, start_calls), percentile(&floor, 0.5), credd_10k, &socket_rows, &rss);
    std::fs::write(format!("{ROOT}/BENCHMARKS.md"), &report).expect("write BENCHMARKS.md");
    std::fs::create_dir_all(format!("{ROOT}/docs")).expect("docs dir");
    std::fs::write(format!("{ROOT}/docs/bench-latency.svg"), plot(&cases)).expect("write plot");
    println!("{report}");
}
