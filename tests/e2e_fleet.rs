//! 100 real daemons booting at once against a GetAuthorizationToken bucket
//! scaled to them (5/s, burst 20: the bound is 16 s), each with its own key
//! and a client on the kubelet's retry schedule; and the same fleet denied.
//! `make fleet` runs the full-size cases and writes FLEET.md.

use std::time::Duration;

use testbed::fault_proxy::{Bucket, Rejection};
use testbed::fleet::{self, FleetSpec};
use testbed::*;

fn spec(denied: bool) -> FleetSpec {
    let ecr = Bucket { rate: 5.0, burst: 20.0, rejection: Rejection::Http400, rejected_costs: false };
    let sts = Bucket { rate: 50.0, burst: 100.0, ..ecr };
    FleetSpec {
        nodes: 100,
        max_registries: 3,
        spread: Duration::ZERO,
        ecr,
        sts,
        denied,
        limit: Duration::from_secs(if denied { 60 } else { 120 }),
    }
}

#[test]
fn a_hundred_nodes_booting_at_once_get_tokens_near_the_buckets_bound() {
    require!(Moto);
    let tmp = tempfile::tempdir().unwrap();
    let moto = Moto::start(tmp.path());
    let r = fleet::run(tmp.path(), &moto, &spec(false));
    let bound = r.bound(1.0);
    let t = |x| r.token_quantile(x).unwrap_or(f64::INFINITY);
    let c = |x| r.client_quantile(x).unwrap_or(f64::INFINITY);
    let (gat, gat_rejected) = r.calls_per_node("GetAuthorizationToken");
    let (sts, sts_rejected) = r.calls_per_node("AssumeRole");
    eprintln!(
        "100 nodes at once, bucket 5/s burst 20 (bound {bound:.1}s): token T50 {:.1} T90 {:.1} T99 {:.1} T100 {:.1}; \
         client T50 {:.1} T100 {:.1}; per node: GetAuthorizationToken {gat:.2} admitted {gat_rejected:.2} rejected, \
         AssumeRole {sts:.2} admitted {sts_rejected:.2} rejected; most attempts by one node {}; PSS median {} KiB",
        t(0.5),
        t(0.9),
        t(0.99),
        t(1.0),
        c(0.5),
        c(1.0),
        r.max_calls_per_node("GetAuthorizationToken"),
        {
            let mut p: Vec<u64> = r.nodes.iter().map(|n| n.pss_kib).collect();
            p.sort();
            p[p.len() / 2]
        }
    );
    assert!(t(1.0).is_finite(), "every node got a token");
    assert!(c(1.0).is_finite(), "every client got one");
}

#[test]
fn a_denied_fleet_calls_sts_once_a_node_in_its_first_minute() {
    require!(Moto);
    let tmp = tempfile::tempdir().unwrap();
    let moto = Moto::start(tmp.path());
    let r = fleet::run(tmp.path(), &moto, &spec(true));
    let (sts, rejected) = r.calls_per_node("AssumeRole");
    eprintln!(
        "100 denied nodes over {:.0}s: AssumeRole {sts:.2} admitted + {rejected:.2} rejected per node; at most {} by one node",
        r.wall,
        r.max_calls_per_node("AssumeRole")
    );
    assert!(r.nodes.iter().all(|n| n.token.is_none()));
}
