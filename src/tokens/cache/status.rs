//! A secret-free snapshot of every registry's state, for `/status`,
//! `/readyz` and `ecr-credd status`.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{lock, servable, TokenCache};
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

    /// Ready when every configured registry holds a usable token.
    pub fn ready(&self) -> bool {
        not_ready(&self.status()).next().is_none()
    }
}

/// The registries that hold readiness back: configured ones without a usable
/// token. Unlisted hosts never do (a typo in a pull must not fail a node).
/// `/readyz`, `/status`, the socket's `status` and systemd all ask this.
pub fn not_ready(registries: &[RegistryStatus]) -> impl Iterator<Item = &RegistryStatus> {
    registries.iter().filter(|s| s.configured && !s.ready)
}
