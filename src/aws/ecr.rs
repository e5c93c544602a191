//! The AWS token source: credential chain, then `ecr:GetAuthorizationToken`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_ecr::config::Region;
use base64::Engine;
use zeroize::Zeroizing;

use aws_credential_types::Credentials;
use aws_smithy_types::DateTime;

use super::chain::{remember_failure_for, AwsSettings, CredentialChain, STS_DEADLINE};
use super::http::{http_client, Proxy, ProxyError};
use super::sdk_error::describe_sdk_error;
use super::sts::RoleSession;
use crate::config::{RegistryConfig, PUBLIC_REGION};
use crate::metrics::{Api, CallOutcome, Metrics};
use crate::tokens::{FetchError, FetchedToken, TokenSource};
use ecr_credd_client::secret::Secret;

/// Fetches ECR tokens from AWS.
pub(crate) struct AwsTokenSource {
    base: SdkConfig,
    chain: CredentialChain,
    use_fips: bool,
    metrics: Arc<Metrics>,
    /// The last token per principal, region and endpoint: one token serves
    /// every registry the principal may reach there, so entries that share
    /// a key share one GetAuthorizationToken (and its quota).
    shared: std::sync::Mutex<HashMap<TokenKey, Arc<SharedToken>>>,
}

/// A key's last token and when it was fetched, behind the lock that makes
/// fetching it single-flight.
type SharedToken = tokio::sync::Mutex<Shared>;

/// What entries sharing a key share.
#[derive(Default)]
struct Shared {
    /// The last token and when it was fetched.
    token: Option<(FetchedToken, SystemTime)>,
    /// The last failure and until when it stands for every entry on the key
    /// (as the chain remembers a failed AssumeRole): entries that back off
    /// together, queued behind one fetch, make one call, not one each.
    failure: Option<(FetchError, tokio::time::Instant)>,
}

/// Who asks ECR for a token, in which region, through which endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    /// The role assumed, or `None` for the base credentials.
    role: Option<RoleSession>,
    region: String,
    fips: bool,
    dual_stack: bool,
}

/// A shared token is handed to another entry while it has been held for
/// less than this fraction of its life: entries refreshing within that
/// window of each other refresh as one.
const SHARE_WITHIN: f64 = 0.25;

/// The shared SDK settings: endpoints from the standard environment, no SDK
/// retries (the cache's refresh loop owns retrying), short timeouts, and the
/// outbound proxy if there is one.
pub(crate) async fn sdk_config(proxy: Option<&Proxy>) -> Result<SdkConfig, ProxyError> {
    Ok(aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client(proxy)?)
        // A fixed region stops the loader asking IMDS; each client sets its own.
        .region(Region::from_static("us-east-1"))
        .no_credentials()
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(STS_DEADLINE)
                .operation_timeout(STS_DEADLINE)
                .build(),
        )
        .load()
        .await)
}

impl AwsTokenSource {
    /// A source using `base` for every AWS client.
    pub(crate) fn new(base: SdkConfig, settings: AwsSettings, metrics: Arc<Metrics>) -> Self {
        let use_fips = settings.use_fips;
        AwsTokenSource {
            chain: CredentialChain::new(base.clone(), settings, metrics.clone()),
            base,
            use_fips,
            metrics,
            shared: std::sync::Mutex::default(),
        }
    }

    /// A private registry's token: the one fetched moments ago for the same
    /// principal, region and endpoint, else a new one (one fetch per key at
    /// a time). ECR Public's tokens are fetched per entry.
    async fn token(&self, registry: &RegistryConfig) -> Result<FetchedToken, FetchError> {
        let Some(key) = self.token_key(registry) else {
            return self.get_token(registry).await;
        };
        let slot = crate::sync::lock(&self.shared).entry(key).or_default().clone();
        let mut held = slot.lock().await;
        let now = SystemTime::now();
        let fresh = |(t, at): &(FetchedToken, SystemTime)| {
            let held_for = now.duration_since(*at).unwrap_or_default();
            let life = t.expires_at.duration_since(*at).unwrap_or_default();
            held_for < life.mul_f64(SHARE_WITHIN)
        };
        if let Some((token, _)) = held.token.as_ref().filter(|h| fresh(h)) {
            return Ok(token.clone());
        }
        if let Some((err, _)) = held.failure.as_ref().filter(|(_, until)| *until > self.chain.now()) {
            return Err(err.clone());
        }
        let result = self.get_token(registry).await;
        match &result {
            Ok(token) => *held = Shared { token: Some((token.clone(), now)), failure: None },
            Err(err) => {
                let until = self.chain.now() + remember_failure_for(err.refusal());
                held.failure = Some((err.clone(), until));
            }
        }
        result
    }

    /// Whose token a private registry's is; `None` for ECR Public (fetched per entry).
    fn token_key(&self, registry: &RegistryConfig) -> Option<TokenKey> {
        (!registry.public).then(|| TokenKey {
            role: RoleSession::of(registry),
            region: registry.region.clone(),
            fips: registry.fips || self.use_fips,
            dual_stack: registry.dual_stack,
        })
    }

    async fn get_token(&self, registry: &RegistryConfig) -> Result<FetchedToken, FetchError> {
        let creds = self.chain.for_registry(registry).await?;
        let region = if registry.public { PUBLIC_REGION } else { registry.region.as_str() };
        self.chain.wait_on(
            &registry.host,
            format!("ecr:GetAuthorizationToken in {region} (gives up after {}s)", STS_DEADLINE.as_secs()),
        );
        let (call, result) = if registry.public {
            (Api::GetAuthorizationTokenPublic, public_token(&self.base, creds).await)
        } else {
            (Api::GetAuthorizationToken, private_token(&self.base, registry, creds, self.use_fips).await)
        };
        let outcome = match &result {
            Err(FetchError::GetAuthorizationToken { refusal, .. })
            | Err(FetchError::GetPublicAuthorizationToken { refusal, .. }) => CallOutcome::from(*refusal),
            // A token ECR sent but we cannot use still was a successful call.
            _ => CallOutcome::Success,
        };
        self.metrics.aws_call(call, outcome);
        result
    }
}

/// ECR's client settings for `registry`: its region, and FIPS or dual-stack
/// as its host (or `use_fips`) says, leaving the endpoint's name to the SDK.
pub(crate) fn ecr_config(
    base: &SdkConfig,
    registry: &RegistryConfig,
    use_fips: bool,
) -> aws_sdk_ecr::config::Builder {
    aws_sdk_ecr::config::Builder::from(base)
        .region(Region::new(registry.region.clone()))
        .use_fips(registry.fips || use_fips)
        .use_dual_stack(registry.dual_stack)
}

/// The endpoints `registry`'s calls go to, as the SDKs resolve them: STS
/// (AssumeRole, in `sts_region`) and ECR (GetAuthorizationToken).
pub(crate) fn endpoints(
    registry: &RegistryConfig,
    sts_region: &str,
    use_fips: bool,
) -> Result<(String, String), String> {
    use aws_sdk_ecr::config::endpoint::ResolveEndpoint as _;
    use aws_sdk_sts::config::endpoint::ResolveEndpoint as _;
    let fips = registry.fips || use_fips;
    let (ecr_region, ecr_fips, dual_stack) = if registry.public {
        (PUBLIC_REGION, false, false)
    } else {
        (registry.region.as_str(), fips, registry.dual_stack)
    };
    let sts = aws_sdk_sts::config::endpoint::Params::builder()
        .region(sts_region)
        .use_fips(fips)
        .use_global_endpoint(false)
        .build()
        .map_err(|e| e.to_string())?;
    let ecr = aws_sdk_ecr::config::endpoint::Params::builder()
        .region(ecr_region)
        .use_fips(ecr_fips)
        .use_dual_stack(dual_stack)
        .build()
        .map_err(|e| e.to_string())?;
    let sts = now(aws_sdk_sts::config::endpoint::DefaultResolver::new().resolve_endpoint(&sts))?;
    let ecr = if registry.public {
        use aws_sdk_ecrpublic::config::endpoint::ResolveEndpoint as _;
        let params = aws_sdk_ecrpublic::config::endpoint::Params::builder()
            .region(PUBLIC_REGION)
            .build()
            .map_err(|e| e.to_string())?;
        now(aws_sdk_ecrpublic::config::endpoint::DefaultResolver::new().resolve_endpoint(&params))?
    } else {
        now(aws_sdk_ecr::config::endpoint::DefaultResolver::new().resolve_endpoint(&ecr))?
    };
    Ok((sts, ecr))
}

/// The URL of an endpoint future the default resolvers complete at once.
fn now(future: aws_smithy_runtime_api::client::endpoint::EndpointFuture<'_>) -> Result<String, String> {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::future::Future::poll(future.as_mut(), &mut cx) {
        std::task::Poll::Ready(Ok(endpoint)) => Ok(endpoint.url().to_owned()),
        std::task::Poll::Ready(Err(e)) => Err(e.to_string()),
        std::task::Poll::Pending => Err("the endpoint resolver did not answer at once".into()),
    }
}

/// `ecr:GetAuthorizationToken` for one private registry, as `creds`.
/// `use_fips` (`[aws] use_fips`) or a FIPS host sends it to ECR's FIPS endpoint.
pub(crate) async fn private_token(
    base: &SdkConfig,
    registry: &RegistryConfig,
    creds: Credentials,
    use_fips: bool,
) -> Result<FetchedToken, FetchError> {
    let conf = ecr_config(base, registry, use_fips).credentials_provider(creds).build();
    // registryIds is deprecated but honoured, and it names the account
    // whose token we want when a principal can reach several.
    #[allow(deprecated)]
    let out = aws_sdk_ecr::Client::from_conf(conf)
        .get_authorization_token()
        .registry_ids(&registry.account)
        .send()
        .await
        .map_err(|e| {
            let (refusal, reason) = describe_sdk_error(&e);
            FetchError::GetAuthorizationToken { region: registry.region.clone(), refusal, reason }
        })?;
    // Never `{:?}` the output: AuthorizationData's Debug prints the token.
    let data = out.authorization_data().first();
    fetched_token(data.and_then(|d| d.authorization_token()), data.and_then(|d| d.expires_at()))
}

/// ECR Public's token: one API in us-east-1, one token for every public repository.
pub(crate) async fn public_token(base: &SdkConfig, creds: Credentials) -> Result<FetchedToken, FetchError> {
    let conf = aws_sdk_ecrpublic::config::Builder::from(base)
        .region(Region::from_static(PUBLIC_REGION))
        .credentials_provider(creds)
        .build();
    let out =
        aws_sdk_ecrpublic::Client::from_conf(conf).get_authorization_token().send().await.map_err(|e| {
            let (refusal, reason) = describe_sdk_error(&e);
            FetchError::GetPublicAuthorizationToken { refusal, reason }
        })?;
    // Never `{:?}` the output: its AuthorizationData prints the token too.
    let data = out.authorization_data();
    fetched_token(data.and_then(|d| d.authorization_token()), data.and_then(|d| d.expires_at()))
}

/// A token and expiry as ECR sent them, checked and decoded.
fn fetched_token(token: Option<&str>, expires_at: Option<&DateTime>) -> Result<FetchedToken, FetchError> {
    let bad = |reason: &str| FetchError::BadToken { reason: reason.into() };
    let token = token.ok_or_else(|| bad("no authorizationToken"))?;
    let expires_at =
        expires_at.and_then(|t| SystemTime::try_from(*t).ok()).ok_or_else(|| bad("no usable expiresAt"))?;
    let (username, secret) = decode_token(token)?;
    Ok(FetchedToken { username, secret, expires_at })
}

/// Splits ECR's base64 `user:password` token.
pub(crate) fn decode_token(token: &str) -> Result<(String, Secret), FetchError> {
    let bad = |reason: &str| FetchError::BadToken { reason: reason.into() };
    let decoded = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .map_err(|_| bad("authorizationToken is not base64"))?,
    );
    let text = std::str::from_utf8(&decoded).map_err(|_| bad("authorizationToken is not UTF-8"))?;
    let (user, password) =
        text.split_once(':').ok_or_else(|| bad("authorizationToken is not user:password"))?;
    if user.is_empty() || password.is_empty() {
        return Err(bad("authorizationToken has an empty user or password"));
    }
    Ok((user.to_owned(), Secret::from(password)))
}

impl TokenSource for AwsTokenSource {
    fn identity(&self) -> Option<String> {
        self.chain.identity()
    }

    fn credential_source(&self) -> Option<String> {
        self.chain.source_used()
    }

    fn shares_token(&self, a: &RegistryConfig, b: &RegistryConfig) -> bool {
        self.token_key(a).is_some_and(|k| self.token_key(b).as_ref() == Some(&k))
    }

    async fn want_identity(&self, wait: Duration) {
        self.chain.want_identity(wait).await;
    }

    fn reload(&self) {
        self.chain.reread_base();
    }

    fn waiting_on(&self, host: &str) -> Option<String> {
        self.chain.waiting_on(host)
    }

    async fn fetch_for_workload(
        &self,
        registry: &RegistryConfig,
        who: &crate::workload::Exchange,
    ) -> Result<FetchedToken, FetchError> {
        super::workload::token(&self.base, &self.chain, &self.metrics, self.use_fips, registry, who).await
    }

    async fn fetch(&self, registry: &RegistryConfig) -> Result<FetchedToken, FetchError> {
        let result = self.token(registry).await;
        self.chain.done(&registry.host);
        match &result {
            Ok(_) => tracing::debug!(registry = %registry.host, "fetched authorization token"),
            Err(e) => tracing::debug!(registry = %registry.host, error = %e, "fetch failed"),
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_come_from_the_sdks_resolvers() {
        let mut r = RegistryConfig::unlisted("111122223333.dkr.ecr-fips.us-east-1.amazonaws.com").unwrap();
        assert_eq!(
            endpoints(&r, "us-east-1", false).unwrap(),
            (
                "https://sts-fips.us-east-1.amazonaws.com".into(),
                "https://api.ecr-fips.us-east-1.amazonaws.com".into()
            )
        );
        r = RegistryConfig::unlisted("111122223333.dkr.ecr.eu-west-1.amazonaws.com").unwrap();
        assert_eq!(
            endpoints(&r, "eu-central-1", false).unwrap(),
            (
                "https://sts.eu-central-1.amazonaws.com".into(),
                "https://api.ecr.eu-west-1.amazonaws.com".into()
            )
        );
        r = RegistryConfig::unlisted("111122223333.dkr-ecr.us-west-2.on.aws").unwrap();
        assert_eq!(endpoints(&r, "us-west-2", false).unwrap().1, "https://ecr.us-west-2.api.aws");
        r = RegistryConfig::unlisted("111122223333.dkr.ecr.us-gov-west-1.amazonaws.com").unwrap();
        assert_eq!(
            endpoints(&r, "us-gov-west-1", true).unwrap(),
            (
                "https://sts.us-gov-west-1.amazonaws.com".into(),
                "https://api.ecr-fips.us-gov-west-1.amazonaws.com".into()
            )
        );
    }

    #[test]
    fn decodes_user_and_password() {
        let (u, p) = decode_token("QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu").unwrap();
        assert_eq!(u, "AWS");
        assert_eq!(p.expose(), "123456789012-auth-token");
        for bad in ["!!!", "bm9jb2xvbg==", "OnB3", "QVdTOg=="] {
            assert!(matches!(decode_token(bad), Err(FetchError::BadToken { .. })), "{bad}");
        }
    }
}
