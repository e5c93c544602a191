//! `daemon::run` driven in process, exactly as `ecr-credd run` calls it, with
//! a token source that needs no AWS: it serves, takes a reload from its
//! channel, and returns when its shutdown future completes, removing the
//! socket it made.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ecr_credd::config::{self, Config, RegistryConfig};
use ecr_credd::daemon::{self, Listeners};
use ecr_credd::tokens::{FetchError, FetchedToken, TokenSource};
use ecr_credd_client::client::request;
use ecr_credd_client::secret::Secret;
use ecr_credd_client::wire::{Request, RequestBody, Response, ResponseBody};

/// A token per registry, named after its host; counts fetches.
#[derive(Clone, Default)]
struct Named(Arc<AtomicU32>);

impl TokenSource for Named {
    async fn fetch(&self, registry: &RegistryConfig) -> Result<FetchedToken, FetchError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(FetchedToken {
            username: "AWS".into(),
            secret: Secret::from(format!("token-for-{}", registry.host).as_str()),
            expires_at: SystemTime::now() + Duration::from_secs(12 * 3600),
        })
    }
}

fn config(dir: &std::path::Path, hosts: &[&str]) -> Config {
    let tables: String = hosts
        .iter()
        .map(|h| {
            format!("[[registry]]\nhost = \"{h}\"\nregistry_id = \"210987654321\"\nregion = \"us-east-1\"\n")
        })
        .collect();
    let text = format!(
        "serve_unlisted_ecr = false\n[server]\nsocket = \"{}\"\n{tables}",
        dir.join("d.sock").display()
    );
    config::parse(&text, &dir.join("config.toml")).unwrap()
}

/// One request from a blocking client, off the runtime's threads.
async fn ask(socket: &std::path::Path, body: RequestBody) -> Response {
    let socket = socket.to_owned();
    tokio::task::spawn_blocking(move || request(&socket, &Request::new(body)).unwrap()).await.unwrap()
}

fn secret(response: &Response) -> Option<&str> {
    match &response.body {
        ResponseBody::Credentials { secret, .. } => Some(secret.expose()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_reloads_and_stops_when_told() {
    let dir = tempfile::tempdir().unwrap();
    let first = config(dir.path(), &["a.example"]);
    let socket = first.socket.clone();
    let listeners = Listeners::bind(&first).await.unwrap();
    let (reload, reloads) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let source = Named::default();
    let running =
        tokio::spawn(daemon::run(first, listeners, source.clone(), Arc::default(), reloads, async {
            let _ = stopped.await;
        }));

    let get = |host: &str| RequestBody::Get { host: host.into() };
    assert_eq!(secret(&ask(&socket, get("https://a.example")).await), Some("token-for-a.example"));
    let unknown = ask(&socket, get("b.example")).await;
    assert!(matches!(unknown.body, ResponseBody::Error { .. }), "{unknown:?}");

    reload.send(config(dir.path(), &["a.example", "b.example"])).unwrap();
    let mut served = None;
    for _ in 0..100 {
        served = secret(&ask(&socket, get("b.example")).await).map(str::to_owned);
        if served.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(served.as_deref(), Some("token-for-b.example"), "the reload added b.example");
    let hosts = ask(&socket, RequestBody::List).await;
    assert_eq!(hosts.body, ResponseBody::Hosts { hosts: vec!["a.example".into(), "b.example".into()] });
    assert_eq!(source.0.load(Ordering::SeqCst), 2, "a.example kept its token across the reload");

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("run returns after shutdown")
        .unwrap();
    assert!(!socket.exists(), "the socket it made is removed");
}
