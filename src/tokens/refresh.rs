//! Time and policy for the token cache: an injectable clock, the refresh
//! and retry policy, and the backoff it implies.

use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::time::Instant;

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
    pub backoff_cap: Duration,
    /// How long a `get` waits for an on-demand fetch.
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
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            safety_margin: Duration::from_secs(5 * 60),
            refresh_fraction: 0.5,
            jitter: 0.1,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(5 * 60),
            get_wait: Duration::from_secs(5),
            max_lifetime: Duration::from_secs(12 * 3600),
            max_unlisted: 256,
            unlisted_idle: Duration::from_secs(6 * 3600),
            max_concurrent_fetches: 8,
            fetch_deadline: Duration::from_secs(60),
            stall_after: Duration::from_secs(90),
        }
    }
}

/// Full-jitter exponential backoff, never shorter than the base step.
pub(super) fn backoff(policy: &RefreshPolicy, failures: u32) -> Duration {
    let exp = policy
        .backoff_base
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
        .min(policy.backoff_cap);
    let secs = rand::thread_rng().gen_range(
        policy.backoff_base.as_secs_f64()..=exp.as_secs_f64().max(policy.backoff_base.as_secs_f64()),
    );
    Duration::from_secs_f64(secs)
}
