//! The AWS token source: credential chain, then `ecr:GetAuthorizationToken`.

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

use crate::config::{RegistryConfig, PUBLIC_REGION};
use crate::credentials::{describe_sdk_error, outcome, CredentialChain};
use crate::metrics::Metrics;
use crate::proxy::{http_client, Proxy, ProxyError};
use crate::secret::Secret;
use crate::token_source::{FetchError, FetchedToken, TokenSource};

/// Fetches ECR tokens from AWS.
pub struct AwsTokenSource {
    base: SdkConfig,
    chain: CredentialChain,
    metrics: Arc<Metrics>,
}

/// The shared SDK settings: endpoints from the standard environment, no SDK
/// retries (the cache's refresh loop owns retrying), short timeouts, and the
/// outbound proxy if there is one.
pub async fn sdk_config(proxy: Option<&Proxy>) -> Result<SdkConfig, ProxyError> {
    Ok(aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client(proxy)?)
        // A fixed region stops the loader asking IMDS; each client sets its own.
        .region(Region::from_static("us-east-1"))
        .no_credentials()
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(10))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .load()
        .await)
}

impl AwsTokenSource {
    /// A source using `base` for every AWS client.
    pub fn new(base: SdkConfig, metrics: Arc<Metrics>) -> Self {
        AwsTokenSource { chain: CredentialChain::new(base.clone(), metrics.clone()), base, metrics }
    }

    async fn get_token(&self, registry: &RegistryConfig) -> Result<FetchedToken, FetchError> {
        let creds = self.chain.for_registry(registry).await?;
        let (call, result) = if registry.public {
            ("GetAuthorizationTokenPublic", public_token(&self.base, creds).await)
        } else {
            ("GetAuthorizationToken", private_token(&self.base, registry, creds).await)
        };
        let label = match &result {
            Err(FetchError::GetAuthorizationToken { denied, .. })
            | Err(FetchError::GetPublicAuthorizationToken { denied, .. }) => outcome(Err(*denied)),
            // A token ECR sent but we cannot use still was a successful call.
            _ => "success",
        };
        self.metrics.aws_call(call, label);
        result
    }
}

/// `ecr:GetAuthorizationToken` for one private registry, as `creds`.
pub async fn private_token(
    base: &SdkConfig,
    registry: &RegistryConfig,
    creds: Credentials,
) -> Result<FetchedToken, FetchError> {
    let conf = aws_sdk_ecr::config::Builder::from(base)
        .region(Region::new(registry.region.clone()))
        .credentials_provider(creds)
        .build();
    // registryIds is deprecated but honoured, and it names the account
    // whose token we want when a principal can reach several.
    #[allow(deprecated)]
    let out = aws_sdk_ecr::Client::from_conf(conf)
        .get_authorization_token()
        .registry_ids(&registry.account)
        .send()
        .await
        .map_err(|e| {
            let (denied, reason) = describe_sdk_error(&e);
            FetchError::GetAuthorizationToken { region: registry.region.clone(), denied, reason }
        })?;
    // Never `{:?}` the output: AuthorizationData's Debug prints the token.
    let data = out.authorization_data().first();
    usable(data.and_then(|d| d.authorization_token()), data.and_then(|d| d.expires_at()))
}

/// ECR Public's token: one API in us-east-1, one token for every public repository.
pub async fn public_token(base: &SdkConfig, creds: Credentials) -> Result<FetchedToken, FetchError> {
    let conf = aws_sdk_ecrpublic::config::Builder::from(base)
        .region(Region::from_static(PUBLIC_REGION))
        .credentials_provider(creds)
        .build();
    let out =
        aws_sdk_ecrpublic::Client::from_conf(conf).get_authorization_token().send().await.map_err(|e| {
            let (denied, reason) = describe_sdk_error(&e);
            FetchError::GetPublicAuthorizationToken { denied, reason }
        })?;
    // Never `{:?}` the output: its AuthorizationData prints the token too.
    let data = out.authorization_data();
    usable(data.and_then(|d| d.authorization_token()), data.and_then(|d| d.expires_at()))
}

/// A token and expiry as ECR sent them, checked and decoded.
fn usable(token: Option<&str>, expires_at: Option<&DateTime>) -> Result<FetchedToken, FetchError> {
    let bad = |reason: &str| FetchError::BadToken { reason: reason.into() };
    let token = token.ok_or_else(|| bad("no authorizationToken"))?;
    let expires_at =
        expires_at.and_then(|t| SystemTime::try_from(*t).ok()).ok_or_else(|| bad("no usable expiresAt"))?;
    let (username, password) = decode_token(token)?;
    Ok(FetchedToken { username, password, expires_at })
}

/// Splits ECR's base64 `user:password` token.
pub fn decode_token(token: &str) -> Result<(String, Secret), FetchError> {
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

    async fn fetch(&self, registry: &RegistryConfig) -> Result<FetchedToken, FetchError> {
        let result = self.get_token(registry).await;
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
    fn decodes_user_and_password() {
        let (u, p) = decode_token("QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu").unwrap();
        assert_eq!(u, "AWS");
        assert_eq!(p.expose(), "123456789012-auth-token");
        for bad in ["!!!", "bm9jb2xvbg==", "OnB3", "QVdTOg=="] {
            assert!(matches!(decode_token(bad), Err(FetchError::BadToken { .. })), "{bad}");
        }
    }
}
