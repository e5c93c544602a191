//! `make bench`: ecr-credd side by side with Debian's docker-credential-ecr-login
//! on the same emulated AWS, in one run, and the results written to
//! BENCHMARKS.md and docs/bench-latency.svg.
//!
//! ecr-login cannot be pointed at a custom endpoint, so both tools reach moto
//! the same way: the real AWS hostnames through testbed/connect_proxy.py
//! (HTTPS_PROXY), which answers with a test CA (SSL_CERT_FILE) and relays to
//! moto. IMDS is our double for both.

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{exec_samples, ms, percentile, socket_load};
use ecr_credd::wire::{Request, RequestBody, ResponseBody};
use support::tls_proxy::TlsProxy;
use support::{clean_command, Daemon, Imds, Moto, HELPER, ROLE, ROOT};

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

/// One measured case: latencies and AWS calls per get.
struct Case {
    tool: &'static str,
    label: &'static str,
    times: Vec<Duration>,
    per_get: [f64; 3],
}

impl Case {
    fn median(&self) -> Duration {
        percentile(&self.times, 0.5)
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
    while Instant::now() < deadline {
        if let Ok(resp) = ecr_credd::client::request(socket, &Request::new(RequestBody::Status)) {
            if let ResponseBody::Status { registries, .. } = resp.body {
                if registries.iter().filter(|r| r.configured).all(|r| r.ready) {
                    return;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("registries not ready in 60 s");
}

/// Daemon memory with some number of registries.
struct RssRow {
    registries: usize,
    start_kib: u64,
    after_kib: u64,
    /// AssumeRole and GetAuthorizationToken calls it made.
    calls: [u64; 2],
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
    let daemon = Daemon::start(&dir, &config, &Daemon::aws_env(moto, imds), "warn");
    wait_ready(&daemon.socket);
    let start = rss_kib(daemon.proc.pid());
    for i in 0..10_000 {
        let get = Request::new(RequestBody::Get { host: hosts[i % n].clone() });
        ecr_credd::client::request(&daemon.socket, &get).expect("get");
    }
    let after = rss_kib(daemon.proc.pid());
    let calls = [moto.count("AssumeRole") - before[0], moto.count("GetAuthorizationToken") - before[1]];
    eprintln!(
        "rss with {n:>3} registries: {start} KiB after start, {after} KiB after 10,000 gets, calls {calls:?}"
    );
    RssRow { registries: n, start_kib: start, after_kib: after, calls }
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
    let spawned = Instant::now();
    let daemon = Daemon::start(home, &registries, &bed.env(), "warn");
    let first = exec_samples(
        || {
            let mut cmd = clean_command(HELPER, home);
            cmd.arg("get").env("ECR_CREDD_SOCKET", &daemon.socket);
            cmd
        },
        format!("{CROSS_HOST}\n").as_bytes(),
        0,
        1,
    );
    let cold_start = spawned.elapsed();
    eprintln!(
        "ecr-credd  daemon spawn to first cross-account token: {} ms (get itself {} ms)",
        ms(cold_start),
        ms(first[0])
    );
    let helper = || {
        let mut cmd = clean_command(HELPER, home);
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
        ecr_credd::client::request(&daemon.socket, &Request::new(RequestBody::Get { host: host.into() }))
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

    let report = render(&cases, cold_start, percentile(&floor, 0.5), credd_10k, &socket_rows, &rss);
    std::fs::write(format!("{ROOT}/BENCHMARKS.md"), &report).expect("write BENCHMARKS.md");
    std::fs::create_dir_all(format!("{ROOT}/docs")).expect("docs dir");
    std::fs::write(format!("{ROOT}/docs/bench-latency.svg"), plot(&cases)).expect("write plot");
    println!("{report}");
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let version = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let ecr_login = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "amazon-ecr-credential-helper"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    format!(
        "{cores} cores ({cpu}), Linux {}, ecr-login {ecr_login} (Debian package amazon-ecr-credential-helper), ecr-credd {}",
        version("uname", "-r"),
        env!("CARGO_PKG_VERSION")
    )
}

fn render(
    cases: &[Case],
    cold_start: Duration,
    floor: Duration,
    credd_10k: [u64; 3],
    socket: &[(usize, f64, Duration, Duration)],
    rss: &[RssRow],
) -> String {
    let credd = |label: &str| {
        cases.iter().find(|c| c.tool == "ecr-credd" && c.label.contains(label)).map(Case::median)
    };
    let base_instance = credd("instance").unwrap_or(Duration::from_nanos(1));
    let base_cross = credd("cross").unwrap_or(Duration::from_nanos(1));
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(out, "Produced by `make bench` (`cargo bench --bench vs_ecr_login`); this file and");
    let _ = writeln!(out, "`docs/bench-latency.svg` are rewritten by every run.\n");
    let _ = writeln!(out, "- Machine: {}", machine());
    let _ = writeln!(out, "- Both tools reach the same moto (STS, ECR) by the real AWS hostnames through a TLS-terminating CONNECT proxy on loopback, and the same IMDSv2 double.");
    let _ = writeln!(out, "- Times are a whole helper process, exec to exit, for one `get`; `/bin/true` exec'd the same way takes {} ms median here.\n", ms(floor));
    let _ = writeln!(out, "## Helper `get`\n");
    let _ = writeln!(out, "| tool | case | runs | median ms | p99 ms | ecr-login / ecr-credd |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for c in cases {
        let ratio = if c.tool == "ecr-login" {
            let base = if c.label.contains("cross") { base_cross } else { base_instance };
            format!("{:.1}×", c.median().as_secs_f64() / base.as_secs_f64())
        } else {
            "1×".into()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {ratio} |",
            c.tool,
            c.label,
            c.times.len(),
            ms(c.median()),
            ms(percentile(&c.times, 0.99))
        );
    }
    let _ = writeln!(out, "\necr-credd cold: from spawning the daemon to the first cross-account token at the helper, {} ms (IMDS, AssumeRole and GetAuthorizationToken included). Ratios compare each ecr-login case with ecr-credd's cached get for the same registry, which is what every ecr-credd get costs once the daemon runs.\n", ms(cold_start));
    let _ = writeln!(out, "## AWS calls per 10,000 `get`s\n");
    let _ = writeln!(out, "| tool | case | IMDS | sts:AssumeRole | ecr:GetAuthorizationToken |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    let _ = writeln!(
        out,
        "| ecr-credd | both registries, after start (measured over 10,000) | {} | {} | {} |",
        credd_10k[0], credd_10k[1], credd_10k[2]
    );
    for c in cases.iter().filter(|c| c.tool == "ecr-login") {
        let per = |i: usize| format!("{:.0}", c.per_get[i] * 10_000.0);
        let _ = writeln!(
            out,
            "| ecr-login | {} (scaled from {} gets) | {} | {} | {} |",
            c.label,
            c.times.len() + 5,
            per(0),
            per(1),
            per(2)
        );
    }
    let _ = writeln!(
        out,
        "\nIMDS counts every HTTP request to the double (session token PUT and credential GETs).\n"
    );
    let _ = writeln!(out, "## Daemon socket (release daemon, one connection per request)\n");
    let _ = writeln!(out, "| concurrent clients | gets/s | p50 ms | p99 ms |");
    let _ = writeln!(out, "|---|---|---|---|");
    for (clients, rate, p50, p99) in socket {
        let _ = writeln!(out, "| {clients} | {rate:.0} | {} | {} |", ms(*p50), ms(*p99));
    }
    let _ = writeln!(out, "\nThe client threads run on the same 2 cores as the daemon.\n");
    let _ = writeln!(out, "## Daemon memory\n");
    let _ = writeln!(
        out,
        "| registries | RSS after start | RSS after 10,000 gets | AssumeRole / GetAuthorizationToken calls |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    for r in rss {
        let mb = |kib: u64| kib as f64 / 1024.0;
        let _ = writeln!(
            out,
            "| {} | {:.1} MB | {:.1} MB | {} / {} |",
            r.registries,
            mb(r.start_kib),
            mb(r.after_kib),
            r.calls[0],
            r.calls[1]
        );
    }
    let _ = writeln!(out, "\n![latency distribution](docs/bench-latency.svg)");
    out
}

/// Cumulative latency distributions on a log time axis, one line per case.
fn plot(cases: &[Case]) -> String {
    let (w, h, left, bottom) = (760.0, 420.0, 60.0, 40.0);
    let (lo, hi) = (0.3f64.log10(), 300f64.log10());
    let x = |d: Duration| {
        let v = (d.as_secs_f64() * 1e3).clamp(0.3, 300.0).log10();
        left + (v - lo) / (hi - lo) * (w - left - 20.0)
    };
    let y = |q: f64| (h - bottom) - q * (h - bottom - 20.0);
    let colors = ["#1b7837", "#5aae61", "#c51b7d", "#e08214", "#8073ac", "#b2182b"];
    let mut svg = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    for tick in [0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0] {
        let tx = x(Duration::from_secs_f64(tick / 1e3));
        let _ = writeln!(svg, "<line x1=\"{tx:.1}\" y1=\"20\" x2=\"{tx:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{tick} ms</text>", h - bottom, h - bottom + 16.0);
    }
    for q in [0.0, 0.5, 1.0] {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{q}</text>",
            left - 6.0,
            y(q) + 4.0
        );
    }
    let _ = writeln!(svg, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">helper get, exec to exit (log scale); y: fraction of runs at or below</text>", w / 2.0, h - 6.0);
    for (i, c) in cases.iter().enumerate() {
        let n = c.times.len() as f64;
        let points: Vec<String> = c
            .times
            .iter()
            .enumerate()
            .map(|(k, d)| format!("{:.1},{:.1}", x(*d), y((k + 1) as f64 / n)))
            .collect();
        let color = colors[i % colors.len()];
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{color}\">{}: {}</text>",
            left + 10.0,
            36.0 + 16.0 * i as f64,
            c.tool,
            c.label
        );
    }
    svg + "</svg>\n"
}
