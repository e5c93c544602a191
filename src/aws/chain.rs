//! The credential chain: instance-profile credentials from IMDSv2, then
//! `sts:AssumeRole` per distinct role, each cached until shortly before expiry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use aws_config::provider_config::ProviderConfig;
use aws_config::SdkConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_sdk_sts::config::Region;
use tokio::sync::Mutex;

use super::sdk_error::describe_sdk_error;
use super::sts::{self, RoleSession};
use crate::aws::source::{first_credentials, CredentialSource};
use crate::config::RegistryConfig;
use crate::metrics::{Api, CallOutcome, Metrics};
use crate::tokens::FetchError;

/// Credentials are renewed when they have less than this left.
const RENEW_BEFORE: Duration = Duration::from_secs(10 * 60);
/// Base credentials without an expiry (static keys) are read again this often.
const REREAD_STATIC: Duration = Duration::from_secs(5 * 60);

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Settings for the providers other than IMDS: the proxy-aware HTTP client,
/// and a region for the STS call web identity makes (`AWS_REGION`, else us-east-1).
pub(crate) fn other_providers(base: &SdkConfig) -> ProviderConfig {
    let region = env_region().unwrap_or_else(|| "us-east-1".into());
    let config = ProviderConfig::default().with_region(Some(Region::new(region)));
    match base.http_client() {
        Some(client) => config.with_http_client(client),
        None => config,
    }
}

/// `[aws]` settings that apply to every registry (a restart applies changes).
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// FIPS endpoints for every STS and ECR call.
    pub use_fips: bool,
    /// Where AssumeRole is called unless a registry names its own region.
    pub sts_region: Option<String>,
    /// Where the base credentials come from.
    pub credentials: CredentialSource,
}

/// `AWS_REGION`, else `AWS_DEFAULT_REGION`, when set and not empty.
pub fn env_region() -> Option<String> {
    ["AWS_REGION", "AWS_DEFAULT_REGION"].iter().find_map(|k| std::env::var(k).ok().filter(|r| !r.is_empty()))
}

impl AwsSettings {
    /// Where `registry`'s STS calls go: its `sts_region`, else `[aws]
    /// sts_region`, else `instance_region` (a private subnet often reaches STS
    /// only through an interface endpoint in its own region), else
    /// `AWS_REGION`/`AWS_DEFAULT_REGION`, else the registry's region; and
    /// whether through FIPS endpoints. The daemon and doctor both ask this.
    pub fn sts_target(&self, registry: &RegistryConfig, instance_region: Option<&str>) -> (String, bool) {
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
    pub fn from_config(config: &crate::config::Config) -> Self {
        AwsSettings {
            use_fips: config.use_fips,
            sts_region: config.sts_region.clone(),
            credentials: config.credentials.clone(),
        }
    }
}

/// Instance credentials and assumed-role credentials, cached.
pub struct CredentialChain {
    base: SdkConfig,
    settings: AwsSettings,
    /// The instance's own region from IMDS, once known.
    instance_region: Mutex<Option<String>>,
    /// Set by a reload: the next fetch reads the base credentials afresh.
    reread: AtomicBool,
    /// The base credentials and the providers that give them.
    instance: Mutex<Base>,
    /// The provider that gave them last, for `/status` and the log.
    source_used: std::sync::Mutex<Option<String>>,
    // One lock for all roles: AssumeRole is rare (hourly per role), and
    // serialising it means registries sharing a role share one call.
    roles: Mutex<HashMap<RoleSession, Credentials>>,
    identity: Arc<OnceLock<String>>,
    identity_asked: AtomicBool,
    metrics: Arc<Metrics>,
}

/// The base credentials' state, behind one lock: a fetch asks the providers
/// only while it holds it.
struct Base {
    /// The configured source's providers, tried in order. Built again to
    /// read static keys afresh: aws-config's profile provider keeps what it
    /// first read from the files.
    providers: Providers,
    /// The credentials, when they were had, and from which provider.
    cached: Option<(Credentials, Instant, String)>,
}

/// Named credential providers, tried in order.
type Providers = Vec<(String, SharedCredentialsProvider)>;

fn build_providers(base: &SdkConfig, settings: &AwsSettings) -> Providers {
    settings.credentials.providers(&crate::aws::http::imds_provider_config(), &other_providers(base))
}

fn fresh(creds: &Credentials, now: SystemTime) -> bool {
    creds.expiry().is_none_or(|exp| exp > now + RENEW_BEFORE)
}

impl CredentialChain {
    /// A chain whose AWS clients are built from `base` (endpoints, timeouts, retries).
    pub fn new(base: SdkConfig, settings: AwsSettings, metrics: Arc<Metrics>) -> Self {
        let providers = build_providers(&base, &settings);
        CredentialChain {
            reread: AtomicBool::new(false),
            base,
            settings,
            instance_region: Mutex::new(None),
            instance: Mutex::new(Base { providers, cached: None }),
            source_used: std::sync::Mutex::new(None),
            roles: Mutex::new(HashMap::new()),
            identity: Arc::new(OnceLock::new()),
            identity_asked: AtomicBool::new(false),
            metrics,
        }
    }

    /// The instance principal's ARN, once `sts:GetCallerIdentity` has told us.
    pub fn identity(&self) -> Option<String> {
        self.identity.get().cloned()
    }

    /// Where `registry`'s STS calls go (see [`AwsSettings::sts_target`]).
    pub async fn sts_target(&self, registry: &RegistryConfig) -> (String, bool) {
        // IMDS is asked only when no region is configured, and only when it
        // gave the credentials: pods and tasks on other sources may not reach
        // IMDS, and AWS_REGION is theirs.
        let configured = registry.sts_region.is_some() || self.settings.sts_region.is_some();
        let from_imds = self.source_used().as_deref() == Some(crate::aws::source::IMDS_NAME);
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

    /// Asks for the instance identity once, for `/status`, in the background:
    /// a VPC with an ECR endpoint but no route to STS must still get tokens,
    /// so the fetch never waits for it, and a failure is not retried.
    fn learn_identity(&self, target: &(String, bool), instance: &Credentials) {
        if self.identity_asked.swap(true, Ordering::SeqCst) {
            return;
        }
        let client = sts::client(&self.base, target, instance.clone());
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
                    let (denied, reason) = describe_sdk_error(&e);
                    metrics.aws_call(Api::GetCallerIdentity, CallOutcome::failed(denied));
                    tracing::debug!(%reason, "sts:GetCallerIdentity failed; /status will not show the instance identity: {reason}");
                }
            }
        });
    }

    /// Which provider gave the base credentials last.
    pub fn source_used(&self) -> Option<String> {
        lock(&self.source_used).clone()
    }

    /// Reads the base credentials afresh at the next fetch (after a reload:
    /// a key rotated in a profile file is used at once).
    pub fn reread_base(&self) {
        self.reread.store(true, Ordering::SeqCst);
    }

    /// The base credentials: the instance profile's, or the configured
    /// source's. Kept until near expiry; ones without an expiry (static keys)
    /// are read again, from new providers, after a few minutes or a reload,
    /// so a rotated key is picked up.
    pub async fn instance(&self) -> Result<Credentials, FetchError> {
        let mut base = self.instance.lock().await;
        let now = SystemTime::now();
        let reread = self.reread.swap(false, Ordering::SeqCst);
        let still_good = |(c, at, _): &(Credentials, Instant, String)| match c.expiry() {
            Some(_) => fresh(c, now),
            None => at.elapsed() < REREAD_STATIC,
        };
        if let Some((c, _, _)) = base.cached.as_ref().filter(|e| !reread && still_good(e)) {
            return Ok(c.clone());
        }
        if reread || base.cached.as_ref().is_some_and(|(c, _, _)| c.expiry().is_none()) {
            base.providers = build_providers(&self.base, &self.settings);
        }
        let (result, lacked) = first_credentials(&base.providers).await;
        let cached = &mut base.cached;
        let imds = self.settings.credentials == CredentialSource::Instance;
        self.metrics.aws_call(
            if imds { Api::Imds } else { Api::BaseCredentials },
            if result.is_ok() { CallOutcome::Success } else { CallOutcome::Error },
        );
        match result {
            Ok((name, c)) => {
                let previous = lock(&self.source_used).replace(name.clone());
                if previous.as_deref() != Some(name.as_str()) {
                    let skipped = if lacked.is_empty() {
                        String::new()
                    } else {
                        format!(" (not: {})", lacked.join("; "))
                    };
                    tracing::info!(source = %name, "base credentials from {name}{skipped}");
                }
                tracing::debug!(access_key_id = c.access_key_id(), "base credentials from {name}");
                *cached = Some((c.clone(), Instant::now(), name));
                Ok(c)
            }
            // Keep using credentials that still work while the source is away.
            Err(reason) => match cached.as_ref().filter(|(c, _, _)| c.expiry().is_none_or(|x| x > now)) {
                Some((c, _, name)) => {
                    tracing::warn!(error = %reason, "{name} unavailable; using the cached base credentials: {reason}");
                    Ok(c.clone())
                }
                None if imds => Err(FetchError::InstanceCredentials { reason }),
                None => Err(FetchError::BaseCredentials {
                    source_name: self.settings.credentials.to_string(),
                    reason,
                }),
            },
        }
    }

    /// The credentials to call ECR with for `registry`: the assumed role's,
    /// or the instance's when no role is configured.
    pub async fn for_registry(&self, registry: &RegistryConfig) -> Result<Credentials, FetchError> {
        let Some(key) = RoleSession::of(registry) else {
            let instance = self.instance().await?;
            self.learn_identity(&self.sts_target(registry).await, &instance);
            return Ok(instance);
        };
        let mut roles = self.roles.lock().await;
        if let Some(c) = roles.get(&key).filter(|c| fresh(c, SystemTime::now())) {
            return Ok(c.clone());
        }
        let instance = self.instance().await?;
        let target = self.sts_target(registry).await;
        self.learn_identity(&target, &instance);
        let creds = self.assume_role(&key, &target, instance).await?;
        roles.insert(key, creds.clone());
        Ok(creds)
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
            Err(f) => CallOutcome::failed(f.denied),
        };
        self.metrics.aws_call(Api::AssumeRole, outcome);
        result.map_err(|f| FetchError::AssumeRole {
            role_arn: role.role_arn.clone(),
            denied: f.denied,
            reason: f.reason,
        })
    }
}
