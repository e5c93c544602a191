//! `make fleet` (`cargo bench --bench fleet`): real daemons booting against
//! one account's quotas, behind the fault proxy's token buckets, and the
//! same fleets simulated on tokio's paused clock (calibrated against the
//! real runs, then run at 10,000 and 100,000 nodes); writes FLEET.md and its
//! plots under docs/.
//!
//! FLEET_NODES (default 1,000) sets the real at-once cases' size,
//! FLEET_DENIED_SECS (default 300) how long the real denied fleet is watched;
//! FLEET_MOTOS (default 2) how many motos answer behind the proxy;
//! FLEET_ONLY=K runs only real case K and its calibration (no FLEET.md),
//! FLEET_KEEP=1 keeps its nodes' logs, FLEET_CALLS=FILE writes its
//! calls as TSV.
//! FLEET_SIM_ONLY=1 runs only the simulation of case FLEET_CASE with
//! FLEET_SIM_NODES nodes over FLEET_LIMIT_S seconds (against moto's model,
//! or AWS's with FLEET_AWS=1), for comparing policies (FLEET_BASE_MS,
//! FLEET_CAP_WAITING_S: see sim.rs). FLEET_MOTO=fifo|shared|shared:C picks
//! the model of moto the calibration uses (one call at a time, or C at once
//! sharing its time), FLEET_CALIBRATE_TRY=shared:64,fifo,... prints how
//! others would fare.

mod sim;

use sim::{MotoModel, Server};

use std::fmt::Write as _;
use std::time::Duration;

use testbed::fault_proxy::{Bucket, Rejection};
use testbed::fleet::{self, report, Contender, FleetResult, FleetSpec};
use testbed::{Moto, ROOT};

/// moto's model, and its work per call: FLEET_LATENCY_MS, or what a real
/// run measured, or 5 ms (what moto at real-time priority measures here).
fn moto(measured: Option<Duration>) -> (Server, Duration) {
    let latency = match std::env::var("FLEET_LATENCY_MS").ok().and_then(|v| v.parse().ok()) {
        Some(ms) => Duration::from_millis(ms),
        None => measured.unwrap_or(Duration::from_millis(5)),
    };
    (Server::Moto(MotoModel::from_env()), latency)
}

/// AWS's latency per call, any number at once, in the larger simulations.
const AWS: (Server, Duration) = (Server::Aws, Duration::from_millis(50));

fn simulate(spec: &FleetSpec, (server, latency): (Server, Duration), runs: usize) -> Vec<FleetResult> {
    (0..runs).map(|_| sim::run(spec, server, latency, None)).collect()
}

/// A real run the simulation is checked against: this policy's, or the
/// baseline's (against its model), whose AssumeRole is allowed (a denied
/// fleet's times are never).
fn calibrates(r: &FleetResult) -> bool {
    let simulated = match &r.spec.contender {
        Contender::Ours => true,
        Contender::Baseline { commit, .. } => commit.starts_with(MODELLED),
        Contender::EcrLogin => false,
    };
    simulated && !r.spec.denied
}

/// The commit sim/baseline.rs models, whatever FLEET_BASELINE built.
const MODELLED: &str = "80c226f";

/// The simulated nodes run the model of the policy at MODELLED.
fn modelled(spec: FleetSpec) -> FleetSpec {
    let contender =
        Contender::Baseline { bin_dir: Default::default(), commit: format!("{MODELLED}, modelled") };
    FleetSpec { contender, ..spec }
}

/// The real run `r` simulated against moto's model, each node starting when
/// its real counterpart did: the calibration's table line, and whether it
/// is within the tolerance.
fn calibrate(r: &FleetResult) -> (String, bool) {
    let measured = moto_service(r);
    // The model's one parameter comes from the run it is checked against.
    let (server, latency) = moto(measured);
    if let Some(measured) = measured {
        eprintln!(
            "{}: moto's work per call, measured {:.1} ms",
            report::case_name(r),
            measured.as_secs_f64() * 1000.0
        );
    }
    let starts = starts(r);
    let mut sorted = starts.clone();
    sorted.sort_by(f64::total_cmp);
    let q = |x: f64| sorted.get(((sorted.len() as f64 - 1.0) * x) as usize).copied().unwrap_or(f64::NAN);
    eprintln!(
        "{}: first AssumeRole by node, T50 {:.1} s, T90 {:.1} s, T100 {:.1} s",
        report::case_name(r),
        q(0.5),
        q(0.9),
        q(1.0)
    );
    let sim_with = |server| {
        let runs: Vec<FleetResult> =
            (0..RUNS).map(|_| sim::run(&r.spec, server, latency, Some(&starts))).collect();
        calibration(r, &summary(&runs).0)
    };
    // FLEET_CALIBRATE_TRY=fifo,shared:64,...: how other models of moto would fare.
    for model in std::env::var("FLEET_CALIBRATE_TRY").unwrap_or_default().split(',').filter(|m| !m.is_empty())
    {
        match model.parse::<MotoModel>() {
            Ok(model) => eprintln!("{model:?}: {}", sim_with(Server::Moto(model)).0),
            Err(e) => eprintln!("FLEET_CALIBRATE_TRY: {e}; skipped"),
        }
    }
    sim_with(server)
}

/// moto's work per call in a real run, as a queue that answers one call at
/// a time would do it: each answer's time since the later of its call's
/// arrival and the answer before it, averaged over the calls moto answered.
fn moto_service(r: &FleetResult) -> Option<Duration> {
    let mut answered: Vec<(Duration, Duration)> =
        r.calls.iter().filter_map(|(_, c)| c.answered.map(|done| (c.at, done))).collect();
    answered.sort_by_key(|&(_, done)| done);
    let mut free = Duration::ZERO;
    let mut work = Duration::ZERO;
    for &(at, done) in &answered {
        work += done.saturating_sub(at.max(free));
        free = done;
    }
    (!answered.is_empty()).then(|| work / answered.len() as u32)
}

/// When each node of a real run first called AWS (its AssumeRole).
fn starts(real: &FleetResult) -> Vec<f64> {
    let mut first = std::collections::HashMap::new();
    for (at, c) in real.calls.iter().filter(|(_, c)| c.api == "AssumeRole") {
        first.entry(c.node.clone()).or_insert(*at);
    }
    (0..real.spec.nodes).map(|i| first.get(&fleet::node_key(i)).copied().unwrap_or(0.0)).collect()
}
/// Simulated runs per case (each with its own jitter).
const RUNS: usize = 5;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The real cases, in FLEET.md's order: this policy's, then the same
/// fleets run by the baseline's and by ecr-login.
fn cases() -> Vec<FleetSpec> {
    let ours = our_cases();
    let mut all = ours.clone();
    match baseline() {
        Some(contender) => {
            for i in [0, 1, 5] {
                all.push(FleetSpec { contender: contender.clone(), ..ours[i].clone() });
            }
        }
        None => eprintln!("no baseline (FLEET_BASELINE_DIR: see make fleet); its cases are left out"),
    }
    if std::path::Path::new("/usr/bin/docker-credential-ecr-login").exists() {
        all.push(FleetSpec { contender: Contender::EcrLogin, ..ours[0].clone() });
    } else {
        eprintln!("no docker-credential-ecr-login (make ecr-login); its case is left out");
    }
    all
}

/// The baseline `make fleet` built (scripts/build-baseline.sh), if any.
fn baseline() -> Option<Contender> {
    let dir = std::path::PathBuf::from(std::env::var_os("FLEET_BASELINE_DIR")?);
    let commit = std::fs::read_to_string(dir.join("commit")).ok()?.trim().to_owned();
    Some(Contender::Baseline { bin_dir: dir.join("bin"), commit })
}

/// This policy's cases: 100 nodes on a small bucket; FLEET_NODES (1,000)
/// at once on AWS's, one registry each; 500 over 30 s and 120 s; 500 whose rejections cost a
/// credit; 500 denied.
fn our_cases() -> Vec<FleetSpec> {
    let nodes = env_or("FLEET_NODES", 1000) as usize;
    let aws = Bucket::ecr_default();
    let sts = Bucket { rate: 100.0, burst: 500.0, ..aws };
    let small = Bucket { rate: 5.0, burst: 20.0, rejection: Rejection::Http400, rejected_costs: false };
    let base = FleetSpec {
        contender: Contender::Ours,
        nodes,
        registries: 1..=3,
        spread: Duration::ZERO,
        ecr: aws,
        sts,
        denied: false,
        limit: Duration::from_secs(400),
    };
    let costly = Bucket { rejected_costs: true, rejection: Rejection::Http429, ..aws };
    let half = FleetSpec { nodes: 500, ..base.clone() };
    vec![
        FleetSpec { nodes: 100, ecr: small, ..base.clone() },
        // The target case: one registry each.
        FleetSpec { registries: 1..=1, ..base.clone() },
        FleetSpec { spread: Duration::from_secs(30), ..half.clone() },
        FleetSpec { spread: Duration::from_secs(120), ..half.clone() },
        FleetSpec { ecr: costly, ..half.clone() },
        FleetSpec { denied: true, limit: Duration::from_secs(env_or("FLEET_DENIED_SECS", 300)), ..half },
    ]
}

/// The simulated-only cases: 1,000 and 10,000 nodes at once on AWS's bucket
/// with one and with three registries each, 100,000, each watched long
/// enough for the bound, and a denied 10,000 for the half hour the issue's
/// target counts; then the one-registry and denied ones by the model of
/// the baseline's policy.
fn sim_cases() -> Vec<FleetSpec> {
    let real = our_cases();
    let at_once = |nodes: usize| {
        let bound = (nodes as f64 - real[1].ecr.burst).max(0.0) / real[1].ecr.rate;
        FleetSpec { nodes, limit: Duration::from_secs_f64(3.0 * bound + 310.0), ..real[1].clone() }
    };
    let three = |spec: FleetSpec| FleetSpec { registries: 3..=3, ..spec };
    let denied = FleetSpec {
        nodes: 10_000,
        denied: true,
        registries: 1..=3,
        limit: Duration::from_secs(1800),
        ..real[1].clone()
    };
    let ours = vec![
        at_once(1_000),
        three(at_once(1_000)),
        at_once(10_000),
        three(at_once(10_000)),
        at_once(100_000),
        denied,
    ];
    let model = [0, 2, 4, 5].map(|i| modelled(ours[i].clone()));
    ours.into_iter().chain(model).collect()
}

/// T50, T90, T99 and T100 to a token, and GetAuthorizationToken calls per node.
fn shape(r: &FleetResult) -> [f64; 5] {
    let t = |x| r.token_quantile(x).unwrap_or(f64::NAN);
    let (a, b) = r.calls_per_node("GetAuthorizationToken");
    [t(0.5), t(0.9), t(0.99), t(1.0), a + b]
}

/// The median of each figure over `runs`, and a table row of min / median / max.
fn summary(runs: &[FleetResult]) -> ([f64; 5], String) {
    let mut median = [0.0; 5];
    let mut cells = Vec::new();
    for (k, m) in median.iter_mut().enumerate() {
        let mut v: Vec<f64> = runs.iter().map(|r| shape(r)[k]).collect();
        v.sort_by(f64::total_cmp);
        *m = v[v.len() / 2];
        cells.push(format!("{:.1} / {:.1} / {:.1}", v[0], v[v.len() / 2], v[v.len() - 1]));
    }
    let r = &runs[0];
    let bound =
        format!("{:.1} / {:.1} / {:.1} / {:.1}", r.bound(0.5), r.bound(0.9), r.bound(0.99), r.bound(1.0));
    (median, format!("| {} | {} | {bound} |", report::case_name(r), cells.join(" | ")))
}

const SIM_HEADER: &str = "| case | T50 (min / median / max, s) | T90 | T99 | T100 | GetAuthorizationToken calls per node | bound T50 / T90 / T99 / T100 (s) |\n|---|---|---|---|---|---|---|";

/// Real against simulated medians: the table row, and whether every figure
/// is within the tolerance (times 10 %, calls per node 5 %).
fn calibration(real: &FleetResult, sim: &[f64; 5]) -> (String, bool) {
    let r = shape(real);
    let names = ["T50", "T90", "T99", "calls per node"];
    let mut within = true;
    let cells: Vec<String> = [0, 1, 2, 4]
        .iter()
        .zip(names)
        .map(|(&k, name)| {
            let err = (sim[k] - r[k]) / r[k] * 100.0;
            within &= err.abs() <= if k == 4 { 5.0 } else { 10.0 };
            format!("{name} {:.1} vs {:.1} ({err:+.0} %)", r[k], sim[k])
        })
        .collect();
    (format!("| {} | {} |", report::case_name(real), cells.join(" | ")), within)
}

fn main() {
    if std::env::var_os("FLEET_SIM_ONLY").is_some() {
        let mut case = our_cases()[env_or("FLEET_CASE", 1) as usize].clone();
        if std::env::var("FLEET_POLICY").is_ok_and(|p| p == "baseline") {
            case = modelled(case);
        }
        let limit = Duration::from_secs(env_or("FLEET_LIMIT_S", case.limit.as_secs()));
        let spread = Duration::from_secs(env_or("FLEET_SPREAD_S", case.spread.as_secs()));
        let nodes = env_or("FLEET_SIM_NODES", case.nodes as u64) as usize;
        let spec = FleetSpec { nodes, limit, spread, ..case };
        let server = if std::env::var_os("FLEET_AWS").is_some() { AWS } else { moto(None) };
        let runs = simulate(&spec, server, 3);
        println!("{}", summary(&runs).1);
        if spec.denied {
            println!("{}", denied_line(&runs[0]));
        }
        return;
    }
    let mut md = String::from(include_str!("intro.md"));
    md.push_str("\n## Real daemons\n\n");
    md.push_str(report::HEADER);
    md.push('\n');
    let mut real = Vec::new();
    let only = std::env::var("FLEET_ONLY").ok().and_then(|v| v.parse::<usize>().ok());
    for (i, spec) in cases().iter().enumerate() {
        if only.is_some_and(|k| k != i) {
            continue;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        // Several motos: one answers a call at a time, slower than a
        // booting fleet's AssumeRoles arrive.
        let motos: Vec<Moto> = (0..env_or("FLEET_MOTOS", 2)).map(|_| Moto::start(dir.path())).collect();
        let r = fleet::run(dir.path(), &motos, spec);
        println!("{}", report::row(&r));
        if std::env::var_os("FLEET_KEEP").is_some() {
            // The nodes' logs and configs, for looking into a run.
            eprintln!("kept {}", dir.keep().display());
        }
        let _ = writeln!(md, "{}", report::row(&r));
        if let Some(path) = std::env::var_os("FLEET_CALLS") {
            // Every call the proxy saw, for looking into a run.
            let _ = std::fs::write(&path, calls_tsv(&r));
        }
        real.push(r);
    }
    if only.is_some() {
        // The one case's calibration, for comparing models of moto.
        for r in real.iter().filter(|r| calibrates(r)) {
            println!("{}", calibrate(r).0);
        }
        return;
    }
    // One plot per case of this policy, the others' runs of it beside it.
    let ours: Vec<&FleetResult> = real.iter().filter(|r| r.spec.contender == Contender::Ours).collect();
    for (i, r) in ours.iter().enumerate() {
        let same = |o: &&FleetResult| o.spec.contender != Contender::Ours && same_fleet(&o.spec, &r.spec);
        let runs: Vec<&FleetResult> = std::iter::once(*r).chain(real.iter().filter(same)).collect();
        let _ = std::fs::write(format!("{ROOT}/docs/fleet-{i}.svg"), report::plot(&runs));
    }
    for r in real.iter().filter(|r| r.spec.denied) {
        let _ = writeln!(md, "\n{}", denied_line(r));
    }

    md.push_str("\n## Calibration: the simulation against the real daemons (medians)\n\n");
    md.push_str("| case | T50 real vs simulated | T90 | T99 | GetAuthorizationToken calls per node |\n|---|---|---|---|---|\n");
    // This policy's simulation, and the baseline's model, each on its own:
    // (runs checked, all within the tolerance).
    let mut checked = [(0, true), (0, true)];
    for r in real.iter().filter(|r| calibrates(r)) {
        let (line, within) = calibrate(r);
        let c = &mut checked[usize::from(r.spec.contender != Contender::Ours)];
        *c = (c.0 + 1, c.1 && within);
        println!("{line}");
        let _ = writeln!(md, "{line}");
    }
    md.push('\n');
    let model = format!("The model of {MODELLED}'s policy");
    for (&(runs, ok), who) in checked.iter().zip(["This policy's simulation", model.as_str()]) {
        let verdict = match (runs, ok) {
            (0, _) => "**not checked**: no real run of it here (FLEET_BASELINE_DIR: see make fleet), so its \
                       simulated fleets below are not to be trusted as predictions.",
            (_, true) => "every figure is within the tolerance (times 10 %, calls per node 5 %).",
            (_, false) => "**not calibrated**: some figure is outside the tolerance (times 10 %, calls per node \
                           5 %), so its simulated fleets below are not to be trusted as predictions; they show \
                           the policy's shape.",
        };
        let _ = writeln!(md, "{who}: {verdict}");
    }

    md.push_str("\n## Simulated fleets\n\n");
    md.push_str(SIM_HEADER);
    md.push('\n');
    let mut denied = Vec::new();
    for spec in sim_cases() {
        let runs = simulate(&spec, AWS, if spec.nodes > 10_000 { 3 } else { RUNS });
        let (_, line) = summary(&runs);
        println!("{line}");
        if spec.denied {
            denied.push(denied_line(&runs[0]));
        } else {
            let _ = writeln!(md, "{line}");
        }
    }
    for line in denied {
        let _ = writeln!(md, "\nSimulated: {line}");
    }
    md.push_str("\n## Plots (real daemons)\n\n");
    for (i, r) in ours.iter().enumerate() {
        let _ = writeln!(md, "![{}](docs/fleet-{i}.svg)\n", report::case_name(r));
    }
    let _ = writeln!(md, "Machine: {}.", testbed::timing::report::machine());
    std::fs::write(format!("{ROOT}/FLEET.md"), md).expect("FLEET.md");
    println!("wrote FLEET.md");
}

/// A run's calls as tab-separated lines: seconds since the start, API,
/// admitted, node, seconds until moto answered (or -).
fn calls_tsv(r: &FleetResult) -> String {
    let mut out = String::from("at\tapi\tadmitted\tnode\tanswered\n");
    for (at, c) in &r.calls {
        let answered = c
            .answered
            .map_or_else(|| "-".to_owned(), |d| format!("{:.3}", d.as_secs_f64() - c.at.as_secs_f64()));
        let _ = writeln!(out, "{at:.3}\t{}\t{}\t{}\t{answered}", c.api, c.admitted, c.node);
    }
    out
}

/// Whether two specs are the same fleet (whoever runs it).
fn same_fleet(a: &FleetSpec, b: &FleetSpec) -> bool {
    (a.nodes, a.spread, a.ecr, a.denied) == (b.nodes, b.spread, b.ecr, b.denied)
}

/// What a denied fleet cost STS.
fn denied_line(r: &FleetResult) -> String {
    let (sts, no) = r.calls_per_node("AssumeRole");
    format!(
        "{}: over {:.0} s, {:.2} AssumeRole calls per node ({sts:.2} admitted, {no:.2} rejected), \
         at most {} by one node; {:.2} calls/s for the whole fleet.",
        report::case_name(r),
        r.wall,
        sts + no,
        r.max_calls_per_node("AssumeRole"),
        (sts + no) * r.spec.nodes as f64 / r.wall.max(1.0)
    )
}
