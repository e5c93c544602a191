use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

use tokio::time::Instant;

use super::*;
use crate::tokens::{FetchError, FetchedToken, Refusal, SystemClock};

pub(super) const HOUR: Duration = Duration::from_secs(3600);

/// Wall time that moves with tokio's (paused) clock, plus an adjustable skew.
pub(super) struct ManualClock {
    start: Instant,
    start_wall: SystemTime,
    skew_secs: AtomicI64,
    /// Time spent suspended: the wall clock (ours and AWS's) moves on, the
    /// monotonic one does not.
    suspended_secs: AtomicI64,
}

impl ManualClock {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(ManualClock {
            start: Instant::now(),
            start_wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            skew_secs: AtomicI64::new(0),
            suspended_secs: AtomicI64::new(0),
        })
    }
    pub(super) fn true_wall(&self) -> SystemTime {
        let suspended = Duration::from_secs(self.suspended_secs.load(Ordering::SeqCst).unsigned_abs());
        self.start_wall + (Instant::now() - self.start) + suspended
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> SystemTime {
        let skew = self.skew_secs.load(Ordering::SeqCst);
        let t = self.true_wall();
        if skew >= 0 {
            t + Duration::from_secs(skew as u64)
        } else {
            t - Duration::from_secs(skew.unsigned_abs())
        }
    }
}

/// Issues 12-hour tokens (`pw-N`) on the true clock, or fails (a fault)
/// when told to; made-up accounts are denied.
pub(super) struct FakeSource {
    clock: Arc<ManualClock>,
    calls: Arc<AtomicU32>,
    failing: Arc<std::sync::atomic::AtomicBool>,
    delay: Duration,
}

impl TokenSource for FakeSource {
    async fn fetch(&self, registry: &RegistryConfig) -> Result<FetchedToken, FetchError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(self.delay).await;
        // Accounts starting 99 are made up: AWS never answers them with a token.
        let refusal = if registry.account.starts_with("99") {
            Refusal::Denied
        } else if self.failing.load(Ordering::SeqCst) {
            Refusal::Failed
        } else {
            return Ok(FetchedToken {
                username: "AWS".into(),
                secret: Secret::new(format!("pw-{n}")),
                expires_at: self.clock.true_wall() + 12 * HOUR,
            });
        };
        Err(FetchError::AssumeRole {
            role_arn: "arn:aws:iam::210987654321:role/ecr-pull".into(),
            refusal,
            reason: if refusal == Refusal::Denied { "AccessDenied" } else { "ServiceUnavailable" }.into(),
        })
    }
}

/// A source that answers at once on `clock`, and its count of calls.
pub(super) fn answering(clock: &Arc<ManualClock>) -> (FakeSource, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let failing = Arc::default();
    (FakeSource { clock: clock.clone(), calls: calls.clone(), failing, delay: Duration::ZERO }, calls)
}

pub(super) struct Harness {
    pub(super) cache: TokenCache<FakeSource>,
    clock: Arc<ManualClock>,
    calls: Arc<AtomicU32>,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

pub(super) const HOST: &str = "127.0.0.1:5000";

/// ECR's answer once the account's bucket is spent.
pub(super) fn throttled() -> FetchError {
    FetchError::GetAuthorizationToken {
        region: "us-east-1".into(),
        refusal: Refusal::Throttled,
        reason: "ThrottlingException: Rate exceeded".into(),
    }
}

/// A token with `secret` that ECR says lasts until `expires_at`.
pub(super) fn token(secret: &str, expires_at: SystemTime) -> FetchedToken {
    FetchedToken { username: "AWS".into(), secret: Secret::new(secret.into()), expires_at }
}

pub(super) fn registry(host: &str) -> RegistryConfig {
    let ecr = RegistryConfig::unlisted("210987654321.dkr.ecr.us-east-1.amazonaws.com").unwrap();
    RegistryConfig {
        host: host.into(),
        role_arn: Some("arn:aws:iam::210987654321:role/ecr-pull".into()),
        ..ecr
    }
}

pub(super) fn harness(delay: Duration) -> Harness {
    let clock = ManualClock::new();
    let calls = Arc::new(AtomicU32::new(0));
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let source = FakeSource { clock: clock.clone(), calls: calls.clone(), failing: failing.clone(), delay };
    let registry = registry(HOST);
    let cache = TokenCache::new(
        &[registry],
        true,
        source,
        clock.clone(),
        RefreshPolicy::default().without_startup_spread(),
        Arc::default(),
    );
    Harness { cache, clock, calls, failing }
}

impl Harness {
    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
    fn fail(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }
    async fn secret(&self) -> Result<String, GetError> {
        self.cache.get(HOST).await.map(|c| c.secret.expose().to_owned())
    }
}

/// Lets spawned tasks run without moving the paused clock.
pub(super) async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn fetches_at_start_and_refreshes_before_expiry() {
    let h = harness(Duration::ZERO);
    h.cache.start();
    settle().await;
    assert_eq!(h.calls(), 1, "start-up fetch");
    assert_eq!(h.secret().await.unwrap(), "pw-1");

    // Refresh is due at 6 h +-10 %: nothing before 5.4 h, done by 6.6 h.
    tokio::time::sleep(Duration::from_secs(5 * 3600 + 1400)).await;
    assert_eq!(h.calls(), 1);
    tokio::time::sleep(Duration::from_secs(3 * 3600 / 2)).await;
    assert_eq!(h.calls(), 2, "background refresh");
    assert_eq!(h.secret().await.unwrap(), "pw-2");
    assert_eq!(h.calls(), 2, "get served from cache");

    // Over a day the token is refreshed about every 6 h and never lapses.
    for _ in 0..(24 * 6) {
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(h.secret().await.is_ok());
    }
    let calls = h.calls();
    assert!((5..=7).contains(&calls), "{calls} fetches in 30 h");
}

#[tokio::test(start_paused = true)]
async fn failed_refresh_keeps_serving_the_valid_token_then_stops() {
    let h = harness(Duration::ZERO);
    h.cache.start();
    settle().await;
    assert_eq!(h.secret().await.unwrap(), "pw-1");
    h.fail(true);

    // Past the refresh point, refreshes fail but the token is still valid.
    tokio::time::sleep(Duration::from_secs(8 * 3600)).await;
    assert!(h.calls() > 1, "refresh was attempted");
    assert_eq!(h.secret().await.unwrap(), "pw-1");

    // Up to the safety margin it is served; from there on, never.
    let margin = RefreshPolicy::default().safety_margin;
    tokio::time::sleep(4 * HOUR - margin - Duration::from_secs(10)).await;
    assert_eq!(h.secret().await.unwrap(), "pw-1");
    tokio::time::sleep(Duration::from_secs(11)).await;
    let err = h.secret().await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("sts:AssumeRole on arn:aws:iam::210987654321:role/ecr-pull failed"), "{text}");
    assert!(text.contains("127.0.0.1:5000"), "{text}");
    tokio::time::sleep(2 * HOUR).await;
    assert!(h.secret().await.is_err(), "an expired token is never served");

    // Backoff caps attempts: 6 h of failures at up to 5 min apart.
    let calls = h.calls();
    assert!((6 * 12 / 2..=6 * 60).contains(&calls), "{calls} attempts in 6 h");

    // Once AWS recovers, the next attempt succeeds without a restart.
    h.fail(false);
    tokio::time::sleep(Duration::from_secs(301)).await;
    assert!(h.secret().await.unwrap().starts_with("pw-"));
}

#[tokio::test(start_paused = true)]
async fn concurrent_cold_gets_share_one_fetch() {
    let h = Arc::new(harness(Duration::from_millis(200)));
    // No start(): every caller arrives to an empty cache.
    let mut tasks = Vec::new();
    for _ in 0..500 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move { h.secret().await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), "pw-1");
    }
    assert_eq!(h.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn concurrent_cold_gets_share_one_failure_and_back_off() {
    let h = Arc::new(harness(Duration::from_millis(200)));
    h.fail(true);
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move { h.secret().await }));
    }
    for t in tasks {
        assert!(matches!(t.await.unwrap(), Err(GetError::Unavailable { .. })));
    }
    assert_eq!(h.calls(), 1);
    // Inside the backoff window gets answer from the last error, no new call.
    assert!(h.secret().await.is_err());
    assert_eq!(h.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn slow_fetch_times_out_but_completes_for_the_next_caller() {
    let h = harness(Duration::from_secs(30));
    let err = h.secret().await.unwrap_err();
    assert!(matches!(err, GetError::Timeout { .. }), "{err}");
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(h.secret().await.unwrap(), "pw-1");
    assert_eq!(h.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn wall_clock_ahead_is_not_a_refresh_loop() {
    let h = harness(Duration::ZERO);
    h.clock.skew_secs.store(13 * 3600, Ordering::SeqCst);
    h.cache.start();
    settle().await;
    let err = h.secret().await.unwrap_err();
    assert!(matches!(err, GetError::TooShort { .. }), "{err}");
    tokio::time::sleep(Duration::from_secs(600)).await;
    let calls = h.calls();
    assert!(calls <= 20, "{calls} fetches in 10 min with a skewed clock");
}

#[tokio::test(start_paused = true)]
async fn wall_clock_behind_cannot_stretch_a_token() {
    let h = harness(Duration::ZERO);
    h.clock.skew_secs.store(-5 * 3600, Ordering::SeqCst);
    h.cache.start();
    settle().await;
    h.fail(true);
    assert_eq!(h.secret().await.unwrap(), "pw-1");
    // The local clock believes 17 h remain; the token really dies at 12 h.
    tokio::time::sleep(12 * HOUR).await;
    assert!(h.secret().await.is_err());
}

#[tokio::test(start_paused = true)]
async fn after_hibernation_an_expired_token_is_never_served() {
    let h = harness(Duration::ZERO);
    h.cache.start();
    settle().await;
    assert_eq!(h.secret().await.unwrap(), "pw-1");
    // 13 h suspended: by the monotonic clock pw-1 is minutes old, by the
    // wall clock (and AWS) it expired an hour ago.
    h.clock.suspended_secs.store(13 * 3600, Ordering::SeqCst);
    assert_eq!(h.secret().await.unwrap(), "pw-2", "the expired token was served");
    assert_eq!(h.calls(), 2, "the get fetched a fresh token");
    let status = h.cache.status();
    assert!(status.iter().all(|s| s.ready));
}

#[tokio::test(start_paused = true)]
async fn unknown_and_unlisted_hosts() {
    let h = harness(Duration::ZERO);
    let err = h.cache.get("https://index.docker.io/v1/").await.unwrap_err();
    assert_eq!(err, GetError::NotFound { host: "index.docker.io".into() });
    assert!(matches!(h.cache.get("  ").await, Err(GetError::BadHost(_))));
    // An unlisted ECR host is served with instance credentials.
    let creds = h.cache.get("https://111122223333.dkr.ecr.eu-west-1.amazonaws.com").await.unwrap();
    assert_eq!(creds.host, "111122223333.dkr.ecr.eu-west-1.amazonaws.com");
    assert_eq!(h.cache.hosts(), vec![HOST.to_owned()]);
}

#[tokio::test(start_paused = true)]
async fn reload_keeps_unchanged_tokens_and_drops_removed_ones() {
    let h = harness(Duration::ZERO);
    h.cache.start();
    settle().await;
    assert_eq!(h.calls(), 1);
    let other = registry("b.example:5000");
    let r = h.cache.reconfigure(&[registry(HOST), other.clone()], true);
    assert_eq!(r, Reconfigured { kept: 1, added: 1, removed: 0 });
    settle().await;
    assert_eq!(h.calls(), 2, "only the new registry is fetched");
    assert_eq!(h.secret().await.unwrap(), "pw-1", "the unchanged registry kept its token");
    assert_eq!(h.cache.hosts(), vec![HOST.to_owned(), "b.example:5000".to_owned()]);
    assert_eq!(h.cache.stalled(), Vec::<String>::new());

    // A changed role is a new registry: fetched afresh.
    let mut changed = registry(HOST);
    changed.role_arn = Some("arn:aws:iam::210987654321:role/other".into());
    let r = h.cache.reconfigure(&[changed, other.clone()], true);
    assert_eq!(r, Reconfigured { kept: 1, added: 1, removed: 0 });
    settle().await;
    assert_eq!(h.calls(), 3);

    let r = h.cache.reconfigure(&[other], true);
    assert_eq!(r, Reconfigured { kept: 1, added: 0, removed: 1 });
    assert!(matches!(h.cache.get(HOST).await, Err(GetError::NotFound { .. })));
    let status = h.cache.status();
    assert_eq!(status.len(), 1);
    assert!(status[0].ready && status[0].configured);
    assert!(h.cache.ready());
    let metrics = h.cache.metrics().encode();
    assert!(!metrics.contains("token_expiry_timestamp_seconds{registry=\"127.0.0.1:5000\"}"), "{metrics}");
}

#[tokio::test(start_paused = true)]
async fn status_reports_failures_without_secrets() {
    let h = harness(Duration::ZERO);
    h.fail(true);
    h.cache.start();
    settle().await;
    assert!(!h.cache.ready());
    let s = &h.cache.status()[0];
    assert!(!s.ready);
    assert_eq!(s.consecutive_failures, 1);
    assert!(s.last_error.as_deref().unwrap().contains("sts:AssumeRole"));
    h.fail(false);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = &h.cache.status()[0];
    assert!(s.ready && s.consecutive_failures == 0 && s.last_error.is_none());
    assert!(s.expires_at.is_some() && s.last_refresh.is_some());
    let json = serde_json::to_string(&h.cache.status()).unwrap();
    assert!(!json.contains("pw-"), "{json}");
    let metrics = h.cache.metrics().encode();
    assert!(metrics.contains("step=\"assume_role\"} 1"), "{metrics}");
    assert!(!metrics.contains("pw-"));
}

/// Counts fetches in flight and remembers the most seen at once.
pub(super) struct Gauge {
    pub(super) now: AtomicU32,
    pub(super) max: AtomicU32,
}

pub(super) struct SlowSource(pub(super) Arc<Gauge>);

impl TokenSource for SlowSource {
    async fn fetch(&self, _registry: &RegistryConfig) -> Result<FetchedToken, FetchError> {
        let n = self.0.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.0.max.fetch_max(n, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.0.now.fetch_sub(1, Ordering::SeqCst);
        Ok(FetchedToken {
            username: "AWS".into(),
            secret: Secret::new("pw".into()),
            expires_at: SystemTime::now() + 12 * HOUR,
        })
    }
}

#[tokio::test(start_paused = true)]
async fn many_registries_start_without_a_burst() {
    let gauge = Arc::new(Gauge { now: AtomicU32::new(0), max: AtomicU32::new(0) });
    let registries: Vec<_> = (0..40).map(|i| registry(&format!("registry-{i}.internal"))).collect();
    let policy = RefreshPolicy::default().without_startup_spread();
    let limit = policy.max_concurrent_fetches as u32;
    let cache = TokenCache::new(
        &registries,
        false,
        SlowSource(gauge.clone()),
        Arc::new(SystemClock),
        policy,
        Arc::default(),
    );
    cache.start();
    // 40 fetches of 200 ms, 8 at a time: all done in 5 rounds.
    tokio::time::sleep(Duration::from_millis(5 * 200 + 50)).await;
    for r in &registries {
        assert!(cache.get(&r.host).await.is_ok(), "{} ready", r.host);
    }
    assert_eq!(gauge.max.load(Ordering::SeqCst), limit, "at most {limit} fetches in flight");
}
