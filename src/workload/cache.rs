//! Workload tokens in memory: keyed by the exchange, the role, the
//! registry's principal, region and endpoint, and a SHA-256 of the exact
//! service-account token; one fetch per key at a time; bounded, least
//! recently used first, expired first of all.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::ExchangeKind;
use crate::config::RegistryConfig;
use crate::tokens::{Clock, FetchError, FetchedToken};
use ecr_credd_client::secret::Secret;

/// How long a failed exchange stands for the same key: requests that
/// arrive together (a deployment's pods on one node) share one call, and a
/// fixed IAM policy is seen on the kubelet's next retry.
pub(super) const FAILURE_STANDS: Duration = Duration::from_secs(5);

/// Whose token a cached one is. The token's hash, not its claims: the
/// daemon cannot verify the JWT, so two tokens with the same claims are
/// two workloads to it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct Key {
    exchange: ExchangeKind,
    role_arn: Option<String>,
    /// The registry's own role, when it is assumed from the workload's credentials.
    registry_role: Option<String>,
    region: String,
    fips: bool,
    dual_stack: bool,
    token_sha256: [u8; 32],
}

impl Key {
    /// The key of `token` asking for `registry`'s token.
    pub(super) fn new(
        exchange: ExchangeKind,
        role_arn: Option<&str>,
        assume_registry_role: bool,
        registry: &RegistryConfig,
        token: &Secret,
    ) -> Self {
        Key {
            exchange,
            role_arn: role_arn.map(str::to_owned),
            registry_role: registry.role_arn.clone().filter(|_| assume_registry_role),
            region: registry.region.clone(),
            fips: registry.fips,
            dual_stack: registry.dual_stack,
            token_sha256: Sha256::digest(token.expose().as_bytes()).into(),
        }
    }
}

#[derive(Default)]
struct Held {
    token: Option<FetchedToken>,
    failed: Option<(FetchError, SystemTime)>,
}

#[derive(Default)]
struct Slot {
    held: tokio::sync::Mutex<Held>,
    /// The cache's tick at the last use, for least-recently-used eviction.
    used: AtomicU64,
    /// When its token stops being servable (Unix seconds; 0: none yet).
    until: AtomicU64,
}

/// The bounded table of workload tokens.
pub(super) struct WorkloadCache {
    slots: Mutex<HashMap<Key, Arc<Slot>>>,
    tick: AtomicU64,
    max: AtomicUsize,
    evicted: AtomicU64,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl WorkloadCache {
    /// An empty table holding at most `max` tokens.
    pub(super) fn new(max: usize) -> Self {
        WorkloadCache {
            slots: Mutex::default(),
            tick: AtomicU64::new(0),
            max: AtomicUsize::new(max.max(1)),
            evicted: AtomicU64::new(0),
        }
    }

    /// Drops every token; the table holds at most `max` from now on.
    pub(super) fn clear(&self, max: usize) {
        crate::sync::lock(&self.slots).clear();
        self.max.store(max.max(1), Ordering::SeqCst);
    }

    /// Tokens held now, and evictions since the last call.
    pub(super) fn take_counts(&self) -> (usize, u64) {
        (crate::sync::lock(&self.slots).len(), self.evicted.swap(0, Ordering::SeqCst))
    }

    /// `key`'s token while it has more than `margin` left, else the one
    /// `fetch` gets (one fetch per key at a time); and whether it was cached.
    pub(super) async fn get<F, Fut>(
        &self,
        key: Key,
        clock: &dyn Clock,
        margin: Duration,
        fetch: F,
    ) -> (Result<FetchedToken, FetchError>, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<FetchedToken, FetchError>>,
    {
        let slot = self.slot(key, clock.wall());
        let mut held = slot.held.lock().await;
        let at = clock.wall();
        if let Some(t) = held.token.as_ref().filter(|t| t.expires_at > at + margin) {
            return (Ok(t.clone()), true);
        }
        if let Some((e, when)) = &held.failed {
            if at.duration_since(*when).unwrap_or_default() < FAILURE_STANDS {
                return (Err(e.clone()), true);
            }
        }
        let result = fetch().await;
        match &result {
            Ok(t) => {
                *held = Held { token: Some(t.clone()), failed: None };
                slot.until
                    .store(unix(t.expires_at.checked_sub(margin).unwrap_or(t.expires_at)), Ordering::SeqCst);
            }
            Err(e) => held.failed = Some((e.clone(), clock.wall())),
        }
        (result, false)
    }

    /// The slot for `key`, made room for if new.
    fn slot(&self, key: Key, now: SystemTime) -> Arc<Slot> {
        let tick = self.tick.fetch_add(1, Ordering::SeqCst);
        let mut slots = crate::sync::lock(&self.slots);
        if let Some(slot) = slots.get(&key) {
            slot.used.store(tick, Ordering::SeqCst);
            return slot.clone();
        }
        let max = self.max.load(Ordering::SeqCst);
        if slots.len() >= max {
            let now = unix(now);
            let before = slots.len();
            // Expired tokens go first (a slot still fetching has `until` 0
            // only while its first fetch runs; its waiters keep their Arc).
            slots.retain(|_, s| {
                let until = s.until.load(Ordering::SeqCst);
                until == 0 || until > now
            });
            while slots.len() >= max {
                let oldest =
                    slots.iter().min_by_key(|(_, s)| s.used.load(Ordering::SeqCst)).map(|(k, _)| k.clone());
                match oldest {
                    Some(k) => slots.remove(&k),
                    None => break,
                };
            }
            self.evicted.fetch_add((before - slots.len()) as u64, Ordering::SeqCst);
        }
        let slot = Arc::new(Slot::default());
        slot.used.store(tick, Ordering::SeqCst);
        slots.insert(key, slot.clone());
        slot
    }
}
