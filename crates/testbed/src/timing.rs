//! Timing helpers for the benches: exec and socket latencies, percentiles, and the report.

pub mod report;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ecr_credd_client::wire::Request;

/// The `p` quantile (0..=1) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// One exec, from spawn to exit, with `stdin` written; panics unless it succeeds.
pub fn time_exec(cmd: &mut Command, stdin: &[u8]) -> Duration {
    let start = Instant::now();
    let mut child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    // /bin/true may exit before reading; a broken pipe is fine there.
    let _ = child.stdin.take().expect("stdin").write_all(stdin);
    let out = child.wait_with_output().expect("wait");
    let elapsed = start.elapsed();
    assert!(out.status.success(), "{:?} failed: {}", cmd, String::from_utf8_lossy(&out.stdout));
    elapsed
}

/// `runs` timed execs after `warm` untimed ones, sorted.
pub fn exec_samples(
    mut make: impl FnMut() -> Command,
    stdin: &[u8],
    warm: usize,
    runs: usize,
) -> Vec<Duration> {
    for _ in 0..warm {
        time_exec(&mut make(), stdin);
    }
    let mut times: Vec<Duration> = (0..runs).map(|_| time_exec(&mut make(), stdin)).collect();
    times.sort();
    times
}

/// Socket gets from `clients` threads for `secs`, a connection per request:
/// (gets per second, sorted latencies).
pub fn socket_load(socket: &Path, get: &Request, clients: usize, secs: u64) -> (f64, Vec<Duration>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (socket, get) = (socket.to_owned(), get.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let start = Instant::now();
                    ecr_credd_client::client::request(&socket, &get).expect("get");
                    lat.push(start.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all: Vec<Duration> = threads.into_iter().flat_map(|t| t.join().expect("join")).collect();
    all.sort();
    (all.len() as f64 / secs as f64, all)
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}
