//! STS calls shared by the credential chain and doctor: the client for a
//! region (FIPS when asked) and AssumeRole.

use std::time::SystemTime;

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_sdk_sts::config::Region;

use super::sdk_error::describe_sdk_error;
use crate::config::RegistryConfig;
use crate::tokens::Refusal;

/// AssumeRole session length: the STS default, and the cap for role chaining.
const SESSION_SECONDS: i32 = 3600;

/// A role to assume, as a registry configures it; also the key under which
/// the chain caches the session, so registries sharing a role share it.
#[derive(Debug, Hash, PartialEq, Eq, Clone)]
pub(crate) struct RoleSession {
    pub role_arn: String,
    /// The external ID the role's trust policy asks for.
    pub external_id: Option<String>,
    /// The session name CloudTrail shows.
    pub session_name: String,
}

impl RoleSession {
    /// The role `registry` names, if any.
    pub(crate) fn of(registry: &RegistryConfig) -> Option<Self> {
        Some(RoleSession {
            role_arn: registry.role_arn.clone()?,
            external_id: registry.external_id.clone(),
            session_name: registry.session_name.clone(),
        })
    }
}

/// Why an STS call failed.
#[derive(Debug)]
pub(crate) struct StsFailure {
    /// How STS refused (a denial is the trust or the permissions policy).
    pub refusal: Refusal,
    pub reason: String,
}

/// An STS client in `region` (FIPS when `fips`), calling with `creds`.
pub(crate) fn client(
    base: &SdkConfig,
    (region, fips): &(String, bool),
    creds: Credentials,
) -> aws_sdk_sts::Client {
    // Always a regional endpoint (the SDK's default): China, GovCloud and
    // ISO partitions have no global one. Endpoint names come from the
    // SDK's resolver, FIPS and all.
    let conf = aws_sdk_sts::config::Builder::from(base)
        .region(Region::new(region.clone()))
        .use_fips(*fips)
        .credentials_provider(creds)
        .build();
    aws_sdk_sts::Client::from_conf(conf)
}

/// Assumes `role` through `client`.
pub(crate) async fn assume_role(
    client: &aws_sdk_sts::Client,
    role: &RoleSession,
) -> Result<Credentials, StsFailure> {
    let out = client
        .assume_role()
        .role_arn(&role.role_arn)
        .role_session_name(&role.session_name)
        .set_external_id(role.external_id.clone())
        .duration_seconds(SESSION_SECONDS)
        .send()
        .await
        .map_err(|e| {
            let (refusal, reason) = describe_sdk_error(&e);
            StsFailure { refusal, reason }
        })?;
    // Never `{:?}` the output: STS does not mark the session token sensitive.
    let c = out.credentials().ok_or_else(|| StsFailure {
        refusal: Refusal::Failed,
        reason: "the response carried no credentials".into(),
    })?;
    let expiry = SystemTime::try_from(*c.expiration()).ok();
    tracing::debug!(role_arn = %role.role_arn, access_key_id = c.access_key_id(), "assumed role");
    Ok(Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_owned()),
        expiry,
        "sts:AssumeRole",
    ))
}
