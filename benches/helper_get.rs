//! `cargo bench --bench helper_get` (or `make bench`): the helper's `get` for
//! a cached token, whole process from exec to exit, and the socket alone
//! under concurrency. The daemon runs in-process with a static token source,
//! so only ecr-credd's own path is measured.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ecr_credd::config::{self, RegistryConfig};
use ecr_credd::daemon::{self, Listeners};
use ecr_credd::tokens::{FetchError, FetchedToken, TokenSource};
use ecr_credd_client::secret::Secret;
use ecr_credd_client::wire::{Request, RequestBody};

use testbed::timing::{percentile, socket_load, time_exec};

struct Static;

impl TokenSource for Static {
    async fn fetch(&self, _: &RegistryConfig) -> Result<FetchedToken, FetchError> {
        Ok(FetchedToken {
            username: "AWS".into(),
            secret: Secret::from("x".repeat(1500).as_str()),
            expires_at: SystemTime::now() + Duration::from_secs(12 * 3600),
        })
    }
}

/// Exec `program get` with the server URL on stdin for each program in turn,
/// 500 timed rounds after 20 warm-ups, interleaved so that drift in the
/// machine's speed hits every program alike. Sorted samples per program.
fn exec_side_by_side(programs: &[(String, String)], socket: &std::path::Path) -> Vec<Vec<Duration>> {
    let mut samples = vec![Vec::new(); programs.len()];
    for round in 0..520 {
        for (i, (_, program)) in programs.iter().enumerate() {
            let mut cmd = Command::new(program);
            cmd.arg("get").env("ECR_CREDD_SOCKET", socket);
            let t = time_exec(&mut cmd, b"127.0.0.1:5000\n");
            if round >= 20 {
                samples[i].push(t);
            }
        }
    }
    for s in &mut samples {
        s.sort();
    }
    samples
}

/// The programs to time: `/bin/true`, the helper cargo built, and the shipped
/// helper when `SHIPPED_HELPER` names it (`make bench` unpacks it from dist/).
fn programs() -> Vec<(String, String)> {
    let mut list = vec![
        ("/bin/true (exec floor)".to_owned(), "/bin/true".to_owned()),
        ("helper get (cargo bench build)".to_owned(), testbed::program("docker-credential-ecr-credd")),
    ];
    if let Some(shipped) = std::env::var_os("SHIPPED_HELPER") {
        list.push(("helper get (shipped, static)".to_owned(), shipped.to_string_lossy().into_owned()));
    }
    list
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("bench.sock");
    let text = format!(
        "[server]\nsocket = \"{}\"\n[[registry]]\nhost = \"127.0.0.1:5000\"\nregistry_id = \"210987654321\"\nregion = \"us-east-1\"\n",
        socket.display()
    );
    let config = config::parse(&text, dir.path()).expect("config");
    let rt = Arc::new(tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon_rt = rt.clone();
    let daemon = std::thread::spawn(move || {
        daemon_rt.block_on(async {
            let listeners = Listeners::bind(&config).await.expect("bind");
            let (_reload_tx, reloads) = tokio::sync::mpsc::unbounded_channel();
            daemon::run(config, listeners, Static, Arc::default(), reloads, async {
                let _ = stop_rx.await;
            })
            .await;
        })
    });
    let get = Request::new(RequestBody::Get { host: "127.0.0.1:5000".into() });
    while ecr_credd_client::client::request(&socket, &get).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }

    let programs = programs();
    let samples = exec_side_by_side(&programs, &socket);
    let floor = percentile(&samples[0], 0.5);
    for ((label, _), times) in programs.iter().zip(&samples) {
        let median = percentile(times, 0.5);
        println!(
            "{label}, exec to exit, {} runs: median {median:?}  p99 {:?}  {:.2}x /bin/true",
            times.len(),
            percentile(times, 0.99),
            median.as_secs_f64() / floor.as_secs_f64()
        );
    }

    for clients in [1usize, 8, 64] {
        let (rate, all) = socket_load(&socket, &get, clients, 2);
        println!(
            "socket get, {clients:>2} clients (connection per request): {rate:>7.0}/s  p50 {:?}  p99 {:?}",
            percentile(&all, 0.5),
            percentile(&all, 0.99)
        );
    }
    let _ = stop_tx.send(());
    let _ = daemon.join();
}
