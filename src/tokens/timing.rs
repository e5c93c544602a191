//! Time and policy for the token cache: an injectable clock, the refresh
//! and retry policy, and the backoff it implies.

use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::time::Instant;

use super::source::Refusal;

/// Monotonic and wall time, injected so tests can pause and skew them.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic now; all deadlines are measured on this.
    fn now(&self) -> Instant;
    /// Wall-clock now; used only to turn a service's `expiresAt` into a lifetime.
    fn wall(&self) -> SystemTime;
}

/// The real clocks (tokio's, so `tokio::time::pause` applies).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// When to refresh, retry and stop serving.
#[derive(Debug, Clone)]
pub struct RefreshPolicy {
    /// A token is served only while it has more than this left.
    pub safety_margin: Duration,
    /// Refresh after this fraction of the lifetime.
    pub refresh_fraction: f64,
    /// Refresh time is scattered by up to this fraction either way.
    pub jitter: f64,
    /// First backoff step after a failure.
    pub backoff_base: Duration,
    /// Longest wait between retries while nobody asks for the token.
    pub backoff_cap: Duration,
    /// Longest wait while a client asked in the last [`RefreshPolicy::waiting_window`]:
    /// someone is waiting, so the retries stay close.
    pub backoff_cap_waiting: Duration,
    /// A `get` this recent counts as a client waiting for the token.
    pub waiting_window: Duration,
    /// First backoff step after throttling or an overload (a timeout, a
    /// 5xx): larger than `backoff_base`, so
    /// a fleet the quota turned away spreads its retries over the time the
    /// bucket needs, instead of making most of them in vain.
    pub throttled_backoff_base: Duration,
    /// While throttled, the cap grows to this fraction of the time the
    /// entry has been throttled (between `backoff_cap_waiting` or
    /// `backoff_cap` and `throttled_backoff_ceiling`): a large fleet, whose
    /// queue takes long to drain, then makes few calls, and the tail past
    /// the drain stays within this fraction of it.
    pub throttled_cap_fraction: f64,
    /// The longest wait between throttled retries, however long it lasted.
    pub throttled_backoff_ceiling: Duration,
    /// The cap, while a client waits, when STS (not ECR) throttled: STS's
    /// quota is far above GetAuthorizationToken's, so a fleet STS throttles
    /// is one whose GetAuthorizationToken queue takes longer still, and a
    /// node that reaches it later loses nothing; while a denied fleet, which
    /// STS throttles before any node can see the denial, calls far less.
    /// Its retries also come no sooner than a quarter of this cap (or of
    /// the cap grown with the time throttled).
    pub sts_throttled_cap_waiting: Duration,
    /// The first wait after a denial (IAM must change first), doubling up to
    /// `denied_backoff_cap`: a denied fleet must not keep calling AWS.
    pub denied_backoff_base: Duration,
    /// The longest wait after repeated denials.
    pub denied_backoff_cap: Duration,
    /// At most this many tries, throttled ones included, in the first
    /// `denied_backoff_cap` of a run of failures that holds a denial: a
    /// fleet STS throttled before it learned of the denial has spent tries
    /// the doubling alone does not count.
    pub denied_tries: u32,
    /// How long, all told, a `get` waits for a token: for a fetch, and
    /// after throttling or an overload for the retry, so a pull at boot is
    /// answered when its token comes, not at its client's next try (the
    /// kubelet's is 10 s later, then 30 s). Below the helper's 15 s wait
    /// for a reply.
    pub get_wait: Duration,
    /// Upper bound on a token's lifetime, whatever `expiresAt` says: ECR
    /// tokens last 12 hours, so a wall clock running behind cannot stretch one.
    pub max_lifetime: Duration,
    /// Most unlisted ECR hosts tracked at once.
    pub max_unlisted: usize,
    /// An unlisted host nobody asked for in this long is dropped, token and all.
    pub unlisted_idle: Duration,
    /// Most fetches in flight at once, across registries: a daemon with many
    /// registries must not burst past ECR's per-account rate at start-up.
    pub max_concurrent_fetches: usize,
    /// The longest one fetch may run before it is stopped and counted as
    /// failed. Each AWS call has a shorter timeout of its own; this bounds
    /// the sum, and anything they miss.
    pub fetch_deadline: Duration,
    /// A configured registry whose fetch has run this long, or whose
    /// refresh is this overdue with no fetch running, has stalled: `/healthz`
    /// fails and the systemd watchdog is no longer pinged.
    pub stall_after: Duration,
    /// A configured registry's first fetch waits a random time up to this,
    /// so a fleet that boots (or reloads) together does not ask AWS in the
    /// same second; a `get` for it fetches at once, so a node with a waiting
    /// client loses nothing.
    pub startup_spread: Duration,
    /// When no configured registry holds a token and one's fetches have
    /// found a source that gives no answer for this long, the daemon counts
    /// as stalled, so systemd restarts it: a restart then loses nothing, and
    /// ends the hung child or connection.
    pub hung_restart_after: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            safety_margin: Duration::from_secs(5 * 60),
            refresh_fraction: 0.5,
            jitter: 0.1,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(5 * 60),
            backoff_cap_waiting: Duration::from_secs(12),
            waiting_window: Duration::from_secs(5 * 60),
            throttled_backoff_base: Duration::from_secs(16),
            throttled_cap_fraction: 0.3,
            throttled_backoff_ceiling: Duration::from_secs(30 * 60),
            sts_throttled_cap_waiting: Duration::from_secs(60),
            denied_backoff_base: Duration::from_secs(4 * 60),
            denied_backoff_cap: Duration::from_secs(30 * 60),
            denied_tries: 5,
            get_wait: Duration::from_secs(12),
            max_lifetime: Duration::from_secs(12 * 3600),
            max_unlisted: 256,
            unlisted_idle: Duration::from_secs(6 * 3600),
            max_concurrent_fetches: 8,
            fetch_deadline: Duration::from_secs(60),
            stall_after: Duration::from_secs(90),
            startup_spread: Duration::from_secs(10),
            hung_restart_after: Duration::from_secs(120),
        }
    }
}

impl RefreshPolicy {
    /// This policy with every first fetch at once (tests that count them).
    pub fn without_startup_spread(self) -> Self {
        RefreshPolicy { startup_spread: Duration::ZERO, ..self }
    }

    /// When a configured registry first fetching at `now` should.
    pub(super) fn first_try(&self, now: Instant) -> Instant {
        now + self.startup_spread.mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
    }
}

/// What the backoff after a failure depends on.
#[derive(Debug, Clone, Copy)]
pub(super) struct Failure {
    /// Failures in a row, this one included.
    pub(super) count: u32,
    /// How AWS refused, if it did.
    pub(super) refusal: Option<Refusal>,
    /// A client asked for the token recently and has none to use.
    pub(super) waiting: bool,
    /// How long the failures in a row have lasted.
    pub(super) lasted: Duration,
    /// One of them was a denial: throttling since then only hides the same
    /// answer (a denied fleet is large enough for STS to throttle it too).
    pub(super) denied_before: bool,
    /// This one was STS's answer (AssumeRole and its kin), not ECR's.
    pub(super) by_sts: bool,
}

/// The wait before the next try after `f`. Exponential with full jitter
/// from a quarter of the base step, so nodes that failed together (a
/// throttled fleet) do not retry together, from the first retry on; capped
/// lower while a client is waiting. Throttling and overload (timeouts,
/// 5xx) start from a larger step, and their cap grows with how long they
/// have lasted; STS's keep no tighter cap for a waiting client, and no
/// floor below a quarter of theirs. After a denial (and after throttling
/// that follows one): minutes, doubling to `denied_backoff_cap`, jittered
/// by half, and no more than `denied_tries` in its first half hour.
pub(super) fn backoff(policy: &RefreshPolicy, f: Failure) -> Duration {
    let doubled = |base: Duration, cap: Duration| {
        base.saturating_mul(1u32 << f.count.min(21).saturating_sub(1)).min(cap)
    };
    let cap = if f.waiting { policy.backoff_cap_waiting } else { policy.backoff_cap };
    let refusal = match f.refusal {
        Some(Refusal::Throttled | Refusal::Overloaded) if f.denied_before => Some(Refusal::Denied),
        other => other,
    };
    let (low, high) = match refusal {
        Some(Refusal::Denied) => {
            let high = doubled(policy.denied_backoff_base, policy.denied_backoff_cap);
            let budget_spent = f.count >= policy.denied_tries;
            let rest = if budget_spent {
                policy.denied_backoff_cap.saturating_sub(f.lasted)
            } else {
                Duration::ZERO
            };
            (rest.max(high / 2), rest.max(high))
        }
        Some(Refusal::Throttled | Refusal::Overloaded) => {
            let grown = f.lasted.mul_f64(policy.throttled_cap_fraction).min(policy.throttled_backoff_ceiling);
            // A timeout or 5xx does not say how large the fleet is; STS's throttling does.
            let sts_throttled = f.by_sts && f.waiting && f.refusal == Some(Refusal::Throttled);
            let cap = if sts_throttled { policy.sts_throttled_cap_waiting } else { cap };
            let base = policy.throttled_backoff_base;
            let high = doubled(base * 2, cap.max(grown));
            let low = if sts_throttled { (cap.max(grown) / 4).max(base / 4) } else { base / 4 };
            (low, high.max(low))
        }
        _ => (policy.backoff_base / 4, doubled(policy.backoff_base * 2, cap)),
    };
    Duration::from_secs_f64(
        rand::thread_rng().gen_range(low.as_secs_f64()..=high.as_secs_f64().max(low.as_secs_f64())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range_after(count: u32, refusal: Option<Refusal>, waiting: bool, lasted: u64) -> (Duration, Duration) {
        let p = RefreshPolicy::default();
        let f = Failure {
            count,
            refusal,
            waiting,
            lasted: Duration::from_secs(lasted),
            denied_before: false,
            by_sts: false,
        };
        let waits: Vec<Duration> = (0..2000).map(|_| backoff(&p, f)).collect();
        (*waits.iter().min().unwrap(), *waits.iter().max().unwrap())
    }

    fn range(count: u32, refusal: Option<Refusal>, waiting: bool) -> (Duration, Duration) {
        range_after(count, refusal, waiting, 0)
    }

    #[test]
    fn retries_are_scattered_from_the_first_and_capped_by_who_waits() {
        let (low, high) = range(1, Some(Refusal::Failed), false);
        assert!(low < Duration::from_millis(400) && high > Duration::from_millis(1600), "{low:?}..{high:?}");
        assert!(high <= Duration::from_secs(2));
        assert!(range(20, None, false).1 <= Duration::from_secs(300));
        assert!(range(20, None, false).1 > Duration::from_secs(200));
        let waiting = RefreshPolicy::default().backoff_cap_waiting;
        assert!(range(20, None, true).1 <= waiting, "a waiting client keeps retries close");
        assert!(range(20, None, true).1 > waiting.mul_f64(0.9));
    }

    #[test]
    fn throttling_starts_wider_and_its_cap_grows_with_how_long_it_lasts() {
        let p = RefreshPolicy::default();
        let (low, high) = range(1, Some(Refusal::Throttled), true);
        assert!(low >= p.throttled_backoff_base / 4 && low < p.throttled_backoff_base / 3, "{low:?}");
        assert!(high <= p.backoff_cap_waiting && high > p.backoff_cap_waiting.mul_f64(0.9), "{high:?}");
        // An overload (a timeout, a 5xx) backs off the same way.
        assert_eq!(range(1, Some(Refusal::Overloaded), true).0.as_secs(), low.as_secs());
        assert!(range(1, Some(Refusal::Overloaded), true).0 >= p.throttled_backoff_base / 4);
        // Throttled for 400 s with a client waiting: the cap is 120 s, not 12.
        let (_, high) = range_after(20, Some(Refusal::Throttled), true, 400);
        assert!(high <= Duration::from_secs(120) && high > Duration::from_secs(108), "{high:?}");
        // Nobody waiting: the usual cap until 0.3 of the time throttled exceeds it.
        assert!(range_after(20, Some(Refusal::Throttled), false, 400).1 <= p.backoff_cap);
        assert!(range_after(20, Some(Refusal::Throttled), false, 4000).1 > Duration::from_secs(900));
        // However long: at most the ceiling.
        let (_, high) = range_after(20, Some(Refusal::Throttled), false, 86_400);
        assert!(high <= p.throttled_backoff_ceiling && high > p.throttled_backoff_ceiling.mul_f64(0.9));
    }

    #[test]
    fn throttling_by_sts_keeps_no_tighter_cap_for_a_waiting_client() {
        let p = RefreshPolicy::default();
        let waits_after = |refusal: Refusal, by_sts: bool, count: u32| {
            let f = Failure {
                count,
                refusal: Some(refusal),
                waiting: true,
                lasted: Duration::from_secs(10),
                denied_before: false,
                by_sts,
            };
            (0..2000).map(|_| backoff(&p, f)).max().unwrap()
        };
        let waits = |by_sts: bool, count: u32| waits_after(Refusal::Throttled, by_sts, count);
        // A timeout says nothing of the fleet's size: STS's keep the waiting cap.
        assert!(waits_after(Refusal::Overloaded, true, 3) <= p.backoff_cap_waiting);
        // ECR's throttling, with a client waiting: within the waiting cap.
        assert!(waits(false, 3) <= p.backoff_cap_waiting);
        // STS's: the doubling goes on past it (4 s to 64 s at the second), to
        // its own cap.
        let cap = p.sts_throttled_cap_waiting;
        assert!(cap > p.backoff_cap_waiting * 2);
        let second = waits(true, 2);
        assert!(second > cap.mul_f64(0.9) && second <= cap, "{second:?}");
        assert!(waits(true, 9) <= cap);
        // The first retry is no sooner than a quarter of the cap: a fleet STS
        // throttles is queued for longer at ECR, and a denied one, which STS
        // throttles before it can learn of the denial, spends fewer tries.
        assert!(waits(true, 1) <= p.throttled_backoff_base * 2);
        let sts_low = |lasted: u64| {
            let f = Failure {
                count: 3,
                refusal: Some(Refusal::Throttled),
                waiting: true,
                lasted: Duration::from_secs(lasted),
                denied_before: false,
                by_sts: true,
            };
            (0..2000).map(|_| backoff(&p, f)).min().unwrap()
        };
        assert!(sts_low(10) >= cap / 4, "{:?}", sts_low(10));
        // Throttled for 1,000 s: the cap has grown to 300 s, and so has the floor.
        assert!(sts_low(1000) >= Duration::from_secs(75), "{:?}", sts_low(1000));
        // ECR's throttling keeps its floor at a quarter of the step.
        assert!(range(3, Some(Refusal::Throttled), true).0 < p.throttled_backoff_base / 3);
    }

    #[test]
    fn throttling_after_a_denial_waits_as_the_denial_does() {
        let p = RefreshPolicy::default();
        let f = Failure {
            count: 2,
            refusal: Some(Refusal::Throttled),
            waiting: true,
            lasted: Duration::from_secs(120),
            denied_before: true,
            by_sts: true,
        };
        let shortest = (0..2000).map(|_| backoff(&p, f)).min().unwrap();
        assert!(shortest >= p.denied_backoff_base, "{shortest:?}");
    }

    #[test]
    fn a_denial_waits_minutes_doubling_to_half_an_hour() {
        let (low, high) = range(1, Some(Refusal::Denied), false);
        assert!(low >= Duration::from_secs(120) && high <= Duration::from_secs(240), "{low:?}..{high:?}");
        assert!(high > Duration::from_secs(200), "{high:?}");
        assert_eq!(range(9, Some(Refusal::Denied), true).1.as_secs().div_ceil(60), 30);
        // At most five tries in the first half hour: the shortest waits
        // before tries 2 to 6 add up to 30 minutes.
        let shortest: Duration = (1..=5).map(|k| range(k, Some(Refusal::Denied), false).0).sum();
        assert!(shortest >= Duration::from_secs(30 * 60) - Duration::from_secs(1), "{shortest:?}");
    }

    #[test]
    fn a_denial_after_throttled_tries_waits_out_the_half_hour_once_five_are_spent() {
        // Four throttled tries in 90 s, then the denial: the fifth try.
        let (low, _) = range_after(5, Some(Refusal::Denied), true, 90);
        assert!(low >= Duration::from_secs(30 * 60 - 90), "{low:?}");
        // The fourth try leaves one in the budget: the doubling decides.
        let (low, _) = range_after(4, Some(Refusal::Denied), true, 90);
        assert!(low < Duration::from_secs(30 * 60 - 90) && low >= Duration::from_secs(900), "{low:?}");
        // Past the half hour, the budget no longer holds the tries back.
        let (low, high) = range_after(9, Some(Refusal::Denied), true, 3600);
        assert!(low >= Duration::from_secs(900) && high <= Duration::from_secs(1800), "{low:?}..{high:?}");
    }
}
