//! `make soak`: 200,000 gets over mixed registries while STS/ECR faults are
//! switched on and off; reports RSS at start and end and p50/p99 latency, and
//! fails if RSS grows by more than 10%. Bounded: it stops by itself.

use std::time::{Duration, Instant};

use ecr_credd_client::client;
use ecr_credd_client::wire::{Request, RequestBody, ResponseBody};
use testbed::fault_proxy::{Fault, FaultProxy};
use testbed::*;

const TOTAL: usize = 200_000;
const THREADS: usize = 8;
/// Spread the load so tokens refresh (and meet faults) several times.
const DURATION: Duration = Duration::from_secs(45);

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // 40 s tokens, 10 s margin: refresh every ~20 s, 10 s of grace for faults.
    let moto = Moto::start_with(tmp.path(), &[("ECR_TOKEN_TTL", "40")]);
    let imds = Imds::start(tmp.path());
    let proxy = FaultProxy::start(moto.port);
    let mut config = String::from("[tokens]\nsafety_margin = 10\n");
    let mut hosts = Vec::new();
    for i in 1..=5 {
        let account = format!("2109876543{i:02}");
        config += &format!(
            "[[registry]]\nhost = \"127.0.0.{i}:5000\"\nregistry_id = \"{account}\"\nregion = \"us-east-1\"\nrole_arn = \"arn:aws:iam::{account}:role/ecr-pull\"\n"
        );
        hosts.push(format!("127.0.0.{i}:5000"));
    }
    hosts.push(ECR_HOST.to_owned());
    let env = proxy.aws_env(&imds);
    let daemon = Daemon::builder(tmp.path()).config(&config).env(&env).log("warn").start();
    wait_until("tokens", Duration::from_secs(30), || hosts.iter().all(|h| daemon.helper("get", h).0 == 0));
    let pid = daemon.proc.pid();
    let rss_start = rss_kib(pid);
    let start = Instant::now();

    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (socket, hosts) = (daemon.socket.clone(), hosts.clone());
            std::thread::spawn(move || {
                let (mut lat, mut failed) = (Vec::with_capacity(TOTAL / THREADS), 0usize);
                let per = TOTAL / THREADS;
                let began = Instant::now();
                for i in 0..per {
                    let due = DURATION.mul_f64(i as f64 / per as f64);
                    if let Some(wait) = due.checked_sub(began.elapsed()) {
                        std::thread::sleep(wait);
                    }
                    let host = hosts[(i + t) % hosts.len()].clone();
                    let begin = Instant::now();
                    match client::request(&socket, &Request::new(RequestBody::Get { host })).map(|r| r.body) {
                        Ok(ResponseBody::Credentials { .. }) => {}
                        _ => failed += 1,
                    }
                    lat.push(begin.elapsed());
                }
                (lat, failed)
            })
        })
        .collect();
    // Faults on and off while the load runs.
    let cycle = [Fault::Throttle, Fault::None, Fault::Unavailable, Fault::None, Fault::Drop, Fault::None];
    let mut i = 0;
    while !workers.iter().all(|w| w.is_finished()) && start.elapsed() < Duration::from_secs(600) {
        proxy.set(cycle[i % cycle.len()]);
        i += 1;
        std::thread::sleep(Duration::from_secs(2));
    }
    proxy.set(Fault::None);
    let (mut all, mut failed) = (Vec::new(), 0);
    for w in workers {
        let (lat, f) = w.join().expect("worker");
        all.extend(lat);
        failed += f;
    }
    let elapsed = start.elapsed();
    let rss_end = rss_kib(pid);
    all.sort();
    let pct = |p: f64| all[((all.len() - 1) as f64 * p) as usize];
    println!(
        "soak: {} gets in {elapsed:.1?} ({:.0}/s), {failed} not served (no usable token during a fault)",
        all.len(),
        all.len() as f64 / elapsed.as_secs_f64()
    );
    println!("soak: latency p50 {:?}  p99 {:?}  max {:?}", pct(0.5), pct(0.99), all[all.len() - 1]);
    println!(
        "soak: AWS calls AssumeRole {}, GetAuthorizationToken {}",
        proxy.count("AssumeRole"),
        proxy.count("GetAuthorizationToken")
    );
    println!(
        "soak: RSS start {rss_start} KiB, end {rss_end} KiB ({:+.1}%)",
        (rss_end as f64 / rss_start as f64 - 1.0) * 100.0
    );
    assert!(rss_end as f64 <= rss_start as f64 * 1.10, "RSS grew more than 10%");
}
