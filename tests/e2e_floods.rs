//! Local users who misbehave: one allowed user's flood of connections that
//! pipeline requests and never read cannot hold every socket slot, and root
//! is served at its normal latency throughout.

use std::path::Path;
use std::time::{Duration, Instant};

use ecr_credd_client::client;
use ecr_credd_client::wire::{Request, RequestBody, ResponseBody};
use testbed::*;

fn timed_get(socket: &Path) -> Duration {
    let start = Instant::now();
    let r = client::request(socket, &Request::new(RequestBody::Get { host: ALIAS.into() })).unwrap();
    assert!(matches!(r.body, ResponseBody::Credentials { .. }), "{r:?}");
    start.elapsed()
}

fn p99_and_max(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (samples[samples.len() * 99 / 100 - 1], samples[samples.len() - 1])
}

#[test]
fn one_users_unread_pipelines_leave_root_served() {
    require!(Moto, Root);
    let tmp = tempfile::tempdir().unwrap();
    open_to_all(tmp.path());
    let (moto, imds) = (Moto::start(tmp.path()), Imds::start(tmp.path()));
    let dir = open_to_all(&tmp.path().join("d"));
    let config = format!("allowed_uids = [65534]\n{}", registry_toml(ALIAS, Some(ROLE)));
    let daemon = Daemon::builder(&dir).config(&config).env(&Daemon::aws_env(&moto, &imds)).start();
    wait_until("a token", Duration::from_secs(20), || daemon.helper("get", ALIAS).0 == 0);
    let (normal, _) = p99_and_max((0..100).map(|_| timed_get(&daemon.socket)).collect());

    // 520 connections from nobody, each with 600 status requests it never reads.
    let script = format!(
        "ulimit -n 4096 && exec setpriv --reuid=65534 --regid=65534 --clear-groups {} {ROOT}/testbed/flood.py socket {} 520 10 600",
        python(),
        daemon.socket.display()
    );
    let mut cmd = clean_command("sh", tmp.path());
    cmd.args(["-c", &script]);
    let flood = Proc::spawn("flood", &mut cmd);
    wait_until("the flood", Duration::from_secs(15), || flood.output().contains("flooding"));
    // At once: served within a second while the daemon still works through
    // the flood's requests (before the fix: only once the flood ended).
    let first = timed_get(&daemon.socket);
    assert!(first < Duration::from_secs(1), "root's first get during the flood took {first:?}");
    // Then, with the flooder held to its share of slots, at the normal latency.
    let fds = || std::fs::read_dir(format!("/proc/{}/fd", daemon.proc.pid())).unwrap().count();
    wait_until("the refused connections closed", Duration::from_secs(5), || fds() < 64 + 60);
    let fds = fds();
    let (during, slowest) = p99_and_max((0..200).map(|_| timed_get(&daemon.socket)).collect());
    assert!(!flood.output().contains("done"), "the flood ended before the gets did");
    eprintln!(
        "{}; daemon fds {fds}; root's get p99 {normal:?} before; first {first:?}, then p99 {during:?} (slowest {slowest:?})",
        flood.output().trim()
    );
    let bound = Duration::from_millis(100).max(normal * 20);
    assert!(slowest < bound, "root waited {slowest:?} during the flood (p99 before: {normal:?})");
    // The flooder was told why.
    let (code, out) = helper_as(tmp.path(), &daemon.socket, 65534, 65534, ALIAS);
    eprintln!("nobody during the flood: {code} {}", out.trim());
    wait_until("the flood to end", Duration::from_secs(30), || flood.output().contains("done"));
    assert_eq!(helper_as(tmp.path(), &daemon.socket, 65534, 65534, ALIAS).0, 0, "nobody is served after");
}

#[test]
fn one_connection_gets_at_most_64_answers() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::builder(tmp.path()).config(&registry_toml(ALIAS, None)).start();
    let mut conn = std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    conn.write_all(&b"{\"v\":1,\"op\":\"list\"}\n".repeat(100)).unwrap();
    let mut answers = String::new();
    conn.read_to_string(&mut answers).unwrap();
    assert_eq!(answers.lines().count(), 64, "then the daemon closes the connection");
}
