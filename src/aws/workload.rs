//! A workload's service-account token exchanged for its own credentials:
//! IRSA's `sts:AssumeRoleWithWebIdentity`, or the EKS Pod Identity Agent;
//! then, when configured, the registry's role assumed from those (role
//! chaining), and ECR's token fetched with the result.

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_sdk_sts::config::Region;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use serde::Deserialize;

use super::chain::CredentialChain;
use super::sdk_error::describe_sdk_error;
use super::sts::{self, RoleSession};
use crate::config::RegistryConfig;
use crate::metrics::{Api, CallOutcome, Metrics};
use crate::tokens::{FetchError, FetchedToken, Refusal};
use crate::workload::{Exchange, ExchangeKind};
use ecr_credd_client::secret::Secret;

/// The session name CloudTrail shows for a workload's web-identity session
/// (STS records the token's `sub` beside it).
const SESSION_NAME: &str = "ecr-credd-workload";
/// The longest the agent may take: it calls EKS Auth behind it.
const AGENT_DEADLINE: Duration = Duration::from_secs(4);
/// Most bytes read from the agent.
const AGENT_MAX_BODY: usize = 64 * 1024;

/// The token for `registry` as the workload `who`, with what it took.
pub(crate) async fn token(
    base: &SdkConfig,
    chain: &CredentialChain,
    metrics: &Metrics,
    use_fips: bool,
    registry: &RegistryConfig,
    who: &Exchange,
) -> Result<FetchedToken, FetchError> {
    let target = chain.sts_target(registry).await;
    let creds = match who.kind {
        ExchangeKind::Irsa => {
            let role_arn = who.role_arn.as_deref().unwrap_or_default();
            let result = web_identity(base, &target, role_arn, &who.token).await;
            metrics.aws_call(Api::AssumeRoleWithWebIdentity, outcome(&result));
            result?
        }
        ExchangeKind::PodIdentity => {
            let result = pod_identity(&who.pod_identity_endpoint, &who.token).await;
            metrics.aws_call(Api::PodIdentity, outcome(&result));
            result?
        }
    };
    let creds = match RoleSession::of(registry).filter(|_| who.assume_registry_role) {
        Some(role) => {
            let result = sts::assume_role(&sts::client(base, &target, creds), &role).await.map_err(|f| {
                FetchError::AssumeRole {
                    role_arn: role.role_arn.clone(),
                    refusal: f.refusal,
                    reason: f.reason,
                }
            });
            metrics.aws_call(Api::AssumeRole, outcome(&result));
            result?
        }
        None => creds,
    };
    let expiry = creds.expiry();
    let result = super::ecr::private_token(base, registry, creds, use_fips).await;
    metrics.aws_call(Api::GetAuthorizationToken, outcome(&result));
    let mut token = result?;
    // Never serve the pod's access past its own session: a revoked or
    // expired identity must stop pulling when its credentials would.
    if let Some(expiry) = expiry {
        token.expires_at = token.expires_at.min(expiry);
    }
    Ok(token)
}

fn outcome<T>(result: &Result<T, FetchError>) -> CallOutcome {
    match result {
        Ok(_) => CallOutcome::Success,
        Err(e) => e.refusal().map_or(CallOutcome::Error, CallOutcome::from),
    }
}

/// IRSA: the role `role_arn` for the holder of `token`. Unsigned: the token
/// is the proof, so the node's own credentials play no part.
pub(crate) async fn web_identity(
    base: &SdkConfig,
    (region, fips): &(String, bool),
    role_arn: &str,
    token: &Secret,
) -> Result<Credentials, FetchError> {
    let fail = |refusal, reason| FetchError::WebIdentity { role_arn: role_arn.to_owned(), refusal, reason };
    let conf =
        aws_sdk_sts::config::Builder::from(base).region(Region::new(region.clone())).use_fips(*fips).build();
    let out = aws_sdk_sts::Client::from_conf(conf)
        .assume_role_with_web_identity()
        .role_arn(role_arn)
        .role_session_name(SESSION_NAME)
        .web_identity_token(token.expose())
        .send()
        .await
        .map_err(|e| {
            let (refusal, reason) = describe_sdk_error(&e);
            fail(refusal, reason)
        })?;
    // Never `{:?}` the output: it holds the session's secret.
    let c = out
        .credentials()
        .ok_or_else(|| fail(Refusal::Failed, "the response carried no credentials".into()))?;
    tracing::debug!(role_arn, access_key_id = c.access_key_id(), "exchanged a workload's token (IRSA)");
    Ok(Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_owned()),
        SystemTime::try_from(*c.expiration()).ok(),
        "sts:AssumeRoleWithWebIdentity",
    ))
}

/// The agent's answer (`pkg/credentials` in eks-pod-identity-agent).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AgentCredentials {
    access_key_id: String,
    secret_access_key: Secret,
    token: Secret,
    #[serde(default)]
    account_id: Option<String>,
    expiration: String,
}

/// EKS Pod Identity: `GET endpoint` with the pod's token as `Authorization`;
/// the agent answers with its association's credentials, or an error in
/// plain text (`Access Denied. …` 403, `Too Many Requests. …` 429, a
/// validation message 400, `[request id]: (Code): message` 5xx).
pub(crate) async fn pod_identity(endpoint: &str, token: &Secret) -> Result<Credentials, FetchError> {
    let fail = |refusal, reason| FetchError::PodIdentity { endpoint: endpoint.to_owned(), refusal, reason };
    let request = hyper::Request::get(endpoint)
        .header(hyper::header::AUTHORIZATION, token.expose())
        .body(Empty::<Bytes>::new())
        .map_err(|e| fail(Refusal::Failed, format!("bad request: {e}")))?;
    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let answered = tokio::time::timeout(AGENT_DEADLINE, async {
        let response = client.request(request).await.map_err(|e| {
            fail(
                Refusal::Failed,
                format!("unreachable ({e}); is the eks-pod-identity-agent add-on running on this node?"),
            )
        })?;
        let status = response.status();
        let body = Limited::new(response.into_body(), AGENT_MAX_BODY)
            .collect()
            .await
            .map_err(|e| fail(Refusal::Failed, format!("reading the answer: {e}")))?
            .to_bytes();
        Ok((status, body))
    })
    .await;
    let (status, body) = match answered {
        Ok(result) => result?,
        Err(_) => {
            return Err(fail(Refusal::Overloaded, format!("no answer within {}s", AGENT_DEADLINE.as_secs())))
        }
    };
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        let text: String = text.trim().chars().take(300).collect();
        let refusal = match status.as_u16() {
            401 | 403 => Refusal::Denied,
            429 => Refusal::Throttled,
            s if s >= 500 => Refusal::Overloaded,
            _ => Refusal::Failed,
        };
        return Err(fail(refusal, format!("HTTP {}: {text}", status.as_u16())));
    }
    let c: AgentCredentials = serde_json::from_slice(&body)
        .map_err(|e| fail(Refusal::Failed, format!("the answer is not the agent's credentials JSON: {e}")))?;
    let expiry =
        aws_smithy_types::DateTime::from_str(&c.expiration, aws_smithy_types::date_time::Format::DateTime)
            .ok()
            .and_then(|t| SystemTime::try_from(t).ok())
            .ok_or_else(|| {
                fail(Refusal::Failed, format!("Expiration {:?} is not an RFC 3339 time", c.expiration))
            })?;
    tracing::debug!(
        access_key_id = %c.access_key_id,
        account = c.account_id.as_deref().unwrap_or("?"),
        "exchanged a workload's token (Pod Identity)"
    );
    Ok(Credentials::new(
        c.access_key_id,
        c.secret_access_key.expose(),
        Some(c.token.expose().to_owned()),
        Some(expiry),
        "eks-pod-identity",
    ))
}
