//! What a refusal costs: a denial waits minutes and says when, throttled
//! nodes do not retry together, and first fetches spread over the start-up
//! window unless a client asks.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use tokio::time::Instant;

use super::tests::{registry, settle, Gauge, ManualClock, SlowSource, HOST, HOUR};
use super::*;
use crate::tokens::{FetchError, FetchedToken, Refusal, SystemClock};

/// A fetch result the test sets: a token, or a refusal of its kind.
struct Scripted {
    calls: Arc<AtomicU32>,
    refusal: Arc<Mutex<Option<Refusal>>>,
    clock: Arc<ManualClock>,
}

impl TokenSource for Scripted {
    async fn fetch(&self, _registry: &RegistryConfig) -> Result<FetchedToken, FetchError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match *lock(&self.refusal) {
            Some(refusal) => Err(FetchError::AssumeRole {
                role_arn: "arn:aws:iam::210987654321:role/ecr-pull".into(),
                refusal,
                reason: "AccessDenied".into(),
            }),
            None => Ok(FetchedToken {
                username: "AWS".into(),
                secret: Secret::new("pw".into()),
                expires_at: self.clock.true_wall() + 12 * HOUR,
            }),
        }
    }
}

fn scripted(refusal: Option<Refusal>) -> (TokenCache<Scripted>, Arc<AtomicU32>, Arc<Mutex<Option<Refusal>>>) {
    let clock = ManualClock::new();
    let (calls, script) = (Arc::new(AtomicU32::new(0)), Arc::new(Mutex::new(refusal)));
    let source = Scripted { calls: calls.clone(), refusal: script.clone(), clock: clock.clone() };
    let cache = TokenCache::new(
        &[registry(HOST)],
        false,
        source,
        clock,
        RefreshPolicy::default().without_startup_spread(),
        Arc::default(),
    );
    cache.start();
    (cache, calls, script)
}

#[tokio::test(start_paused = true)]
async fn a_denial_waits_minutes_says_when_and_a_reload_retries_at_once() {
    let (cache, calls, script) = scripted(Some(Refusal::Denied));
    settle().await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Every get has the denial at once, with when the next try is.
    let asked = Instant::now();
    let err = cache.get(HOST).await.unwrap_err().to_string();
    assert_eq!(asked.elapsed(), Duration::ZERO, "a denial is not held like throttling");
    assert!(
        ["2m", "3m", "4m0"]
            .iter()
            .any(|m| err.contains(&format!("role/ecr-pull denied: AccessDenied; next try in {m}"))),
        "{err}"
    );
    assert!(err.contains("or at once after: systemctl reload ecr-credd"), "{err}");
    // Half an hour of asking every 10 s costs at most five calls.
    for _ in 0..180 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(cache.get(HOST).await.is_err());
    }
    let n = calls.load(Ordering::SeqCst);
    assert!((4..=5).contains(&n), "{n} calls in 30 minutes of denial");
    // IAM fixed, the config reloaded: the next try is now.
    *lock(&script) = None;
    assert_eq!(cache.reconfigure(&[registry(HOST)], false).kept, 1);
    settle().await;
    assert_eq!(calls.load(Ordering::SeqCst), n + 1);
    assert!(cache.get(HOST).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn throttled_retries_do_not_move_in_lockstep() {
    // Many caches (nodes) throttled at the same instant retry at scattered times.
    let mut firsts = Vec::new();
    for _ in 0..50 {
        let (cache, calls, _) = scripted(Some(Refusal::Throttled));
        settle().await;
        let start = Instant::now();
        while calls.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        firsts.push(start.elapsed());
        drop(cache);
    }
    firsts.sort();
    let spread = firsts[firsts.len() - 1] - firsts[0];
    assert!(spread > Duration::from_millis(800), "first retries within {spread:?} of each other");
}

#[tokio::test(start_paused = true)]
async fn first_fetches_spread_over_the_window_unless_a_client_asks() {
    let gauge = Arc::new(Gauge { now: AtomicU32::new(0), max: AtomicU32::new(0) });
    let registries: Vec<_> = (0..100).map(|i| registry(&format!("registry-{i}.internal"))).collect();
    let policy = RefreshPolicy::default();
    let window = policy.startup_spread;
    let cache =
        TokenCache::new(&registries, false, SlowSource(gauge), Arc::new(SystemClock), policy, Arc::default());
    cache.start();
    // Asked for at once: fetched at once (200 ms), not at its spread time.
    let start = Instant::now();
    assert!(cache.get("registry-7.internal").await.is_ok());
    assert!(start.elapsed() < Duration::from_millis(300), "{:?}", start.elapsed());
    // The rest arrive over the window: about a fifth in each fifth of it.
    tokio::time::sleep(window / 5).await;
    let early = cache.status().iter().filter(|s| s.ready).count();
    assert!((5..=45).contains(&early), "{early} of 100 fetched in the first fifth of the window");
    tokio::time::sleep(window).await;
    assert!(cache.ready(), "all fetched once the window has passed");
}
