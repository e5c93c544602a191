//! Throttling's backoff is long by design, but never outlasts the token
//! still being served: the retry comes before the token stops being served;
//! and a `get` waits for a retry due soon rather than fail its client.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio::time::Instant;

use super::tests::{registry, settle, throttled, token, ManualClock};
use super::*;
use crate::tokens::{FetchError, FetchedToken};

const HOST: &str = "127.0.0.1:5000";

/// Gives a 20-minute token on the first call, then throttles every call.
struct FirstThenThrottled {
    clock: Arc<ManualClock>,
    calls: Arc<AtomicU32>,
}

impl TokenSource for FirstThenThrottled {
    async fn fetch(&self, _registry: &RegistryConfig) -> Result<FetchedToken, FetchError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) > 0 {
            return Err(throttled());
        }
        Ok(token("pw", self.clock.true_wall() + Duration::from_secs(20 * 60)))
    }
}

#[tokio::test(start_paused = true)]
async fn a_throttled_refresh_is_retried_before_the_served_token_goes_stale() {
    let clock = ManualClock::new();
    let calls = Arc::new(AtomicU32::new(0));
    let source = FirstThenThrottled { clock: clock.clone(), calls: calls.clone() };
    // A throttled backoff of at least 15 minutes: without the rule, the retry
    // after the refresh at 9 to 11 minutes would come after 24 minutes.
    let policy = RefreshPolicy {
        throttled_backoff_base: Duration::from_secs(3600),
        backoff_cap: Duration::from_secs(3600),
        ..RefreshPolicy::default().without_startup_spread()
    };
    let cache = TokenCache::new(&[registry(HOST)], false, source, clock, policy, Arc::default());
    cache.start();
    settle().await;
    assert!(cache.get(HOST).await.is_ok());
    tokio::time::sleep(Duration::from_secs(12 * 60)).await;
    settle().await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the refresh was tried, and throttled");
    assert!(cache.get(HOST).await.is_ok(), "the token is still served");
    // The token stops being served at 15 minutes (its 20 less the 5-minute
    // margin): the retry comes then, not a quarter hour after the refresh.
    tokio::time::sleep(Duration::from_secs(3 * 60 + 1)).await;
    settle().await;
    assert_eq!(calls.load(Ordering::SeqCst), 3, "retried when the token went stale");
}

/// Throttles the first `throttles` calls, then gives a 12-hour token.
struct ThrottledThenToken {
    clock: Arc<ManualClock>,
    calls: Arc<AtomicU32>,
    throttles: u32,
}

impl TokenSource for ThrottledThenToken {
    async fn fetch(&self, _registry: &RegistryConfig) -> Result<FetchedToken, FetchError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.throttles {
            return Err(throttled());
        }
        Ok(token("pw", self.clock.true_wall() + Duration::from_secs(12 * 3600)))
    }
}

/// Retries after throttling a quarter of `base` to `base` later while a client waits.
fn retrying_within(base: Duration) -> RefreshPolicy {
    RefreshPolicy {
        throttled_backoff_base: base,
        backoff_cap_waiting: base,
        ..RefreshPolicy::default().without_startup_spread()
    }
}

/// A started cache of `source` under `policy`, its first `get` and how long that took.
async fn first_get<S: TokenSource>(
    source: S,
    clock: Arc<ManualClock>,
    policy: RefreshPolicy,
) -> (TokenCache<S>, Result<RegistryCredentials, GetError>, Duration) {
    let cache = TokenCache::new(&[registry(HOST)], false, source, clock, policy, Arc::default());
    cache.start();
    let asked = Instant::now();
    let got = cache.get(HOST).await;
    let took = asked.elapsed();
    (cache, got, took)
}

/// A source that throttles `throttles` times, then gives a token; its clock; its call count.
fn throttled_then_token(throttles: u32) -> (ThrottledThenToken, Arc<ManualClock>, Arc<AtomicU32>) {
    let (clock, calls) = (ManualClock::new(), Arc::new(AtomicU32::new(0)));
    (ThrottledThenToken { clock: clock.clone(), calls: calls.clone(), throttles }, clock, calls)
}

#[tokio::test(start_paused = true)]
async fn a_get_at_boot_is_answered_by_the_retry_after_throttling() {
    // Retries 1 to 4 s after each throttle: two of them fit in the 12 s wait.
    let (source, clock, calls) = throttled_then_token(2);
    let (_cache, got, took) = first_get(source, clock, retrying_within(Duration::from_secs(4))).await;
    assert!(got.is_ok(), "the pull at boot is served when the token comes: {got:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 3, "no call sooner than the backoff's");
    assert!(
        took >= Duration::from_secs(2) && took <= Duration::from_secs(8),
        "answered after the retries: {took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_get_whose_retry_is_past_its_wait_hears_the_throttle_then() {
    // The retry is 30 s or more away (a quarter of the 120 s base), past
    // both gets' 12 s waits, one after the other.
    let (source, clock, calls) = throttled_then_token(1);
    let (cache, got, took) = first_get(source, clock, retrying_within(Duration::from_secs(120))).await;
    assert!(matches!(&got, Err(e) if e.says_later()), "the throttle is told: {got:?}");
    assert_eq!(took, RefreshPolicy::default().get_wait);
    // A second get inside the backoff window is told too, without a call.
    let again = cache.get(HOST).await;
    assert!(matches!(&again, Err(e) if e.says_later()), "told again: {again:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// Throttles the first call; every later one hangs.
struct ThrottledThenHung(Arc<AtomicU32>);

impl TokenSource for ThrottledThenHung {
    async fn fetch(&self, _registry: &RegistryConfig) -> Result<FetchedToken, FetchError> {
        if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(throttled());
        }
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_get_waiting_for_a_retry_is_answered_within_its_wait() {
    let calls = Arc::new(AtomicU32::new(0));
    let wait = RefreshPolicy::default().get_wait;
    let source = ThrottledThenHung(calls.clone());
    let (_cache, got, took) =
        first_get(source, ManualClock::new(), retrying_within(Duration::from_secs(4))).await;
    // The retry hangs: when the wait ends (in time for the helper, which
    // waits 15 s), the client hears that it is still running.
    assert!(matches!(&got, Err(GetError::Timeout { waited, .. }) if *waited == wait), "{got:?}");
    assert_eq!(took, wait);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
