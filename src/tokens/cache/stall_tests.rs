//! A source that panics or never answers: fetches still end, back off and
//! say why, and a refresher that truly stops progressing is reported.

use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::tokens::{FetchError, FetchedToken, SystemClock};
use std::time::SystemTime;

const HOST: &str = "127.0.0.1:5000";

#[derive(Clone, Copy)]
enum Misbehaviour {
    Panic,
    Hang,
    /// Hangs for HOST; a token for any other host.
    HangOne,
}

struct BadSource {
    how: Misbehaviour,
    calls: Arc<AtomicU32>,
}

impl TokenSource for BadSource {
    async fn fetch(&self, registry: &RegistryConfig) -> Result<FetchedToken, FetchError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match self.how {
            Misbehaviour::Panic => panic!("the fake source broke"),
            Misbehaviour::HangOne if registry.host != HOST => Ok(FetchedToken {
                username: "AWS".into(),
                secret: ecr_credd_client::secret::Secret::new("pw".into()),
                expires_at: SystemTime::now() + Duration::from_secs(12 * 3600),
            }),
            Misbehaviour::Hang | Misbehaviour::HangOne => std::future::pending().await,
        }
    }

    fn waiting_on(&self, _host: &str) -> Option<String> {
        matches!(self.how, Misbehaviour::Hang | Misbehaviour::HangOne)
            .then(|| "the fake's stalled step".to_owned())
    }
}

fn cache(how: Misbehaviour, policy: RefreshPolicy) -> (TokenCache<BadSource>, Arc<AtomicU32>) {
    let registry = |host: &str| {
        RegistryConfig::unlisted("210987654321.dkr.ecr.us-east-1.amazonaws.com")
            .map(|r| RegistryConfig { host: host.into(), ..r })
            .unwrap()
    };
    let mut registries = vec![registry(HOST)];
    if matches!(how, Misbehaviour::HangOne) {
        registries.push(registry("127.0.0.1:5001"));
    }
    let calls = Arc::new(AtomicU32::new(0));
    let source = BadSource { how, calls: calls.clone() };
    let cache = TokenCache::new(&registries, false, source, Arc::new(SystemClock), policy, Arc::default());
    cache.start();
    (cache, calls)
}

#[tokio::test(start_paused = true)]
async fn a_panicking_fetch_is_a_failure_that_backs_off() {
    let (cache, calls) = cache(Misbehaviour::Panic, RefreshPolicy::default().without_startup_spread());
    // Within the shortest first backoff (a quarter second) there is no second
    // try; before the fix the refresher retried at once, thousands of times.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let err = cache.get(HOST).await.unwrap_err().to_string();
    assert!(err.contains("internal error while fetching") && err.contains("the fake source broke"), "{err}");
    // Backoff grows, to 12 s while a client waits (the get above): some
    // fifty tries in 5 minutes (a mean wait of about 6 s), not one per
    // millisecond.
    tokio::time::sleep(Duration::from_secs(300)).await;
    let n = calls.load(Ordering::SeqCst);
    assert!((20..=80).contains(&n), "{n} tries in 5 minutes");
    assert!(cache.stalled().is_empty(), "failing is not stalling: {:?}", cache.stalled());
}

#[tokio::test(start_paused = true)]
async fn a_hung_fetch_ends_at_its_deadline_and_a_get_says_what_it_waits_on() {
    let (cache, calls) = cache(Misbehaviour::Hang, RefreshPolicy::default().without_startup_spread());
    let err = cache.get(HOST).await.unwrap_err().to_string();
    assert!(err.contains("did not finish within 12s; still waiting on the fake's stalled step"), "{err}");
    // At 60.1 s: the fetch was stopped at 60 s; the retry comes 0.25 s or more later.
    tokio::time::sleep(Duration::from_millis(48_100)).await;
    let err = cache.get(HOST).await.unwrap_err().to_string();
    assert!(
        err.contains("the fetch did not finish within 60s; it was waiting on the fake's stalled step"),
        "{err}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the retry waits for its backoff");
    assert!(cache.stalled().is_empty(), "a fetch that times out is progress: {:?}", cache.stalled());
}

#[tokio::test(start_paused = true)]
async fn a_fetch_running_past_stall_after_is_reported() {
    let policy = RefreshPolicy {
        fetch_deadline: Duration::from_secs(86_400),
        ..RefreshPolicy::default().without_startup_spread()
    };
    let (cache, _) = cache(Misbehaviour::Hang, policy);
    tokio::time::sleep(Duration::from_secs(89)).await;
    assert!(cache.stalled().is_empty(), "{:?}", cache.stalled());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(cache.stalled(), vec![format!("{HOST}: a fetch has run for 91s")]);
}

#[tokio::test(start_paused = true)]
async fn a_source_that_hangs_with_no_token_held_is_a_stall() {
    let (cache, _) = cache(Misbehaviour::Hang, RefreshPolicy::default().without_startup_spread());
    // Each fetch gives up at 60 s and backs off: not a stall by itself.
    tokio::time::sleep(Duration::from_secs(150)).await;
    assert!(cache.stalled().is_empty(), "{:?}", cache.stalled());
    // Two minutes of no answer and nothing held: a restart loses nothing.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let stalled = cache.stalled();
    assert!(
        stalled
            .iter()
            .any(|s| s.contains("has given no answer for") && s.contains("no registry holds a token")),
        "{stalled:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hang_while_another_registry_holds_a_token_is_not_a_stall() {
    let (cache, _) = cache(Misbehaviour::HangOne, RefreshPolicy::default().without_startup_spread());
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(cache.get("127.0.0.1:5001").await.is_ok());
    assert!(cache.stalled().is_empty(), "a restart would drop the token held: {:?}", cache.stalled());
}
