//! `cargo bench --bench helper_get` (or `make bench`): the helper's `get` for
//! a cached token, whole process from exec to exit, and the socket alone
//! under concurrency. The daemon runs in-process with a static token source,
//! so only ecr-credd's own path is measured.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ecr_credd::config::{self, RegistryConfig};
use ecr_credd::daemon::{self, Listeners};
use ecr_credd::secret::Secret;
use ecr_credd::token_source::{FetchError, FetchedToken, TokenSource};
use ecr_credd::wire::{Request, RequestBody};

use common::{exec_samples, percentile, socket_load};

struct Static;

impl TokenSource for Static {
    async fn fetch(&self, _: &RegistryConfig) -> Result<FetchedToken, FetchError> {
        Ok(FetchedToken {
            username: "AWS".into(),
            password: Secret::from("x".repeat(1500).as_str()),
            expires_at: SystemTime::now() + Duration::from_secs(12 * 3600),
        })
    }
}

/// Exec `program get` with the server URL on stdin, 500 timed runs after 20 warm-ups.
fn exec_bench(label: &str, program: &str, socket: &std::path::Path) {
    let times = exec_samples(
        || {
            let mut cmd = Command::new(program);
            cmd.arg("get").env("ECR_CREDD_SOCKET", socket);
            cmd
        },
        b"127.0.0.1:5000\n",
        20,
        500,
    );
    println!(
        "{label}, exec to exit, {} runs: median {:?}  p99 {:?}",
        times.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
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
    while ecr_credd::client::request(&socket, &get).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }

    let helper = env!("CARGO_BIN_EXE_docker-credential-ecr-credd");
    for (label, program) in [("/bin/true (exec floor)", "/bin/true"), ("helper get", helper)] {
        exec_bench(label, program, &socket);
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
