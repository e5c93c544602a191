//! A secret-free snapshot of every registry's state, for `/status`,
//! `/readyz` and `ecr-credd status`.

use std::time::{SystemTime, UNIX_EPOCH};

use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;

use super::{lock, servable, Entry, TokenCache};
use crate::tokens::TokenSource;
use ecr_credd_client::wire::RegistryStatus;

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl<S: TokenSource> TokenCache<S> {
    /// Every registry's state: configured ones in config order, then unlisted ones by host.
    pub fn status(&self) -> Vec<RegistryStatus> {
        let inner = &self.inner;
        let (now, wall) = (inner.clock.now(), inner.clock.wall());
        let entries = crate::sync::read(&inner.entries);
        let mut out: Vec<RegistryStatus> = entries
            .values()
            .map(|entry| {
                let st = lock(&entry.state);
                let r = &entry.registry;
                RegistryStatus {
                    host: r.host.clone(),
                    account: r.account.clone(),
                    region: r.region.clone(),
                    role_arn: r.role_arn.clone(),
                    configured: entry.configured,
                    ready: servable(entry, &st, now, wall, &inner.policy).is_some(),
                    expires_at: st.token.as_ref().map(|t| unix(t.expires_at)),
                    last_refresh: st.last_refresh.map(unix),
                    next_refresh: Some(unix(wall + st.next_attempt.saturating_duration_since(now))),
                    consecutive_failures: st.failures,
                    last_error: st.last_error.as_ref().map(ToString::to_string),
                }
            })
            .collect();
        drop(entries);
        let configured = self.hosts();
        let order = |s: &RegistryStatus| configured.iter().position(|h| *h == s.host).unwrap_or(usize::MAX);
        out.sort_by(|a, b| order(a).cmp(&order(b)).then_with(|| a.host.cmp(&b.host)));
        out
    }

    /// The configured registries whose refresh has stalled, each with why:
    /// its refresher task ended, its fetch has run past `stall_after`, or its
    /// refresh is that overdue with no fetch running or queued. (Unlisted
    /// hosts' refreshers end by design: see `spawn_refresher`.) A source that
    /// fails is not a stall: its fetches end and back off.
    pub fn stalled(&self) -> Vec<String> {
        let (now, limit) = (self.inner.clock.now(), self.inner.policy.stall_after);
        let entries = crate::sync::read(&self.inner.entries);
        let mut stalled: Vec<String> = entries
            .values()
            .filter(|e| e.configured)
            .filter_map(|e| {
                let host = &e.registry.host;
                if lock(&e.refresher).as_ref().is_none_or(|t| t.is_finished()) {
                    return Some(format!("{host}: its refresh loop has stopped"));
                }
                let st = lock(&e.state);
                if let Some(started) = st.fetch_started {
                    let ran = now.saturating_duration_since(started);
                    return (ran > limit).then(|| format!("{host}: a fetch has run for {}s", ran.as_secs()));
                }
                let overdue = now.saturating_duration_since(st.next_attempt);
                let idle = e.fetch_lock.try_lock().is_ok();
                (idle && overdue > limit)
                    .then(|| format!("{host}: its refresh is {}s overdue", overdue.as_secs()))
            })
            .collect();
        stalled.sort();
        stalled.extend(self.hung_with_nothing_to_lose(&entries, now));
        stalled
    }

    /// A source that hangs while no configured registry holds a token: a
    /// restart loses nothing then and may end the hang, so it counts as a
    /// stall. (While any token is held, a restart would only drop it.)
    fn hung_with_nothing_to_lose(
        &self,
        entries: &HashMap<String, Arc<Entry>>,
        now: Instant,
    ) -> Option<String> {
        let inner = &self.inner;
        let mut configured = entries.values().filter(|e| e.configured).peekable();
        configured.peek()?;
        let mut hung = None;
        for e in configured {
            let st = lock(&e.state);
            if servable(e, &st, now, inner.clock.wall(), &inner.policy).is_some() {
                return None;
            }
            if let Some(since) =
                st.hung_since.filter(|t| now.saturating_duration_since(*t) > inner.policy.hung_restart_after)
            {
                hung = Some(format!(
                    "{}: its credentials' source has given no answer for {}s and no registry holds a token",
                    e.registry.host,
                    now.saturating_duration_since(since).as_secs()
                ));
            }
        }
        hung
    }

    /// Ready when every configured registry holds a usable token.
    pub fn ready(&self) -> bool {
        all_ready(&self.status())
    }
}

/// Whether no registry holds readiness back (see [`not_ready`]).
pub fn all_ready(registries: &[RegistryStatus]) -> bool {
    not_ready(registries).next().is_none()
}

/// The registries that hold readiness back: configured ones without a usable
/// token. Unlisted hosts never do (a typo in a pull must not fail a node).
/// `/readyz`, `/status`, the socket's `status` and systemd all ask this.
pub fn not_ready(registries: &[RegistryStatus]) -> impl Iterator<Item = &RegistryStatus> {
    registries.iter().filter(|s| s.configured && !s.ready)
}
