//! The first steps: the base credentials (from the configured source), the
//! instance's region, and who those credentials are.

use aws_config::SdkConfig;
use aws_credential_types::Credentials;

use super::report::{silent, within, Failed, Passed, Report};
use super::{Context, Target};
use crate::aws::chain::{other_providers, AwsSettings};
use crate::aws::http::imds_provider_config;
use crate::aws::providers::{first_credentials, Answered, CredentialSource};
use crate::aws::sdk_error::describe_sdk_error;
use crate::aws::sts;

/// The base credentials from a configured source other than the instance
/// profile: which source gave them, and (under `chain`) what each earlier
/// one lacked.
pub(super) async fn from_source(
    base: &SdkConfig,
    settings: &AwsSettings,
    report: &mut Report,
) -> Option<(Credentials, Answered)> {
    let providers = settings.credentials.providers(&imds_provider_config(), &other_providers(base));
    let fix = match &settings.credentials {
        CredentialSource::Env => "export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the service's environment",
        CredentialSource::Profile(_) => "check the profile in AWS_CONFIG_FILE (~/.aws/config): keys, sso_session, or a working credential_process",
        CredentialSource::WebIdentity => "set AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (IRSA does in the pod) and let the role trust the cluster's OIDC provider (ecr-credd policy --source web-identity)",
        CredentialSource::Container => "run where the container credentials endpoint is set (ECS task role, EKS Pod Identity association)",
        _ => "see the reasons above; ecr-credd policy --source prints the trust each source needs",
    };
    let source = &settings.credentials;
    let late = Failed::new(format!("{source}: no answer in time"), fix);
    report
        .step("base credentials", None, first_credentials(&providers), late, |(found, lacked)| match found {
            Ok((answered, creds)) => {
                let skipped = if lacked.is_empty() {
                    String::new()
                } else {
                    format!("; not from: {}", lacked.join("; "))
                };
                let detail = format!("{} gave them{skipped}", answered.name);
                Ok(Passed::new((creds, answered), detail))
            }
            Err(reason) => Err(Failed::new(format!("{source}: {reason}"), fix)),
        })
        .await
}

/// The instance's region from IMDS, if it answers in time.
pub(super) async fn imds_region(imds: &aws_config::imds::Client) -> Option<String> {
    match within(imds.get("/latest/meta-data/placement/region")).await {
        Some(Ok(r)) => Some(r.as_ref().trim().to_owned()).filter(|r| !r.is_empty()),
        _ => None,
    }
}

/// Who the base credentials are (`sts:GetCallerIdentity`), asked where the
/// first registry's STS calls go.
pub(super) async fn identity(
    cx: &Context<'_>,
    creds: &Credentials,
    targets: &[Target],
    report: &mut Report,
) -> Option<String> {
    let first = targets.first().map(|t| cx.settings.sts_target(&t.registry, cx.instance_region.as_deref()));
    let target = first.unwrap_or_else(|| ("us-east-1".into(), cx.settings.use_fips));
    let client = sts::client(cx.base, &target, creds.clone());
    let call = client.get_caller_identity().send();
    report
        .step("instance identity", None, call, silent("STS"), |answer| match answer {
            Ok(out) => {
                let arn = out.arn().unwrap_or_default().to_owned();
                let detail = format!("account {} as {arn}", out.account().unwrap_or("?"));
                Ok(Passed::new(arn, detail))
            }
            Err(e) => {
                let (_, reason) = describe_sdk_error(&e);
                let fix = "check outbound access to STS (proxy, VPC endpoint) and the instance credentials";
                Err(Failed::new(format!("sts:GetCallerIdentity: {reason}"), fix))
            }
        })
        .await
}
