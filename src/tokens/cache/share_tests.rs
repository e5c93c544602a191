//! Entries one token serves are ready together: when one gets a token, the
//! others stop backing off and take it (the source serves it without a call).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use tokio::time::Instant;

use super::tests::{registry, settle, throttled, token, ManualClock};
use super::*;
use crate::tokens::{FetchError, FetchedToken, Refusal};

const A: &str = "127.0.0.1:5000";
const B: &str = "127.0.0.1:5001";

/// Throttles every call until A has been asked twice; from then on hands out
/// the token A got (shared, as one GetAuthorizationToken covers both).
struct Throttled {
    clock: Arc<ManualClock>,
    calls_a: AtomicU32,
    calls_b: Arc<AtomicU32>,
    shared: AtomicBool,
}

impl TokenSource for Throttled {
    async fn fetch(&self, registry: &RegistryConfig) -> Result<FetchedToken, FetchError> {
        let is_a = registry.host == A;
        if is_a {
            if self.calls_a.fetch_add(1, Ordering::SeqCst) >= 1 {
                self.shared.store(true, Ordering::SeqCst);
            }
        } else {
            self.calls_b.fetch_add(1, Ordering::SeqCst);
        }
        if !self.shared.load(Ordering::SeqCst) {
            return Err(throttled());
        }
        Ok(token("shared", self.clock.true_wall() + Duration::from_secs(12 * 3600)))
    }

    fn shares_token(&self, _a: &RegistryConfig, _b: &RegistryConfig) -> bool {
        true
    }
}

#[tokio::test(start_paused = true)]
async fn a_token_for_one_entry_wakes_the_entries_it_serves() {
    let clock = ManualClock::new();
    let calls_b = Arc::new(AtomicU32::new(0));
    let source = Throttled {
        clock: clock.clone(),
        calls_a: AtomicU32::new(0),
        calls_b: calls_b.clone(),
        shared: AtomicBool::new(false),
    };
    // Long backoffs, so B's own next try is far from A's success.
    let policy = RefreshPolicy {
        backoff_base: Duration::from_secs(60),
        throttled_backoff_base: Duration::from_secs(60),
        backoff_cap: Duration::from_secs(3600),
        ..RefreshPolicy::default().without_startup_spread()
    };
    let cache = TokenCache::new(&[registry(A), registry(B)], false, source, clock, policy, Arc::default());
    cache.start();
    settle().await;
    let ready = |host: &str| cache.status().iter().any(|s| s.host == host && s.ready);
    let start = Instant::now();
    while !ready(A) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(start.elapsed() < Duration::from_secs(3600), "A never got its token");
    }
    let a_at = start.elapsed();
    settle().await;
    assert!(ready(B), "B is served as soon as A's token arrives ({a_at:?}), not at the end of its backoff");
    assert!(cache.get(B).await.is_ok());
    // Its own throttled tries (one or more, by its jitter), then the shared token.
    assert!(calls_b.load(Ordering::SeqCst) >= 2);
}

/// Throttles every call, noting when each entry asked.
struct AlwaysRefused {
    asked: Arc<std::sync::Mutex<Vec<(Duration, String)>>>,
    start: Instant,
    refusal: fn() -> FetchError,
    shares: bool,
}

impl TokenSource for AlwaysRefused {
    async fn fetch(&self, registry: &RegistryConfig) -> Result<FetchedToken, FetchError> {
        lock(&self.asked).push((self.start.elapsed(), registry.host.clone()));
        Err((self.refusal)())
    }

    fn shares_token(&self, _a: &RegistryConfig, _b: &RegistryConfig) -> bool {
        self.shares
    }
}

type Asked = Arc<std::sync::Mutex<Vec<(Duration, String)>>>;

/// A started cache of three entries on one role, refused by `refusal`
/// whether or not one token `shares` them, and the calls it makes.
fn refused_three(refusal: fn() -> FetchError, shares: bool) -> (TokenCache<AlwaysRefused>, Asked) {
    let asked = Asked::default();
    let source = AlwaysRefused { asked: asked.clone(), start: Instant::now(), refusal, shares };
    let regs: Vec<RegistryConfig> = [A, B, "127.0.0.1:5002"].iter().map(|h| registry(h)).collect();
    let policy = RefreshPolicy::default().without_startup_spread();
    let cache = TokenCache::new(&regs, false, source, ManualClock::new(), policy, Arc::default());
    cache.start();
    (cache, asked)
}

/// When the calls in `asked` came, a round per 50 ms; each round must be
/// all three entries at once (one call, behind the source's single
/// flight), not three rounds of one.
fn rounds_of_three(asked: &Asked) -> Vec<Duration> {
    let asked = lock(asked).clone();
    let mut rounds: Vec<Duration> = Vec::new();
    for (at, _) in &asked {
        if rounds.last().is_none_or(|r| at.saturating_sub(*r) > Duration::from_millis(50)) {
            rounds.push(*at);
        }
    }
    for r in &rounds {
        let near = |at: &Duration| *at >= *r && *at - *r <= Duration::from_millis(50);
        let together: Vec<&String> = asked.iter().filter(|(at, _)| near(at)).map(|(_, h)| h).collect();
        assert_eq!(together.len(), 3, "round at {r:?}: {together:?} (all: {asked:?})");
    }
    rounds
}

#[tokio::test(start_paused = true)]
async fn entries_one_token_serves_back_off_as_one_at_the_pace_of_a_waiting_client() {
    let (cache, asked) = refused_three(throttled, true);
    let cap = RefreshPolicy::default().backoff_cap_waiting;
    // A client waits on A only; B and C are served by the same token.
    assert!(cache.get(A).await.is_err());
    tokio::time::sleep(Duration::from_secs(120)).await;
    let rounds = rounds_of_three(&asked);
    // A client waits on A, so whichever entry set the round's time, no wait
    // exceeds the waiting cap until the cap's growth with the time throttled
    // (0.3 of it) passes it, at 40 s.
    let early: Vec<&[Duration]> = rounds.windows(2).filter(|w| w[0] < Duration::from_secs(40)).collect();
    assert!(early.len() >= 3, "{rounds:?}");
    assert!(early.iter().all(|w| w[1] - w[0] <= cap + Duration::from_millis(50)), "{rounds:?}");
}

fn denied() -> FetchError {
    FetchError::AssumeRole {
        role_arn: "arn:aws:iam::210987654321:role/ecr-pull".into(),
        refusal: Refusal::Denied,
        reason: "AccessDenied: not authorized to perform sts:AssumeRole".into(),
    }
}

#[tokio::test(start_paused = true)]
async fn entries_on_one_denied_role_retry_in_one_round_though_no_token_serves_them_all() {
    // Three regions, say: three tokens, but one role, which STS denies.
    let (cache, asked) = refused_three(denied, false);
    tokio::time::sleep(Duration::from_secs(2 * 3600)).await;
    let rounds = rounds_of_three(&asked);
    // Minutes apart, doubling to half an hour, jittered by half: 0, 2-4 min,
    // then 4-8 more... The rounds' own draws decide how many fit in two
    // hours: 7 if every wait is its longest, 11 if every one its shortest.
    let slack = Duration::from_millis(50);
    assert!((7..=11).contains(&rounds.len()), "{rounds:?}");
    let gaps: Vec<Duration> = rounds.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] <= Duration::from_secs(240) + slack, "{rounds:?}");
    let (shortest, longest) = (Duration::from_secs(120), Duration::from_secs(30 * 60));
    assert!(gaps.iter().all(|g| *g + slack >= shortest && *g <= longest + slack), "{rounds:?}");
    // No more than five tries in the first half hour.
    assert!(rounds.iter().filter(|at| **at < longest).count() <= 5, "{rounds:?}");
    // After a reload, the next denial starts a round of its own, at once.
    cache.reconfigure(&[registry(A), registry(B), registry("127.0.0.1:5002")], false);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(lock(&asked).len(), 3 * rounds.len() + 3, "retried at once on reload");
}
