//! BENCHMARKS.md and the latency plot, from one run's measurements.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use super::{ms, percentile};

/// One measured case: latencies and AWS calls per get.
pub struct Case {
    /// `ecr-credd` or `ecr-login`.
    pub tool: &'static str,
    /// What was timed.
    pub label: &'static str,
    /// The samples, sorted.
    pub times: Vec<Duration>,
    /// (IMDS, AssumeRole, GetAuthorizationToken) calls per get.
    pub per_get: [f64; 3],
}

impl Case {
    /// The median sample.
    pub fn median(&self) -> Duration {
        percentile(&self.times, 0.5)
    }
}

/// Daemon memory with some number of registries.
pub struct RssRow {
    /// Registries configured.
    pub registries: usize,
    /// RSS after start.
    pub start_kib: u64,
    /// RSS after the gets.
    pub after_kib: u64,
    /// AssumeRole and GetAuthorizationToken calls it made.
    pub calls: [u64; 2],
}

/// The machine and tool versions, for the report.
pub fn machine() -> String {
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

/// BENCHMARKS.md's text.
pub fn render(
    cases: &[Case],
    (cold_start, start_calls): (Duration, [f64; 3]),
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
    let shipped = if std::env::var_os("SHIPPED_HELPER").is_some() {
        "the shipped helper (static, unpacked from dist/'s .deb)"
    } else {
        "the helper cargo built"
    };
    let _ = writeln!(out, "- Times are a whole helper process, exec to exit, for one `get`; `/bin/true` (dynamically linked, as Debian ships it) exec'd the same way takes {} ms median here, and ecr-credd's get, {shipped}, {:.2}× that.\n", ms(floor), base_instance.as_secs_f64() / floor.as_secs_f64());
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
    let _ = writeln!(out, "\necr-credd cold: from spawning the daemon to the helper's first cross-account token, median {} ms over 7 starts (IMDS, AssumeRole and GetAuthorizationToken included; the emulators are warm). Ratios compare each ecr-login case with ecr-credd's cached get for the same registry, which is what every ecr-credd get costs once the daemon runs.\n", ms(cold_start));
    let _ = writeln!(out, "## AWS calls per 10,000 `get`s\n");
    let _ = writeln!(out, "| tool | case | IMDS | sts:AssumeRole | ecr:GetAuthorizationToken |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    let _ = writeln!(
        out,
        "| ecr-credd | both registries, after start (measured over 10,000) | {} | {} | {} |",
        credd_10k[0], credd_10k[1], credd_10k[2]
    );
    let _ = writeln!(
        out,
        "| ecr-credd | each daemon start, to the first cross-account token (the instance registry's own first fetch, spread over 10 s when no client asks, is one more GetAuthorizationToken; refreshes, about every 6 h, cost one per principal) | {:.0} | {:.0} | {:.0} |",
        start_calls[0], start_calls[1], start_calls[2]
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
pub fn plot(cases: &[Case]) -> String {
    let (w, h, left, bottom) = (760.0, 420.0, 60.0, 40.0);
    let (lo, hi) = (0.3f64.log10(), 300f64.log10());
    let x = |d: Duration| {
        let v = (d.as_secs_f64() * 1e3).clamp(0.3, 300.0).log10();
        left + (v - lo) / (hi - lo) * (w - left - 20.0)
    };
    let y = |q: f64| (h - bottom) - q * (h - bottom - 20.0);
    let colors = ["#1b7837", "#5aae61", "#c51b7d", "#e08214", "#8073ac", "#b2182b"];
    let total_h = h + 16.0 * cases.len() as f64 + 8.0;
    let mut svg = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{total_h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
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
            // Under the axis caption, clear of every curve.
            left,
            h + 12.0 + 16.0 * i as f64,
            c.tool,
            c.label
        );
    }
    svg + "</svg>\n"
}
