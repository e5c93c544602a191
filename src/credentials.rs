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
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use tokio::sync::Mutex;

use crate::config::RegistryConfig;
use crate::credential_source::{first_credentials, CredentialSource};
use crate::metrics::Metrics;
use crate::token_source::FetchError;

/// Credentials are renewed when they have less than this left.
const RENEW_BEFORE: Duration = Duration::from_secs(10 * 60);
/// AssumeRole session length: the STS default, and the cap for role chaining.
const SESSION_SECONDS: i32 = 3600;
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

#[derive(Hash, PartialEq, Eq, Clone)]
struct RoleKey {
    role_arn: String,
    external_id: Option<String>,
    session_name: String,
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
    /// The configured source's providers, tried in order.
    providers: Vec<(String, SharedCredentialsProvider)>,
    /// The base credentials, when they were had, and from which provider.
    instance: Mutex<Option<(Credentials, Instant, String)>>,
    /// The provider that gave them last, for `/status` and the log.
    source_used: std::sync::Mutex<Option<String>>,
    // One lock for all roles: AssumeRole is rare (hourly per role), and
    // serialising it means registries sharing a role share one call.
    roles: Mutex<HashMap<RoleKey, Credentials>>,
    identity: Arc<OnceLock<String>>,
    identity_asked: AtomicBool,
    metrics: Arc<Metrics>,
}

fn fresh(creds: &Credentials, now: SystemTime) -> bool {
    creds.expiry().is_none_or(|exp| exp > now + RENEW_BEFORE)
}

impl CredentialChain {
    /// A chain whose AWS clients are built from `base` (endpoints, timeouts, retries).
    pub fn new(base: SdkConfig, settings: AwsSettings, metrics: Arc<Metrics>) -> Self {
        let providers =
            settings.credentials.providers(&crate::proxy::imds_provider_config(), &other_providers(&base));
        CredentialChain {
            providers,
            base,
            settings,
            instance_region: Mutex::new(None),
            instance: Mutex::new(None),
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
        let from_imds = self.source_used().as_deref() == Some(crate::credential_source::IMDS_NAME);
        let instance = if configured { None } else { self.instance_region(from_imds).await };
        self.settings.sts_target(registry, instance.as_deref())
    }

    /// The instance's region from IMDS (placement/region), asked until known
    /// when `ask` (the base credentials came from IMDS).
    async fn instance_region(&self, ask: bool) -> Option<String> {
        let mut known = self.instance_region.lock().await;
        if known.is_none() && ask {
            let provider = aws_config::imds::region::ImdsRegionProvider::builder()
                .configure(&crate::proxy::imds_provider_config())
                .build();
            *known = tokio::time::timeout(Duration::from_secs(2), provider.region())
                .await
                .ok()
                .flatten()
                .map(|r| r.as_ref().to_owned());
        }
        known.clone()
    }

    fn sts(&self, (region, fips): &(String, bool), creds: Credentials) -> aws_sdk_sts::Client {
        // Always a regional endpoint (the SDK's default): China, GovCloud and
        // ISO partitions have no global one. Endpoint names come from the
        // SDK's resolver, FIPS and all.
        let conf = aws_sdk_sts::config::Builder::from(&self.base)
            .region(Region::new(region.clone()))
            .use_fips(*fips)
            .credentials_provider(creds)
            .build();
        aws_sdk_sts::Client::from_conf(conf)
    }

    /// Asks for the instance identity once, for `/status`, in the background:
    /// a VPC with an ECR endpoint but no route to STS must still get tokens,
    /// so the fetch never waits for it, and a failure is not retried.
    fn learn_identity(&self, target: &(String, bool), instance: &Credentials) {
        if self.identity_asked.swap(true, Ordering::SeqCst) {
            return;
        }
        let client = self.sts(target, instance.clone());
        let (identity, metrics) = (self.identity.clone(), self.metrics.clone());
        tokio::spawn(async move {
            match client.get_caller_identity().send().await {
                Ok(out) => {
                    metrics.aws_call("GetCallerIdentity", "success");
                    if let Some(arn) = out.arn() {
                        let _ = identity.set(arn.to_owned());
                    }
                }
                Err(e) => {
                    let (denied, reason) = describe_sdk_error(&e);
                    metrics.aws_call("GetCallerIdentity", call_outcome(Err(denied)));
                    tracing::debug!(%reason, "sts:GetCallerIdentity failed; /status will not show the instance identity: {reason}");
                }
            }
        });
    }

    /// Which provider gave the base credentials last.
    pub fn source_used(&self) -> Option<String> {
        lock(&self.source_used).clone()
    }

    /// The base credentials: the instance profile's, or the configured
    /// source's. Kept until near expiry; ones without an expiry (static keys)
    /// are asked for again after a few minutes, so a rotated key is picked up.
    pub async fn instance(&self) -> Result<Credentials, FetchError> {
        let mut cached = self.instance.lock().await;
        let now = SystemTime::now();
        let still_good = |(c, at, _): &(Credentials, Instant, String)| match c.expiry() {
            Some(_) => fresh(c, now),
            None => at.elapsed() < REREAD_STATIC,
        };
        if let Some((c, _, _)) = cached.as_ref().filter(|e| still_good(e)) {
            return Ok(c.clone());
        }
        let (result, lacked) = first_credentials(&self.providers).await;
        let imds = self.settings.credentials == CredentialSource::Instance;
        self.metrics.aws_call(
            if imds { "IMDS" } else { "BaseCredentials" },
            if result.is_ok() { "success" } else { "error" },
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
        let Some(role_arn) = &registry.role_arn else {
            let instance = self.instance().await?;
            self.learn_identity(&self.sts_target(registry).await, &instance);
            return Ok(instance);
        };
        let key = RoleKey {
            role_arn: role_arn.clone(),
            external_id: registry.external_id.clone(),
            session_name: registry.session_name.clone(),
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
        key: &RoleKey,
        target: &(String, bool),
        instance: Credentials,
    ) -> Result<Credentials, FetchError> {
        let client = self.sts(target, instance);
        let fail = |denied: bool, reason: String| FetchError::AssumeRole {
            role_arn: key.role_arn.clone(),
            denied,
            reason,
        };
        let out = client
            .assume_role()
            .role_arn(&key.role_arn)
            .role_session_name(&key.session_name)
            .set_external_id(key.external_id.clone())
            .duration_seconds(SESSION_SECONDS)
            .send()
            .await
            .map_err(|e| {
                let (denied, reason) = describe_sdk_error(&e);
                self.metrics.aws_call("AssumeRole", call_outcome(Err(denied)));
                fail(denied, reason)
            })?;
        self.metrics.aws_call("AssumeRole", "success");
        // Never `{:?}` the output: STS does not mark the session token sensitive.
        let c = out.credentials().ok_or_else(|| fail(false, "the response carried no credentials".into()))?;
        let expiry = SystemTime::try_from(*c.expiration()).ok();
        tracing::debug!(role_arn = %key.role_arn, access_key_id = c.access_key_id(), "assumed role");
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            expiry,
            "sts:AssumeRole",
        ))
    }
}

/// An error and its causes on one line ("a: b: c"), without the Debug dump
/// of raw responses that the SDK's own formatter appends.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// The metric label for a call's outcome (`Err(denied)` for failures).
pub fn call_outcome(result: Result<(), bool>) -> &'static str {
    match result {
        Ok(()) => "success",
        Err(true) => "denied",
        Err(false) => "error",
    }
}

/// Whether an SDK error is a permission denial, and a one-line reason.
pub fn describe_sdk_error<E, R>(
    err: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> (bool, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HasStatus + 'static,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    match err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status_code();
            let code = ctx.err().code();
            let denied = status == 403
                || code.is_some_and(|c| c.contains("AccessDenied") || c.contains("UnauthorizedOperation"));
            let reason = match (code, ctx.err().message()) {
                (Some(code), Some(msg)) => format!("{code}: {msg}"),
                (Some(code), None) => format!("{code} (HTTP {status})"),
                _ => format!("HTTP {status} from AWS"),
            };
            (denied, reason)
        }
        SdkError::TimeoutError(_) => (false, "timed out waiting for AWS".into()),
        other => (false, error_chain(other)),
    }
}

/// The HTTP status of a raw response, abstracted so [`describe_sdk_error`] is generic.
pub trait HasStatus {
    /// The status code.
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_smithy_runtime_api::http::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}
