//! Why a `get` has no credentials, in words that name the registry, the
//! failing step and when the next try is.

use std::time::Duration;

use thiserror::Error;

use crate::tokens::source::{FetchError, Refusal};
use ecr_credd_client::registry::HostError;

/// Why a `get` has no credentials.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum GetError {
    /// The host is not configured and not an ECR name we may serve.
    #[error("{host} is not a registry ecr-credd serves")]
    NotFound {
        /// The host asked for.
        host: String,
    },
    /// The request did not contain a usable host.
    #[error(transparent)]
    BadHost(#[from] HostError),
    /// A registry we serve, but fetching its token failed.
    #[error("{registry}: {cause}{}", next_try_text(.next_try))]
    Unavailable {
        /// The registry host.
        registry: String,
        /// The failing step.
        cause: FetchError,
        /// After a denial: how long until the next try (which is minutes away).
        next_try: Option<Duration>,
    },
    /// The token fetched is too close to expiry to hand out.
    #[error("{registry}: the token from ECR expires in {left:?}, within the {margin:?} safety margin; check this machine's clock")]
    TooShort {
        /// The registry host.
        registry: String,
        /// Time it had left.
        left: Duration,
        /// The configured safety margin.
        margin: Duration,
    },
    /// The on-demand fetch did not finish in time (it keeps running).
    #[error("{registry}: no token yet; the fetch from AWS did not finish within {waited:?}{}", on(.waiting_on))]
    Timeout {
        /// The registry host.
        registry: String,
        /// How long we waited.
        waited: Duration,
        /// The step the fetch was still waiting on, when the source knows.
        waiting_on: Option<String>,
    },
    /// The fetch ended with neither a token nor a failure to report: the
    /// runtime is shutting down, or the token was dropped as it arrived.
    #[error("{registry}: no token yet; the fetch ended without a result (is the daemon stopping?)")]
    NoResult {
        /// The registry host.
        registry: String,
    },
    /// Too many unlisted ECR hosts are tracked already.
    #[error("{host}: too many unlisted ECR registries in use; list this one in the config")]
    TooManyUnlisted {
        /// The host asked for.
        host: String,
    },
}

fn next_try_text(wait: &Option<Duration>) -> String {
    wait.map(|d| {
        let s = d.as_secs();
        format!("; next try in {}m{:02}s, or at once after: systemctl reload ecr-credd", s / 60, s % 60)
    })
    .unwrap_or_default()
}

fn on(step: &Option<String>) -> String {
    step.as_ref().map(|s| format!("; still waiting on {s}")).unwrap_or_default()
}

impl GetError {
    /// The quota or the service said "later" (throttling, a timeout, a
    /// 5xx): a retry due soon may well succeed, so a `get` may wait for it
    /// rather than send its client to the next retry of its own.
    pub(super) fn says_later(&self) -> bool {
        matches!(self, GetError::Unavailable { cause, .. }
            if matches!(cause.refusal(), Some(Refusal::Throttled | Refusal::Overloaded)))
    }
}
