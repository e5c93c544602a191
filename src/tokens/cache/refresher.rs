//! Fetching: one fetch per registry at a time (single-flight), its result
//! recorded with the next refresh time, and the refresher task that sleeps
//! until then.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::time::Instant;

use super::entry::CachedToken;
use super::{latest_result, lock, Entry, GetError, Inner, RegistryCredentials, State};
use crate::metrics::FetchOutcome;
use crate::tokens::timing::backoff;
use crate::tokens::{FetchError, FetchedToken, TokenSource};

/// One fetch for `entry`, shared by everyone who asks while it runs.
pub(super) async fn fetch<S: TokenSource>(
    inner: &Arc<Inner<S>>,
    entry: &Arc<Entry>,
) -> Result<RegistryCredentials, GetError> {
    let generation = lock(&entry.state).generation;
    let guard = entry.fetch_lock.clone().lock_owned().await;
    {
        let st = lock(&entry.state);
        if st.generation != generation {
            // A fetch finished while we queued: its result is ours.
            return latest_result(entry, &st, inner.clock.now(), inner.clock.wall(), &inner.policy);
        }
    }
    // The fetch runs in its own task so a caller that gives up (timeout,
    // hung-up client) does not cancel it for everyone else.
    let label = entry.registry.label();
    let (inner, entry) = (inner.clone(), entry.clone());
    let task = tokio::spawn(async move {
        // The semaphore is never closed; without a permit we fetch anyway.
        let slots = if entry.configured { &inner.fetch_slots } else { &inner.unlisted_slots };
        let slot = slots.acquire().await.ok();
        lock(&entry.state).fetch_started = Some(inner.clock.now());
        let result = guarded_fetch(&inner, &entry).await;
        drop(slot);
        let now = inner.clock.now();
        let siblings = siblings(&inner, &entry);
        // A client waiting on a sibling waits on this token too.
        let sibling_waits = siblings.iter().any(|e| e.client_waits(now, inner.clock.wall(), &inner.policy));
        let mut st = lock(&entry.state);
        record(&inner, &entry, &mut st, result, now, sibling_waits);
        drop(guard);
        let got = st.failures == 0 && st.token.is_some();
        let streak = if got { None } else { st.streak() };
        let answer = latest_result(&entry, &st, now, inner.clock.wall(), &inner.policy);
        drop(st);
        if got {
            for e in &siblings {
                e.wake(now);
            }
        } else if let Some(streak) = streak {
            let (wall, margin) = (inner.clock.wall(), inner.policy.safety_margin);
            for e in &siblings {
                e.follow(&streak, now, wall, margin);
            }
        }
        answer
    });
    match task.await {
        Ok(result) => result,
        // Only runtime shutdown cancels the task.
        Err(_) => Err(GetError::NoResult { registry: label }),
    }
}

/// The other entries a token fetched for `entry` serves: they are ready
/// together when it gets one, rather than each at the end of its own
/// backoff, and back off together when it fails.
fn siblings<S: TokenSource>(inner: &Inner<S>, entry: &Entry) -> Vec<Arc<Entry>> {
    crate::sync::read(&inner.entries)
        .values()
        .filter(|e| {
            !std::ptr::eq(e.as_ref(), entry) && inner.source.shares_token(&entry.registry, &e.registry)
        })
        .cloned()
        .collect()
}

/// The source's fetch, bounded by the policy's deadline and run in a task of
/// its own, so a panic in it is a failed fetch (backed off like any other)
/// rather than a refresher that retries at once, forever.
async fn guarded_fetch<S: TokenSource>(
    inner: &Arc<Inner<S>>,
    entry: &Arc<Entry>,
) -> Result<FetchedToken, FetchError> {
    let (task_inner, task_entry) = (inner.clone(), entry.clone());
    let mut task = tokio::spawn(async move { task_inner.source.fetch(&task_entry.registry).await });
    let deadline = inner.policy.fetch_deadline;
    match tokio::time::timeout(deadline, &mut task).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => {
            let reason = match e.try_into_panic() {
                Ok(payload) => payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into()),
                Err(e) => e.to_string(),
            };
            tracing::error!(registry = %entry.registry.host, "the token fetch for {} panicked (a bug; please report it): {reason}", entry.registry.host);
            Err(FetchError::Internal { reason })
        }
        Err(_) => {
            let waiting_on = inner.source.waiting_on(&entry.registry.host);
            task.abort();
            Err(FetchError::Unfinished { waited: deadline, waiting_on })
        }
    }
}

/// Stores a fetch's result in `st` and wakes the refresher to reschedule.
fn record<S>(
    inner: &Inner<S>,
    entry: &Entry,
    st: &mut State,
    result: Result<FetchedToken, FetchError>,
    now: Instant,
    sibling_waits: bool,
) {
    st.generation += 1;
    st.fetch_started = None;
    match &result {
        Err(e) if e.hung() => st.hung_since = st.hung_since.or(Some(now)),
        _ => st.hung_since = None,
    }
    match result {
        Ok(token) => {
            let stated = token.expires_at.duration_since(inner.clock.wall()).unwrap_or(Duration::ZERO);
            let lifetime = stated.min(inner.policy.max_lifetime);
            if lifetime <= inner.policy.safety_margin {
                too_short(inner, entry, st, lifetime, now);
            } else {
                store(inner, entry, st, token, lifetime, now);
            }
        }
        Err(err) => failed(inner, entry, st, err, now, sibling_waits),
    }
    entry.reschedule.notify_one();
    entry.fetched.notify_waiters();
}

/// A token that is born expired (or a clock far ahead) must not trigger a
/// refresh loop: it counts as a failure and backs off.
fn too_short<S>(inner: &Inner<S>, entry: &Entry, st: &mut State, lifetime: Duration, now: Instant) {
    let policy = &inner.policy;
    let failure = st.failed(now, None, false);
    st.next_attempt = now + backoff(policy, failure);
    st.last_error = Some(GetError::TooShort {
        registry: entry.registry.label(),
        left: lifetime,
        margin: policy.safety_margin,
    });
    inner.metrics.fetch(&entry.registry.host, FetchOutcome::Failed { step: "token_lifetime" });
    tracing::warn!(
        registry = %entry.registry.host,
        left_secs = lifetime.as_secs(),
        "token from ECR is too close to expiry to serve, for {}: {}s left",
        entry.registry.host,
        lifetime.as_secs()
    );
}

/// Keeps a good token and schedules its refresh at about `refresh_fraction`
/// of its life, scattered by the jitter, never later than the safety margin.
fn store<S>(
    inner: &Inner<S>,
    entry: &Entry,
    st: &mut State,
    token: FetchedToken,
    lifetime: Duration,
    now: Instant,
) {
    let policy = &inner.policy;
    let jitter = rand::thread_rng().gen_range(-policy.jitter..=policy.jitter);
    let refresh_in = lifetime.mul_f64(policy.refresh_fraction * (1.0 + jitter));
    let latest = lifetime - policy.safety_margin;
    st.next_attempt = now + refresh_in.min(latest).max(policy.backoff_base);
    st.clear_failures();
    st.last_error = None;
    let wall = inner.clock.wall();
    st.last_refresh = Some(wall);
    let expires_at = wall + lifetime;
    inner.metrics.fetch(&entry.registry.host, FetchOutcome::Success);
    let unix = expires_at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    inner.metrics.token_expiry(&entry.registry.host, unix);
    st.token = Some(CachedToken {
        username: token.username,
        secret: token.secret,
        valid_until: now + lifetime,
        expires_at,
    });
    let refresh_in = (st.next_attempt - now).as_secs();
    tracing::info!(
        registry = %entry.registry.host,
        lifetime_secs = lifetime.as_secs(),
        refresh_in_secs = refresh_in,
        "token refreshed for {}: valid {}s, next refresh in {refresh_in}s",
        entry.registry.host,
        lifetime.as_secs()
    );
}

/// A failed fetch: back off, keep serving a token that is still good.
fn failed<S>(
    inner: &Inner<S>,
    entry: &Entry,
    st: &mut State,
    err: FetchError,
    now: Instant,
    sibling_waits: bool,
) {
    let still_valid = st.serving(now, inner.clock.wall(), inner.policy.safety_margin);
    let waiting = !still_valid && (sibling_waits || st.client_waits(now, &inner.policy));
    let failure = st.failed(now, Some(&err), waiting);
    st.next_attempt = now + backoff(&inner.policy, failure);
    if st.denied_in_streak {
        if let Some(role) = err.role_arn() {
            st.next_attempt = role_round(inner, role, st.next_attempt, now);
        }
    }
    // A token still served is retried before it stops being served, however
    // long the backoff: a lone node throttled near the end of its token's
    // life must not leave its clients without one.
    if let Some(t) = st.token.as_ref().filter(|_| still_valid) {
        let stale_at = t.valid_until.checked_sub(inner.policy.safety_margin).unwrap_or(now);
        st.next_attempt = st.next_attempt.min(stale_at.max(now + inner.policy.backoff_base / 4));
    }
    // The journal's default view shows only the message: it must name the
    // registry, the failing step and the cause by itself.
    let retry_in = st.next_attempt - now;
    tracing::warn!(
        registry = %entry.registry.host,
        failures = st.failures,
        retry_in_ms = retry_in.as_millis() as u64,
        serving_previous = still_valid,
        error = %err,
        "token fetch failed for {}: {err} (retry in {:.1}s{})",
        entry.registry.host,
        retry_in.as_secs_f64(),
        if still_valid { "; still serving the previous token" } else { "" }
    );
    inner.metrics.fetch(&entry.registry.host, FetchOutcome::Failed { step: err.step() });
    st.last_error =
        Some(GetError::Unavailable { registry: entry.registry.label(), cause: err, next_try: None });
}

/// The next try of a denied `role`: the round its entries already agreed
/// on, if it is still ahead, else `own`, which becomes theirs.
fn role_round<S>(inner: &Inner<S>, role: &str, own: Instant, now: Instant) -> Instant {
    let mut rounds = lock(&inner.role_rounds);
    match rounds.get(role) {
        Some(&at) if at > now => at,
        _ => {
            rounds.insert(role.to_owned(), own);
            own
        }
    }
}

/// Whether an unlisted host's refresher goes on. One nobody asked for in
/// `unlisted_idle` is dropped from the table; one that never got a token
/// (a made-up account or region) is not retried in the background, only
/// when asked again, so junk hosts cannot keep calling AWS forever.
fn keep_refreshing_unlisted<S: TokenSource>(inner: &Arc<Inner<S>>, entry: &Arc<Entry>) -> bool {
    let (idle, never_served) = {
        let st = lock(&entry.state);
        (
            inner.clock.now().saturating_duration_since(st.last_used),
            st.last_refresh.is_none() && st.failures > 0,
        )
    };
    if idle >= inner.policy.unlisted_idle {
        let mut entries = crate::sync::write(&inner.entries);
        if entries.get(&entry.registry.host).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            entries.remove(&entry.registry.host);
            inner.metrics.forget(&entry.registry.host);
            tracing::info!(registry = %entry.registry.host, "unlisted registry {} idle for {}s; dropped", entry.registry.host, idle.as_secs());
        }
        return false;
    }
    !never_served
}

pub(super) fn spawn_refresher<S: TokenSource>(inner: &Arc<Inner<S>>, entry: Arc<Entry>) {
    let (task_inner, task_entry) = (inner.clone(), entry.clone());
    let task = tokio::spawn(async move {
        let (inner, entry) = (task_inner, task_entry);
        loop {
            let next = lock(&entry.state).next_attempt;
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = entry.reschedule.notified() => continue,
            }
            if !entry.configured && !keep_refreshing_unlisted(&inner, &entry) {
                return;
            }
            if inner.clock.now() >= lock(&entry.state).next_attempt {
                let _ = fetch(&inner, &entry).await;
            }
        }
    });
    if let Some(old) = lock(&entry.refresher).replace(task) {
        old.abort();
    }
}
