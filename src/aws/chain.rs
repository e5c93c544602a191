//! The credential chain: base credentials from the configured source (the
//! instance profile over IMDSv2 by default; the SDK chain, env, a profile,
//! web identity or the container endpoint when `[aws] credentials` says so),
//! then `sts:AssumeRole` per distinct role, each cached until shortly before
//! expiry, on the injected clock.

mod base;
#[cfg(test)]
mod tests;

use base::{BaseFlight, CachedBase};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use aws_config::provider_config::ProviderConfig;
use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_sdk_sts::config::Region;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::sdk_error::describe_sdk_error;
use super::sts::{self, RoleSession};
use crate::aws::providers::{Answered, CredentialSource, Provider, ProviderKind};
use crate::config::RegistryConfig;
use crate::metrics::{Api, CallOutcome, Metrics};
use crate::tokens::{Clock, FetchError, Refusal, SystemClock};

/// Credentials are renewed when they have less than this left.
const RENEW_BEFORE: Duration = Duration::from_secs(10 * 60);
/// Base credentials without an expiry (static keys) are read again this often.
const REREAD_STATIC: Duration = Duration::from_secs(5 * 60);
/// The longest one ask of the base source may take. Shorter than a `get`'s
/// wait (5 s), so a client is told which source hung, not only that time ran
/// out; a slow source's late answer is still used, by the next attempt,
/// unless it has expired by then.
pub(crate) const BASE_DEADLINE: Duration = Duration::from_secs(4);
/// The STS and ECR clients' whole-operation timeout (see `ecr::sdk_config`).
pub(crate) const STS_DEADLINE: Duration = Duration::from_secs(10);

use crate::sync::lock;

/// Settings for the providers other than IMDS: the proxy-aware HTTP client,
/// and a region for the STS call web identity makes (`AWS_REGION`, else us-east-1).
pub(crate) fn other_providers(base: &SdkConfig) -> ProviderConfig {
    let region = env_region().unwrap_or_else(|| "us-east-1".into());
    // The STS and SSO clients these providers build get whole timeouts, not
    // only the default connect timeout: a stalled endpoint must fail, not hang.
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .read_timeout(BASE_DEADLINE)
        .operation_attempt_timeout(BASE_DEADLINE)
        .operation_timeout(BASE_DEADLINE)
        .build();
    let config =
        ProviderConfig::default().with_region(Some(Region::new(region))).with_timeout_config(timeouts);
    match base.http_client() {
        Some(client) => config.with_http_client(client),
        None => config,
    }
}

/// `[aws]` settings that apply to every registry (a restart applies changes).
#[derive(Debug, Clone, Default)]
pub(crate) struct AwsSettings {
    /// FIPS endpoints for every STS and ECR call.
    pub use_fips: bool,
    /// Where AssumeRole is called unless a registry names its own region.
    pub sts_region: Option<String>,
    /// Where the base credentials come from.
    pub credentials: CredentialSource,
}

/// `AWS_REGION`, else `AWS_DEFAULT_REGION`, when set and not empty.
pub(crate) fn env_region() -> Option<String> {
    ["AWS_REGION", "AWS_DEFAULT_REGION"].iter().find_map(|k| std::env::var(k).ok().filter(|r| !r.is_empty()))
}

impl AwsSettings {
    /// Where `registry`'s STS calls go: its `sts_region`, else `[aws]
    /// sts_region`, else `instance_region` (a private subnet often reaches STS
    /// only through an interface endpoint in its own region), else
    /// `AWS_REGION`/`AWS_DEFAULT_REGION`, else the registry's region; and
    /// whether through FIPS endpoints. The daemon and doctor both ask this.
    pub(crate) fn sts_target(
        &self,
        registry: &RegistryConfig,
        instance_region: Option<&str>,
    ) -> (String, bool) {
        let region = registry
            .sts_region
            .clone()
            .or_else(|| self.sts_region.clone())
            .or_else(|| instance_region.map(str::to_owned))
            .or_else(env_region)
            .unwrap_or_else(|| registry.region.clone());
        (region, registry.fips || self.use_fips)
    }

    /// The `[aws]` settings of `config`.
    pub(crate) fn from_config(config: &crate::config::Config) -> Self {
        AwsSettings {
            use_fips: config.use_fips,
            sts_region: config.sts_region.clone(),
            credentials: config.credentials.clone(),
        }
    }
}

/// Instance credentials and assumed-role credentials, cached.
pub(crate) struct CredentialChain {
    base: SdkConfig,
    settings: AwsSettings,
    /// The instance's own region from IMDS, once known.
    instance_region: Mutex<Option<String>>,
    /// Set by a reload: the next fetch reads the base credentials afresh.
    reread: AtomicBool,
    /// The base credentials last had, read without waiting for a fetch.
    cached: std::sync::Mutex<Option<CachedBase>>,
    /// Held while the base source is asked: one ask at a time.
    base_flight: Mutex<BaseFlight>,
    /// Builds the configured source's providers (a seam for tests).
    build: Box<dyn Fn() -> Providers + Send + Sync>,
    /// The provider that gave them last, for `/status` and the log.
    source_used: std::sync::Mutex<Option<Answered>>,
    /// One slot per role session: registries sharing a role share one
    /// AssumeRole, and a role whose STS hangs holds up no other role.
    roles: std::sync::Mutex<HashMap<RoleSession, Arc<RoleSlot>>>,
    /// What each registry's fetch is waiting on now, for a `get` that gives up.
    waiting: std::sync::Mutex<HashMap<String, (String, Instant)>>,
    identity: Arc<OnceLock<String>>,
    identity_asked: AtomicBool,
    /// Where and with what the identity would be asked, once a fetch has
    /// had base credentials: the lookup waits until someone wants it.
    identity_target: std::sync::Mutex<Option<((String, bool), Credentials)>>,
    metrics: Arc<Metrics>,
    /// Renewal, re-reads and expiry are judged on this clock (the token
    /// cache's kind), so tests can move time.
    clock: Arc<dyn Clock>,
}

/// One role session's credentials and the lock that makes its AssumeRole single-flight.
#[derive(Default)]
struct RoleSlot {
    creds: std::sync::Mutex<Option<Credentials>>,
    flight: Mutex<()>,
    /// The last AssumeRole failure and until when it stands for every
    /// registry on the role, so R registries cost one STS call per round.
    failure: std::sync::Mutex<Option<(FetchError, Instant)>>,
}

/// How long a failed AssumeRole stands for the other registries on its role:
/// no longer than the shortest backoff that follows it (a minute after a
/// denial, a quarter second after anything else), so an entry's own retry is
/// never answered from memory, while registries failing together share a
/// call (the token cache puts a denied role's registries in one round).
pub(super) fn remember_failure_for(refusal: Option<Refusal>) -> Duration {
    match refusal {
        Some(Refusal::Denied) => Duration::from_secs(60),
        _ => Duration::from_millis(250),
    }
}

/// Named credential providers, tried in order.
pub(crate) type Providers = Vec<Provider>;

fn build_providers(base: &SdkConfig, settings: &AwsSettings) -> Providers {
    settings.credentials.providers(&crate::aws::http::imds_provider_config(), &other_providers(base))
}

fn fresh(creds: &Credentials, now: SystemTime) -> bool {
    creds.expiry().is_none_or(|exp| exp > now + RENEW_BEFORE)
}

/// Not yet expired (it may be due for renewal).
fn unexpired(creds: &Credentials, now: SystemTime) -> bool {
    creds.expiry().is_none_or(|exp| exp > now)
}

impl CredentialChain {
    /// A chain whose AWS clients are built from `base` (endpoints, timeouts, retries).
    pub(crate) fn new(base: SdkConfig, settings: AwsSettings, metrics: Arc<Metrics>) -> Self {
        let (b, s) = (base.clone(), settings.clone());
        let build = Box::new(move || build_providers(&b, &s));
        Self::with_providers(base, settings, metrics, build, Arc::new(SystemClock))
    }

    /// A chain whose base credentials come from the providers `build` makes.
    pub(crate) fn with_providers(
        base: SdkConfig,
        settings: AwsSettings,
        metrics: Arc<Metrics>,
        build: Box<dyn Fn() -> Providers + Send + Sync>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        CredentialChain {
            reread: AtomicBool::new(false),
            base,
            settings,
            instance_region: Mutex::new(None),
            cached: std::sync::Mutex::new(None),
            base_flight: Mutex::new(BaseFlight { providers: build(), pending: None }),
            build,
            source_used: std::sync::Mutex::new(None),
            roles: std::sync::Mutex::new(HashMap::new()),
            waiting: std::sync::Mutex::new(HashMap::new()),
            identity: Arc::new(OnceLock::new()),
            identity_asked: AtomicBool::new(false),
            identity_target: std::sync::Mutex::new(None),
            metrics,
            clock,
        }
    }

    /// The instance principal's ARN, once `sts:GetCallerIdentity` has told us.
    pub(crate) fn identity(&self) -> Option<String> {
        self.identity.get().cloned()
    }

    /// Where `registry`'s STS calls go (see [`AwsSettings::sts_target`]).
    pub(crate) async fn sts_target(&self, registry: &RegistryConfig) -> (String, bool) {
        // IMDS is asked only when no region is configured, and only when it
        // gave the credentials: pods and tasks on other sources may not reach
        // IMDS, and AWS_REGION is theirs.
        let configured = registry.sts_region.is_some() || self.settings.sts_region.is_some();
        let from_imds = lock(&self.source_used).as_ref().is_some_and(|a| a.kind == ProviderKind::Imds);
        let instance = if configured { None } else { self.instance_region(from_imds).await };
        self.settings.sts_target(registry, instance.as_deref())
    }

    /// The instance's region from IMDS (placement/region), asked until known
    /// when `ask` (the base credentials came from IMDS).
    async fn instance_region(&self, ask: bool) -> Option<String> {
        let mut known = self.instance_region.lock().await;
        if known.is_none() && ask {
            let provider = aws_config::imds::region::ImdsRegionProvider::builder()
                .configure(&crate::aws::http::imds_provider_config())
                .build();
            *known = tokio::time::timeout(Duration::from_secs(2), provider.region())
                .await
                .ok()
                .flatten()
                .map(|r| r.as_ref().to_owned());
        }
        known.clone()
    }

    /// Notes where the instance identity can be asked, for [`Self::want_identity`]:
    /// a VPC with an ECR endpoint but no route to STS must still get tokens,
    /// so the fetch never waits for it, and a failure is not retried.
    fn learn_identity(&self, target: &(String, bool), instance: &Credentials) {
        if self.identity_asked.load(Ordering::SeqCst) {
            return;
        }
        *lock(&self.identity_target) = Some((target.clone(), instance.clone()));
    }

    /// Looks the identity up (once, `sts:GetCallerIdentity`) now that
    /// something wants it, waiting for the answer at most `wait`. Deferred
    /// until asked so that a booting fleet does not double its STS calls.
    pub(crate) async fn want_identity(&self, wait: Duration) {
        if self.identity.get().is_some() {
            return;
        }
        let Some((target, instance)) = lock(&self.identity_target).clone() else { return };
        if !self.identity_asked.swap(true, Ordering::SeqCst) {
            self.ask_identity(&target, instance);
        }
        let deadline = Instant::now() + wait;
        while self.identity.get().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn ask_identity(&self, target: &(String, bool), instance: Credentials) {
        let client = sts::client(&self.base, target, instance);
        let (identity, metrics) = (self.identity.clone(), self.metrics.clone());
        tokio::spawn(async move {
            match client.get_caller_identity().send().await {
                Ok(out) => {
                    metrics.aws_call(Api::GetCallerIdentity, CallOutcome::Success);
                    if let Some(arn) = out.arn() {
                        let _ = identity.set(arn.to_owned());
                    }
                }
                Err(e) => {
                    let (refusal, reason) = describe_sdk_error(&e);
                    metrics.aws_call(Api::GetCallerIdentity, CallOutcome::from(refusal));
                    tracing::debug!(%reason, "sts:GetCallerIdentity failed; /status will not show the instance identity: {reason}");
                }
            }
        });
    }

    /// Which provider gave the base credentials last.
    pub(crate) fn source_used(&self) -> Option<String> {
        lock(&self.source_used).as_ref().map(|a| a.name.clone())
    }

    /// Reads the base credentials afresh at the next fetch (after a reload:
    /// a key rotated in a profile file is used at once), and forgets failed
    /// AssumeRoles (a reload is how IAM fixes are announced).
    pub(crate) fn reread_base(&self) {
        self.reread.store(true, Ordering::SeqCst);
        for slot in lock(&self.roles).values() {
            *lock(&slot.failure) = None;
        }
    }

    /// What `host`'s fetch is waiting on and for how long, while it runs.
    pub(crate) fn waiting_on(&self, host: &str) -> Option<String> {
        lock(&self.waiting).get(host).map(|(step, since)| {
            let so_far = self.clock.now().saturating_duration_since(*since);
            format!("{step}, for {:.1}s so far", so_far.as_secs_f64())
        })
    }

    pub(crate) fn wait_on(&self, host: &str, step: String) {
        lock(&self.waiting).insert(host.to_owned(), (step, self.clock.now()));
    }

    /// The fetch for `host` ended.
    pub(crate) fn done(&self, host: &str) {
        lock(&self.waiting).remove(host);
    }

    /// The credentials to call ECR with for `registry`: the assumed role's,
    /// or the instance's when no role is configured.
    pub(crate) async fn for_registry(&self, registry: &RegistryConfig) -> Result<Credentials, FetchError> {
        let host = &registry.host;
        let Some(key) = RoleSession::of(registry) else {
            self.wait_on(host, format!("base credentials from {}", self.settings.credentials));
            let instance = self.base_credentials().await?;
            self.learn_identity(&self.sts_target(registry).await, &instance);
            return Ok(instance);
        };
        let slot = lock(&self.roles).entry(key.clone()).or_default().clone();
        let cached = || lock(&slot.creds).clone();
        if let Some(c) = cached().filter(|c| fresh(c, self.clock.wall())) {
            return Ok(c);
        }
        self.wait_on(host, format!("sts:AssumeRole on {} (another registry's call)", key.role_arn));
        let _flight = match slot.flight.try_lock() {
            Ok(f) => f,
            Err(_) => match cached().filter(|c| unexpired(c, self.clock.wall())) {
                Some(c) => return Ok(c),
                None => slot.flight.lock().await,
            },
        };
        if let Some(c) = cached().filter(|c| fresh(c, self.clock.wall())) {
            return Ok(c);
        }
        if let Some((err, _)) = lock(&slot.failure).clone().filter(|(_, until)| self.clock.now() < *until) {
            return Err(err);
        }
        self.wait_on(host, format!("base credentials from {}", self.settings.credentials));
        let instance = self.base_credentials().await?;
        let target = self.sts_target(registry).await;
        self.learn_identity(&target, &instance);
        self.wait_on(
            host,
            format!(
                "sts:AssumeRole on {} in {} (gives up after {}s)",
                key.role_arn,
                target.0,
                STS_DEADLINE.as_secs()
            ),
        );
        match self.assume_role(&key, &target, instance).await {
            Ok(creds) => {
                *lock(&slot.creds) = Some(creds.clone());
                *lock(&slot.failure) = None;
                Ok(creds)
            }
            Err(err) => {
                let until = self.clock.now() + remember_failure_for(err.refusal());
                *lock(&slot.failure) = Some((err.clone(), until));
                Err(err)
            }
        }
    }
    /// Now on the chain's clock: how long a remembered failure stands is
    /// judged on it.
    pub(super) fn now(&self) -> tokio::time::Instant {
        self.clock.now()
    }

    async fn assume_role(
        &self,
        role: &RoleSession,
        target: &(String, bool),
        instance: Credentials,
    ) -> Result<Credentials, FetchError> {
        let result = sts::assume_role(&sts::client(&self.base, target, instance), role).await;
        let outcome = match &result {
            Ok(_) => CallOutcome::Success,
            Err(f) => CallOutcome::from(f.refusal),
        };
        self.metrics.aws_call(Api::AssumeRole, outcome);
        result.map_err(|f| FetchError::AssumeRole {
            role_arn: role.role_arn.clone(),
            refusal: f.refusal,
            reason: f.reason,
        })
    }
}
