//! One registry's entry in the cache: its token, its fetch history and the
//! handles of its refresher, and what a `get` makes of them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{GetError, RegistryCredentials};
use crate::config::RegistryConfig;
use crate::sync::lock;
use crate::tokens::timing::{Failure, RefreshPolicy};
use crate::tokens::{FetchError, Refusal};
use ecr_credd_client::secret::Secret;

pub(super) struct CachedToken {
    pub(super) username: String,
    pub(super) secret: Secret,
    /// When serving must stop, on the monotonic clock (wall-clock jumps
    /// cannot stretch a token's life).
    pub(super) valid_until: Instant,
    /// The same moment on the wall clock, for `status` and the wire.
    pub(super) expires_at: SystemTime,
}

/// A registry's token and fetch history; see the module docs for locking.
pub(super) struct State {
    pub(super) token: Option<CachedToken>,
    pub(super) last_error: Option<GetError>,
    pub(super) last_refresh: Option<SystemTime>,
    /// Failures in a row: the backoff's exponent.
    pub(super) failures: u32,
    /// When the first of those failures came.
    pub(super) failing_since: Option<Instant>,
    /// One of those failures was a denial.
    pub(super) denied_in_streak: bool,
    /// When the refresher fetches next.
    pub(super) next_attempt: Instant,
    /// Bumped by every finished fetch; single-flight waiters compare it.
    pub(super) generation: u64,
    /// The last `get` for this host: unlisted hosts idle too long are dropped.
    pub(super) last_used: Instant,
    /// When the fetch now running began (after it got a fetch slot).
    pub(super) fetch_started: Option<Instant>,
    /// The last `get` for this host, if any: a recent one means a client
    /// waits, and retries stay close.
    pub(super) last_get: Option<Instant>,
    /// Since when every fetch has found its source giving no answer.
    pub(super) hung_since: Option<Instant>,
}

/// One registry served: configured, or an unlisted ECR host first asked for.
pub(super) struct Entry {
    pub(super) registry: RegistryConfig,
    /// Listed in the config (unlisted entries may be dropped when idle).
    pub(super) configured: bool,
    pub(super) state: Mutex<State>,
    pub(super) fetch_lock: Arc<tokio::sync::Mutex<()>>,
    pub(super) reschedule: Notify,
    /// Told when a fetch ends or a sibling's failure moves the next try:
    /// `get`s waiting for a retry look again.
    pub(super) fetched: Notify,
    pub(super) refresher: Mutex<Option<JoinHandle<()>>>,
}

impl Entry {
    /// A reload is how a person says "IAM is fixed": a registry backing off
    /// after failures (a denial waits up to half an hour) tries again now.
    pub(super) fn retry_now(&self, now: Instant) {
        self.try_now_if(now, |st| st.failures > 0);
    }

    /// A token that serves this entry too was just fetched: an entry backing
    /// off, or not yet started, tries now (and is served without a call).
    pub(super) fn wake(&self, now: Instant) {
        self.try_now_if(now, |st| st.failures > 0 || st.token.is_none());
    }

    /// Fetches now, its backoff forgotten, when `due` holds for its state.
    fn try_now_if(&self, now: Instant, due: impl FnOnce(&State) -> bool) {
        let mut st = lock(&self.state);
        if due(&st) {
            st.clear_failures();
            st.next_attempt = now;
            drop(st);
            self.reschedule.notify_one();
        }
    }

    /// A client asked for this token recently and has none to use.
    pub(super) fn client_waits(&self, now: Instant, wall: SystemTime, policy: &RefreshPolicy) -> bool {
        let st = lock(&self.state);
        !st.serving(now, wall, policy.safety_margin) && st.client_waits(now, policy)
    }

    /// An entry one token serves too failed: this one backs off as that one
    /// does, so the role's retries cost one call per round, not one per
    /// registry. One fetching now, or still serving a token, keeps its own.
    pub(super) fn follow(&self, streak: &Streak, now: Instant, wall: SystemTime, margin: Duration) {
        let mut st = lock(&self.state);
        if st.fetch_started.is_some() || st.serving(now, wall, margin) {
            return;
        }
        st.failures = streak.failures;
        st.failing_since = Some(streak.since);
        st.denied_in_streak = streak.denied;
        st.next_attempt = streak.next_attempt;
        st.last_error = Some(GetError::Unavailable {
            registry: self.registry.label(),
            cause: streak.cause.clone(),
            next_try: None,
        });
        drop(st);
        self.reschedule.notify_one();
        self.fetched.notify_waiters();
    }

    pub(super) fn stop(&self) {
        if let Some(task) = lock(&self.refresher).take() {
            task.abort();
        }
    }

    pub(super) fn new(registry: RegistryConfig, configured: bool, now: Instant, first_try: Instant) -> Self {
        Entry {
            registry,
            configured,
            state: Mutex::new(State {
                token: None,
                last_error: None,
                last_refresh: None,
                failures: 0,
                failing_since: None,
                denied_in_streak: false,
                next_attempt: first_try,
                generation: 0,
                last_used: now,
                fetch_started: None,
                last_get: None,
                hung_since: None,
            }),
            fetch_lock: Arc::new(tokio::sync::Mutex::new(())),
            reschedule: Notify::new(),
            fetched: Notify::new(),
            refresher: Mutex::new(None),
        }
    }
}

/// A run of failures as entries sharing a token adopt it together.
pub(super) struct Streak {
    failures: u32,
    since: Instant,
    denied: bool,
    next_attempt: Instant,
    cause: FetchError,
}

impl State {
    /// It holds a token with more than `margin` left.
    pub(super) fn serving(&self, now: Instant, wall: SystemTime, margin: Duration) -> bool {
        self.token.as_ref().is_some_and(|t| t.fresh(now, wall, margin))
    }

    /// A `get` came within the policy's waiting window.
    pub(super) fn client_waits(&self, now: Instant, policy: &RefreshPolicy) -> bool {
        self.last_get.is_some_and(|t| now.saturating_duration_since(t) < policy.waiting_window)
    }

    /// The run of failures this entry is in, if its last fetch failed.
    pub(super) fn streak(&self) -> Option<Streak> {
        let Some(GetError::Unavailable { cause, .. }) = &self.last_error else { return None };
        Some(Streak {
            failures: self.failures,
            since: self.failing_since?,
            denied: self.denied_in_streak,
            next_attempt: self.next_attempt,
            cause: cause.clone(),
        })
    }

    /// Ends a run of failures: the next one starts the backoff afresh.
    pub(super) fn clear_failures(&mut self) {
        self.failures = 0;
        self.failing_since = None;
        self.denied_in_streak = false;
    }

    /// Counts a failure at `now` and says what its backoff depends on.
    pub(super) fn failed(&mut self, now: Instant, err: Option<&FetchError>, waiting: bool) -> Failure {
        let refusal = err.and_then(FetchError::refusal);
        self.failures += 1;
        let since = *self.failing_since.get_or_insert(now);
        let denied_before = self.denied_in_streak;
        self.denied_in_streak |= refusal == Some(Refusal::Denied);
        let lasted = now.saturating_duration_since(since);
        let by_sts = err.is_some_and(FetchError::by_sts);
        Failure { count: self.failures, refusal, waiting, lasted, denied_before, by_sts }
    }
}

impl CachedToken {
    /// Whether the token has more than `margin` left by both clocks: the
    /// monotonic one, which a skewed wall clock cannot stretch, and the wall
    /// one, which keeps counting while an instance hibernates (the monotonic
    /// clock stops then, and alone would serve a token that has expired).
    pub(super) fn fresh(&self, now: Instant, wall: SystemTime, margin: Duration) -> bool {
        self.valid_until > now + margin && self.expires_at > wall + margin
    }
}

pub(super) fn servable(
    entry: &Entry,
    st: &State,
    now: Instant,
    wall: SystemTime,
    policy: &RefreshPolicy,
) -> Option<RegistryCredentials> {
    let t = st.token.as_ref()?;
    t.fresh(now, wall, policy.safety_margin).then(|| RegistryCredentials {
        host: entry.registry.host.clone(),
        username: t.username.clone(),
        secret: t.secret.clone(),
        expires_at: t.expires_at,
    })
}

/// The outcome of the latest fetch, as a `get` should see it.
pub(super) fn latest_result(
    entry: &Entry,
    st: &State,
    now: Instant,
    wall: SystemTime,
    policy: &RefreshPolicy,
) -> Result<RegistryCredentials, GetError> {
    if let Some(creds) = servable(entry, st, now, wall, policy) {
        return Ok(creds);
    }
    Err(standing_error(st, now).unwrap_or_else(|| GetError::NoResult { registry: entry.registry.label() }))
}

/// The failure that stands for `st`, saying when the next try is if a
/// denial put it minutes away.
pub(super) fn standing_error(st: &State, now: Instant) -> Option<GetError> {
    let mut err = st.last_error.clone()?;
    if let GetError::Unavailable { cause, next_try, .. } = &mut err {
        if cause.refusal() == Some(crate::tokens::Refusal::Denied) {
            *next_try = Some(st.next_attempt.saturating_duration_since(now));
        }
    }
    Some(err)
}
