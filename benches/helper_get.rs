//! `cargo bench --bench helper_get` (or `make bench`): the helper's `get` for
//! a cached token, whole process from exec to exit, and the socket alone
//! under concurrency. The daemon runs in-process with a static token source,
//! so only ecr-credd's own path is measured.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ecr_credd::config::{self, RegistryConfig};
use ecr_credd::daemon::{self, Listeners};
use ecr_credd::secret::Secret;
use ecr_credd::token_source::{FetchError, FetchedToken, TokenSource};
use ecr_credd::wire::{Request, RequestBody};

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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Exec `program arg` with the server URL on stdin, 500 timed runs after 20 warm-ups.
fn exec_bench(label: &str, program: &str, arg: &str, socket: &std::path::Path) {
    let mut times = Vec::new();
    for i in 0..520 {
        let start = Instant::now();
        let mut child = Command::new(program)
            .arg(arg)
            .env("ECR_CREDD_SOCKET", socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        // /bin/true may exit before reading; a broken pipe is fine there.
        let _ = child.stdin.take().expect("stdin").write_all(b"127.0.0.1:5000\n");
        let out = child.wait_with_output().expect("wait");
        let elapsed = start.elapsed();
        assert!(out.status.success());
        if i >= 20 {
            times.push(elapsed);
        }
    }
    times.sort();
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
    for (label, program, arg) in
        [("/bin/true (exec floor)", "/bin/true", "get"), ("helper get", helper, "get")]
    {
        exec_bench(label, program, arg, &socket);
    }

    for clients in [1usize, 8, 64] {
        let deadline = Instant::now() + Duration::from_secs(2);
        let threads: Vec<_> = (0..clients)
            .map(|_| {
                let socket = socket.clone();
                let get = get.clone();
                std::thread::spawn(move || {
                    let mut lat = Vec::new();
                    while Instant::now() < deadline {
                        let start = Instant::now();
                        ecr_credd::client::request(&socket, &get).expect("get");
                        lat.push(start.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut all: Vec<Duration> = threads.into_iter().flat_map(|t| t.join().expect("join")).collect();
        all.sort();
        println!(
            "socket get, {clients:>2} clients (connection per request): {:>7.0}/s  p50 {:?}  p99 {:?}",
            all.len() as f64 / 2.0,
            percentile(&all, 0.5),
            percentile(&all, 0.99)
        );
    }
    let _ = stop_tx.send(());
    let _ = daemon.join();
}
