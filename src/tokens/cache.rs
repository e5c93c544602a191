//! Per-registry tokens in memory: fetched at start-up, refreshed in the
//! background at about half their lifetime, fetched on demand (single-flight)
//! when a `get` finds none usable. Time comes from an injected [`Clock`].
//!
//! # Locks and tasks
//!
//! - `Inner::entries` maps every host served (configured and unlisted) to
//!   its [`Entry`]. A `get` takes its read lock only to clone one `Arc`; the
//!   write lock is held to add an unlisted host or apply a reload, never
//!   across an await.
//! - `Inner::configured_hosts` is the config's host order, beside `entries`
//!   because a map has none: `list`, `status` and readiness follow it, and a
//!   reload swaps it in one write.
//! - Each entry's `state` is a std mutex held only to read or update fields,
//!   never across an await, so a `get` for a cached token is a lock, a clone
//!   and an unlock.
//! - `fetch_lock` makes fetches single-flight per registry: the first caller
//!   fetches; others wait on the lock, then see `generation` moved on and take
//!   that fetch's result instead of starting their own. The fetch runs in its
//!   own task and owns the lock guard, so a caller that gives up does not
//!   cancel it for the others.
//! - `fetch_slots` caps fetches across registries, so a reload of hundreds
//!   does not open hundreds of AWS connections at once.
//! - One refresher task per entry sleeps until `next_attempt`; `reschedule`
//!   wakes it early when a fetch (on demand or its own) moves that time.
//!   `refresher` holds its handle, to abort it when the entry is replaced or
//!   dropped and for `/healthz` to see that it still runs.

#[cfg(test)]
mod backoff_tests;
mod entry;
mod error;
mod refresher;
#[cfg(test)]
mod share_tests;
#[cfg(test)]
mod stall_tests;
mod status;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod throttle_tests;
#[cfg(test)]
mod unlisted_tests;

use entry::{latest_result, servable, standing_error, Entry, State};
pub use error::GetError;
use refresher::{fetch, spawn_refresher};
pub use status::{all_ready, not_ready};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use super::source::TokenSource;
use super::timing::{Clock, RefreshPolicy};
use crate::config::RegistryConfig;
use crate::metrics::Metrics;
use ecr_credd_client::registry::{normalize_host, parse_ecr_host};
use ecr_credd_client::secret::Secret;

/// RegistryCredentials handed to a client.
#[derive(Debug, Clone)]
pub struct RegistryCredentials {
    /// The host they are for.
    pub host: String,
    /// Always `AWS` for ECR.
    pub username: String,
    /// The registry password (the Docker protocol's `Secret`).
    pub secret: Secret,
    /// Expiry on the wall clock, for display.
    pub expires_at: SystemTime,
}

/// `host` without a `:port` suffix.
fn without_port(host: &str) -> &str {
    host.rsplit_once(':')
        .filter(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(name, _)| name)
}

/// What the cache's handle, its refreshers and its fetch tasks share.
struct Inner<S> {
    source: S,
    clock: Arc<dyn Clock>,
    policy: RefreshPolicy,
    metrics: Arc<Metrics>,
    entries: RwLock<HashMap<String, Arc<Entry>>>,
    configured_hosts: RwLock<Vec<String>>,
    serve_unlisted: AtomicBool,
    fetch_slots: tokio::sync::Semaphore,
    /// Unlisted hosts fetch through these, so made-up ones cannot take the
    /// slots configured registries need.
    unlisted_slots: tokio::sync::Semaphore,
    /// When each denied role is next tried: entries on it that no token
    /// shares (registries in other regions) retry in the same round, so the
    /// chain answers all but one from its memory of the failure.
    role_rounds: std::sync::Mutex<HashMap<String, tokio::time::Instant>>,
}

/// What a reload changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconfigured {
    /// Registries whose config and token were kept.
    pub kept: usize,
    /// Registries added or changed (fetched afresh).
    pub added: usize,
    /// Registries dropped.
    pub removed: usize,
}

/// The token cache. Dropping it stops its background refreshes.
pub struct TokenCache<S: TokenSource> {
    inner: Arc<Inner<S>>,
}

use crate::sync::lock;

impl<S: TokenSource> TokenCache<S> {
    /// A cache for `registries`; call [`TokenCache::start`] to begin fetching.
    pub fn new(
        registries: &[RegistryConfig],
        serve_unlisted: bool,
        source: S,
        clock: Arc<dyn Clock>,
        policy: RefreshPolicy,
        metrics: Arc<Metrics>,
    ) -> Self {
        let now = clock.now();
        let entries = registries
            .iter()
            .map(|r| (r.host.clone(), Arc::new(Entry::new(r.clone(), true, now, policy.first_try(now)))))
            .collect();
        TokenCache {
            inner: Arc::new(Inner {
                source,
                clock,
                metrics,
                entries: RwLock::new(entries),
                configured_hosts: RwLock::new(registries.iter().map(|r| r.host.clone()).collect()),
                serve_unlisted: AtomicBool::new(serve_unlisted),
                fetch_slots: tokio::sync::Semaphore::new(policy.max_concurrent_fetches.max(1)),
                unlisted_slots: tokio::sync::Semaphore::new((policy.max_concurrent_fetches / 4).max(1)),
                role_rounds: std::sync::Mutex::default(),
                policy,
            }),
        }
    }

    /// Starts one background refresher per configured registry; each fetches
    /// at once, so every token is requested at start-up.
    pub fn start(&self) {
        let entries: Vec<_> = crate::sync::read(&self.inner.entries).values().cloned().collect();
        for entry in entries {
            spawn_refresher(&self.inner, entry);
        }
    }

    /// The configured hosts, in config order.
    pub fn hosts(&self) -> Vec<String> {
        crate::sync::read(&self.inner.configured_hosts).clone()
    }

    /// The principal tokens are fetched as, when known.
    pub fn identity(&self) -> Option<String> {
        self.inner.source.identity()
    }

    /// Looks the principal up if nobody has yet, waiting at most `wait`.
    pub async fn want_identity(&self, wait: Duration) {
        self.inner.source.want_identity(wait).await;
    }

    /// Which source gave the base credentials last, when known.
    pub fn credential_source(&self) -> Option<String> {
        self.inner.source.credential_source()
    }

    /// The metrics this cache reports into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Applies a reloaded config: registries whose settings did not change
    /// keep their tokens; new or changed ones are fetched; removed ones stop.
    /// The source hears of it too, so its next fetch reads credentials afresh.
    pub fn reconfigure(&self, registries: &[RegistryConfig], serve_unlisted: bool) -> Reconfigured {
        let inner = &self.inner;
        inner.source.reload();
        lock(&inner.role_rounds).clear();
        let mut summary = Reconfigured::default();
        let mut entries = crate::sync::write(&inner.entries);
        let mut next: HashMap<String, Arc<Entry>> = HashMap::with_capacity(entries.len());
        for r in registries {
            match entries.remove(&r.host) {
                Some(e) if e.configured && e.registry == *r => {
                    summary.kept += 1;
                    e.retry_now(inner.clock.now());
                    next.insert(r.host.clone(), e);
                }
                old => {
                    if let Some(old) = old {
                        old.stop();
                    }
                    summary.added += 1;
                    let now = inner.clock.now();
                    let e = Arc::new(Entry::new(r.clone(), true, now, inner.policy.first_try(now)));
                    spawn_refresher(inner, e.clone());
                    next.insert(r.host.clone(), e);
                }
            }
        }
        for (host, e) in entries.drain() {
            if e.configured || !serve_unlisted {
                e.stop();
                inner.metrics.forget(&host);
                summary.removed += 1;
            } else {
                next.insert(host, e);
            }
        }
        *entries = next;
        *crate::sync::write(&inner.configured_hosts) = registries.iter().map(|r| r.host.clone()).collect();
        inner.serve_unlisted.store(serve_unlisted, Ordering::SeqCst);
        summary
    }

    /// RegistryCredentials for `host` (any form a client sends). It waits,
    /// up to the policy's `get_wait` all told, for a fetch (its own or the
    /// refresher's) and, after throttling or an overload, for the retry or
    /// a sibling's token, never asking AWS sooner than the backoff would.
    pub async fn get(&self, host: &str) -> Result<RegistryCredentials, GetError> {
        let host = normalize_host(host)?;
        let entry = self.entry(&host)?;
        // A token held is the common case: served without arming a timer.
        if let Some(creds) = self.cached(&entry) {
            return Ok(creds);
        }
        let inner = &self.inner;
        let wait = inner.policy.get_wait;
        match tokio::time::timeout(wait, self.serve(&entry)).await {
            Ok(result) => result,
            Err(_) => {
                let st = lock(&entry.state);
                let standing = st.fetch_started.is_none().then(|| standing_error(&st, inner.clock.now()));
                Err(standing.flatten().unwrap_or_else(|| GetError::Timeout {
                    registry: entry.registry.label(),
                    waited: wait,
                    waiting_on: inner.source.waiting_on(&entry.registry.host),
                }))
            }
        }
    }

    /// `get`'s answer: the token, or a failure that is not throttling or an
    /// overload. The caller bounds the wait.
    async fn serve(&self, entry: &Arc<Entry>) -> Result<RegistryCredentials, GetError> {
        let inner = &self.inner;
        loop {
            // Made before the state is read, so a fetch ending in between is not missed.
            let fetched = entry.fetched.notified();
            if let Some(creds) = self.cached(entry) {
                return Ok(creds);
            }
            let standing = {
                let st = lock(&entry.state);
                let now = inner.clock.now();
                // Within a backoff window the last failure still stands; asking
                // AWS again now would turn a fleet's retries into a stampede.
                let backing_off = st.failures > 0 && now < st.next_attempt;
                backing_off.then(|| standing_error(&st, now)).flatten()
            };
            // A retry, or a sibling's fetch that wakes this entry, may
            // come before the caller's bound; the answer waits for it.
            if let Some(err) = standing {
                if !err.says_later() {
                    return Err(err);
                }
                fetched.await;
                continue;
            }
            let result = self.fetch_now(entry).await;
            let backing_off = lock(&entry.state).next_attempt > inner.clock.now();
            match result {
                Err(e) if e.says_later() && backing_off => continue,
                result => return result,
            }
        }
    }

    /// The token `entry` holds, if it may be served; notes the `get` either way.
    fn cached(&self, entry: &Entry) -> Option<RegistryCredentials> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let mut st = lock(&entry.state);
        st.last_used = now;
        st.last_get = Some(now);
        servable(entry, &st, now, inner.clock.wall(), &inner.policy)
    }

    /// The on-demand fetch a `get` makes (or joins).
    async fn fetch_now(&self, entry: &Arc<Entry>) -> Result<RegistryCredentials, GetError> {
        let inner = &self.inner;
        let result = fetch(inner, entry).await;
        // An unlisted host whose background refresh stopped (it had never got
        // a token) is refreshed again once a get shows it is real.
        if result.is_ok()
            && !entry.configured
            && lock(&entry.refresher).as_ref().is_none_or(|t| t.is_finished())
        {
            spawn_refresher(inner, entry.clone());
        }
        result
    }

    /// The registry `host` names, configured or (when served) unlisted,
    /// without fetching or adding anything.
    pub fn registry(&self, host: &str) -> Result<RegistryConfig, GetError> {
        let host = normalize_host(host)?;
        if let Some(e) = crate::sync::read(&self.inner.entries).get(&host) {
            return Ok(e.registry.clone());
        }
        let not_found = || GetError::NotFound { host: host.clone() };
        if !self.inner.serve_unlisted.load(Ordering::SeqCst) {
            return Err(not_found());
        }
        RegistryConfig::unlisted(without_port(&host)).ok_or_else(not_found)
    }

    /// The source tokens come from.
    pub fn source(&self) -> &S {
        &self.inner.source
    }

    fn entry(&self, host: &str) -> Result<Arc<Entry>, GetError> {
        let inner = &self.inner;
        if let Some(e) = crate::sync::read(&inner.entries).get(host) {
            return Ok(e.clone());
        }
        let not_found = || GetError::NotFound { host: host.to_owned() };
        if !inner.serve_unlisted.load(Ordering::SeqCst) || parse_ecr_host(host).is_none() {
            return Err(not_found());
        }
        // One entry per ECR host whatever the port: a port names no other
        // registry, and each variant would hold a token and a table slot.
        let host = without_port(host);
        let registry = RegistryConfig::unlisted(host).ok_or_else(not_found)?;
        let mut entries = crate::sync::write(&inner.entries);
        if let Some(e) = entries.get(host) {
            return Ok(e.clone());
        }
        if entries.values().filter(|e| !e.configured).count() >= inner.policy.max_unlisted {
            // Full, perhaps of made-up accounts and regions: hosts that never
            // got a token make room before anyone is refused.
            let dead: Vec<String> = entries
                .iter()
                .filter(|(_, e)| !e.configured && lock(&e.state).last_refresh.is_none())
                .map(|(h, _)| h.clone())
                .collect();
            if dead.is_empty() {
                return Err(GetError::TooManyUnlisted { host: host.to_owned() });
            }
            for h in dead {
                if let Some(e) = entries.remove(&h) {
                    e.stop();
                    inner.metrics.forget(&h);
                }
            }
        }
        let now = inner.clock.now();
        let entry = Arc::new(Entry::new(registry, false, now, now));
        entries.insert(host.to_owned(), entry.clone());
        spawn_refresher(inner, entry.clone());
        Ok(entry)
    }
}

impl<S: TokenSource> Drop for TokenCache<S> {
    fn drop(&mut self) {
        for e in crate::sync::read(&self.inner.entries).values() {
            e.stop();
        }
    }
}
