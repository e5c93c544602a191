//! Throttling's backoff is long by design, but never outlasts the token
//! still being served: the retry comes before the token stops being served.

use std::sync::atomic::{AtomicU32, Ordering};

use super::tests::{registry, settle, throttled, token, ManualClock};
use super::*;
use crate::tokens::FetchedToken;

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
