//! The base credentials: asked of the configured source at most one at a
//! time, within a deadline, with a hung ask left running for the next fetch
//! to wait on; kept until near expiry, or re-read (static keys).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use aws_credential_types::Credentials;
use tokio::time::Instant;

use super::{fresh, lock, unexpired, CredentialChain, Providers, BASE_DEADLINE, REREAD_STATIC};
use crate::aws::providers::{first_credentials_reporting, CredentialSource};
use crate::metrics::{Api, CallOutcome};
use crate::tokens::FetchError;

/// Base credentials, when they were had, and from which provider.
#[derive(Clone)]
pub(super) struct CachedBase {
    pub(super) creds: Credentials,
    pub(super) at: Instant,
    pub(super) name: String,
}

/// The state of asking the base source, behind `base_flight`.
pub(super) struct BaseFlight {
    /// The configured source's providers, tried in order. Built again to
    /// read static keys afresh: aws-config's profile provider keeps what it
    /// first read from the files.
    pub(super) providers: Providers,
    /// An ask that outlived its deadline. It keeps running, and the next
    /// fetch waits on it instead of starting another: a hung
    /// `credential_process` would otherwise leave one child per attempt.
    pub(super) pending: Option<PendingAsk>,
}

/// A running ask of the providers.
pub(super) struct PendingAsk {
    pub(super) task: tokio::task::JoinHandle<Answer>,
    /// The provider being asked right now, for the timeout's message.
    pub(super) asking: Arc<std::sync::Mutex<String>>,
}

/// What the source answered.
pub(super) type Answer = crate::aws::providers::Found;

impl CredentialChain {
    /// The base credentials: the instance profile's, or the configured
    /// source's. Kept until near expiry; ones without an expiry (static keys)
    /// are read again, from new providers, after a few minutes or a reload,
    /// so a rotated key is picked up. While another caller asks the source,
    /// credentials that have not yet expired are used rather than waited for.
    pub(crate) async fn base_credentials(&self) -> Result<Credentials, FetchError> {
        let still_good = |e: &CachedBase, now| match e.creds.expiry() {
            Some(_) => fresh(&e.creds, now),
            None => self.clock.now().saturating_duration_since(e.at) < REREAD_STATIC,
        };
        let cached = || lock(&self.cached).clone();
        if let Some(e) =
            cached().filter(|e| !self.reread.load(Ordering::SeqCst) && still_good(e, self.clock.wall()))
        {
            return Ok(e.creds);
        }
        let mut flight = match self.base_flight.try_lock() {
            Ok(f) => f,
            Err(_) => match cached().filter(|e| unexpired(&e.creds, self.clock.wall())) {
                Some(e) => return Ok(e.creds),
                None => self.base_flight.lock().await,
            },
        };
        let reread = self.reread.swap(false, Ordering::SeqCst);
        let now = self.clock.wall();
        let previous = cached();
        if let Some(e) = previous.as_ref().filter(|e| !reread && still_good(e, now)) {
            return Ok(e.creds.clone());
        }
        let ((result, lacked), hung) = self.ask_source(&mut flight, reread, previous.as_ref()).await;
        drop(flight);
        let imds = self.settings.credentials == CredentialSource::Instance;
        self.metrics.aws_call(
            if imds { Api::IMDS } else { Api::BaseCredentials },
            if result.is_ok() { CallOutcome::Success } else { CallOutcome::Error },
        );
        match result {
            Ok((answered, c)) => {
                let name = answered.name.clone();
                let before = lock(&self.source_used).replace(answered);
                if before.map(|a| a.name).as_deref() != Some(name.as_str()) {
                    let skipped = if lacked.is_empty() {
                        String::new()
                    } else {
                        format!(" (not: {})", lacked.join("; "))
                    };
                    tracing::info!(source = %name, "base credentials from {name}{skipped}");
                }
                tracing::debug!(access_key_id = c.access_key_id(), "base credentials from {name}");
                *lock(&self.cached) = Some(CachedBase { creds: c.clone(), at: self.clock.now(), name });
                Ok(c)
            }
            // Keep using credentials that still work while the source is away.
            Err(reason) => match previous.filter(|e| unexpired(&e.creds, now)) {
                Some(e) => {
                    let name = e.name;
                    tracing::warn!(error = %reason, "{name} unavailable; using the cached base credentials: {reason}");
                    Ok(e.creds)
                }
                None if imds => Err(FetchError::InstanceCredentials { reason, hung }),
                None => Err(FetchError::BaseCredentials {
                    source_name: self.settings.credentials.to_string(),
                    reason,
                    hung,
                }),
            },
        }
    }

    /// Asks the providers, or waits on the ask still running from before,
    /// for at most [`BASE_DEADLINE`]. An ask that outlives it keeps running,
    /// and the answer then says so (`true`).
    async fn ask_source(
        &self,
        flight: &mut BaseFlight,
        reread: bool,
        previous: Option<&CachedBase>,
    ) -> (Answer, bool) {
        // An ask left running from before may have answered long ago: keys
        // that have expired since are dropped and the source asked afresh.
        let mut late = flight.pending.is_some();
        loop {
            if flight.pending.is_none() {
                if reread || previous.is_some_and(|e| e.creds.expiry().is_none()) {
                    flight.providers = (self.build)();
                }
                let asking = Arc::new(std::sync::Mutex::new(String::new()));
                let (providers, reporter) = (flight.providers.clone(), asking.clone());
                let task =
                    tokio::spawn(async move { first_credentials_reporting(&providers, &reporter).await });
                flight.pending = Some(PendingAsk { task, asking });
            }
            let Some(pending) = flight.pending.as_mut() else {
                return ((Err("no ask of the credential source is running".into()), Vec::new()), false);
            };
            let Ok(answer) = tokio::time::timeout(BASE_DEADLINE, &mut pending.task).await else {
                let name = lock(&pending.asking).clone();
                let err = format!(
                    "{name}: no answer within {}s (still waiting on it; a hung credential_process, SSO or \
                     web identity endpoint, or proxy?)",
                    BASE_DEADLINE.as_secs()
                );
                return ((Err(err), Vec::new()), true);
            };
            flight.pending = None;
            let answer = answer
                .unwrap_or_else(|e| (Err(format!("asking the credential source failed: {e}")), Vec::new()));
            let expired = matches!(&answer.0, Ok((_, c)) if !unexpired(c, self.clock.wall()));
            if !(late && expired) {
                return (answer, false);
            }
            tracing::debug!("the credential source's late answer has expired since; asking it again");
            late = false;
        }
    }
}
