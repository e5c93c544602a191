//! `make fleet` (`cargo bench --bench fleet`): real daemons booting against
//! one account's quotas, behind the fault proxy's token buckets; writes
//! FLEET.md and its plots under docs/. FLEET_NODES (default 500) sets the
//! large cases' size, FLEET_DENIED_SECS (default 300) how long the denied
//! fleet is watched.

use std::fmt::Write as _;
use std::time::Duration;

use testbed::fault_proxy::{Bucket, Rejection};
use testbed::fleet::{self, report, FleetResult, FleetSpec};
use testbed::{Moto, ROOT};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn cases() -> Vec<FleetSpec> {
    let nodes = env_or("FLEET_NODES", 500) as usize;
    let aws = Bucket::ecr_default();
    let sts = Bucket { rate: 100.0, burst: 500.0, ..aws };
    let small = Bucket { rate: 5.0, burst: 20.0, rejection: Rejection::Http400, rejected_costs: false };
    let base = FleetSpec {
        nodes,
        max_registries: 3,
        spread: Duration::ZERO,
        ecr: aws,
        sts,
        denied: false,
        limit: Duration::from_secs(400),
    };
    vec![
        FleetSpec { nodes: 100, ecr: small, ..base.clone() },
        base.clone(),
        FleetSpec { spread: Duration::from_secs(30), ..base.clone() },
        FleetSpec { spread: Duration::from_secs(120), ..base.clone() },
        FleetSpec {
            ecr: Bucket { rejected_costs: true, rejection: Rejection::Http429, ..aws },
            ..base.clone()
        },
        FleetSpec { denied: true, limit: Duration::from_secs(env_or("FLEET_DENIED_SECS", 300)), ..base },
    ]
}

fn main() {
    let mut results: Vec<FleetResult> = Vec::new();
    for (i, spec) in cases().iter().enumerate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let moto = Moto::start(dir.path());
        let r = fleet::run(dir.path(), &moto, spec);
        println!("{}", report::row(&r));
        let svg = report::plot(&r);
        let _ = std::fs::write(format!("{ROOT}/docs/fleet-{i}.svg"), svg);
        results.push(r);
    }
    let mut md = String::from(
        "# ecr-credd at fleet scale\n\nWritten by `make fleet` (`cargo bench --bench fleet`): real `ecr-credd run` \
         processes, each with an access key of its own (`credentials = \"env\"`) and 1 to 3 registries on one role, \
         booting against moto behind a token bucket per API (the fault proxy's; every call is logged with its signing \
         key and traced to its node). Each node has a client that runs the real helper on the kubelet's retry \
         schedule (0, 10, 30, 70, 150, 310 s). Times count from the fleet's start.\n\n\
         The bound on T_x is max(x·S, (x·N·d − burst)⁺ / rate), with S the arrival spread, N the nodes and d = 1 \
         GetAuthorizationToken a node needs from the bucket.\n\n",
    );
    md.push_str(report::HEADER);
    md.push('\n');
    for r in &results {
        md.push_str(&report::row(r));
        md.push('\n');
    }
    for r in results.iter().filter(|r| r.spec.denied) {
        let (sts, no) = r.calls_per_node("AssumeRole");
        let _ = writeln!(
            md,
            "\nA denied fleet of {} over {:.0} s: {:.2} AssumeRole calls per node ({sts:.2} admitted, {no:.2} rejected), \
             at most {} by one node; {:.2} calls/s for the fleet.",
            r.spec.nodes,
            r.wall,
            sts + no,
            r.max_calls_per_node("AssumeRole"),
            (sts + no) * r.spec.nodes as f64 / r.wall.max(1.0)
        );
    }
    md.push_str("\n## Plots\n\n");
    for (i, r) in results.iter().enumerate() {
        let _ = writeln!(md, "![{}](docs/fleet-{i}.svg)\n", report::case_name(r));
    }
    let _ = writeln!(md, "Machine: {}.", testbed::timing::report::machine());
    std::fs::write(format!("{ROOT}/FLEET.md"), md).expect("FLEET.md");
    println!("wrote FLEET.md");
}
