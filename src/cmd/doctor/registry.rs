//! The steps for one registry: its endpoints, AssumeRole, GetAuthorizationToken
//! and the registry itself with the token.

use aws_credential_types::Credentials;

use super::classify::{assume_role_fix, get_token_fix, repository_fix};
use super::report::{silent, Failed, Passed, Report};
use super::{reach, Context, Target};
use crate::aws::{ecr, sts};
use crate::cmd::policy::{Access, Setup};
use crate::config::RegistryConfig;
use crate::tokens::{FetchError, FetchedToken, Refusal};

/// The STS and ECR endpoints `registry`'s calls go to.
pub(super) fn endpoints(cx: &Context<'_>, registry: &RegistryConfig, report: &mut Report) {
    let host = Some(registry.host.as_str());
    let (region, fips) = cx.settings.sts_target(registry, cx.instance_region.as_deref());
    match ecr::endpoints(registry, &region, cx.settings.use_fips) {
        Ok((sts_url, ecr_url)) => {
            let fips = if fips { ", FIPS" } else { "" };
            report.pass(
                "endpoints",
                host,
                format!("STS {sts_url} (sts_region {region}), ECR {ecr_url}{fips}"),
            );
        }
        Err(e) => report.fail("endpoints", host, e, "check sts_region and the registry's region".into()),
    }
}

/// AssumeRole (when the registry names a role), GetAuthorizationToken, and
/// the registry with that token; stops at the first step that fails.
pub(super) async fn check(
    cx: &Context<'_>,
    target: &Target,
    instance: &Credentials,
    identity: Option<&str>,
    report: &mut Report,
) {
    let r = &target.registry;
    let setup = setup(target, identity);
    let creds = match sts::RoleSession::of(r) {
        Some(role) => match assume(cx, r, &role, instance, &setup, report).await {
            Some(creds) => creds,
            None => return,
        },
        None => instance.clone(),
    };
    let Some(token) = token(cx, r, creds, &setup, report).await else { return };
    let repo = target.repository.as_deref();
    let fix = repository_fix(&setup);
    reach::registry_reachable(r, repo, (&token.username, token.secret.expose()), &fix, report).await;
}

/// The IAM setup doctor's fixes are phrased in.
fn setup(target: &Target, identity: Option<&str>) -> Setup {
    let r = &target.registry;
    Setup {
        registry_account: r.account.clone(),
        instance_account: identity.and_then(|a| a.split(':').nth(4)).unwrap_or("<B>").to_owned(),
        role_name: r.role_arn.as_deref().and_then(|a| a.rsplit('/').next()).unwrap_or("<role>").to_owned(),
        instance_role: identity.and_then(|a| a.split('/').nth(1)).map(str::to_owned),
        repositories: target.repository.iter().cloned().collect(),
        access: Access::Pull,
        external_id: r.external_id.clone(),
        partition: "aws".into(),
        ecr_public: r.public,
        ..Setup::default()
    }
}

async fn assume(
    cx: &Context<'_>,
    r: &RegistryConfig,
    role: &sts::RoleSession,
    instance: &Credentials,
    setup: &Setup,
    report: &mut Report,
) -> Option<Credentials> {
    let target = cx.settings.sts_target(r, cx.instance_region.as_deref());
    let client = sts::client(cx.base, &target, instance.clone());
    let role_arn = &role.role_arn;
    let call = sts::assume_role(&client, role);
    report
        .step("sts:AssumeRole", Some(&r.host), call, silent("STS"), |answer| match answer {
            Ok(creds) => Ok(Passed::new(creds, format!("assumed {role_arn}"))),
            Err(f) => {
                let fix = assume_role_fix(f.refusal, setup, r.external_id.is_some());
                Err(Failed::new(format!("{role_arn}: {}", f.reason), fix))
            }
        })
        .await
}

async fn token(
    cx: &Context<'_>,
    r: &RegistryConfig,
    creds: Credentials,
    setup: &Setup,
    report: &mut Report,
) -> Option<FetchedToken> {
    let step = if r.public { "ecr-public:GetAuthorizationToken" } else { "ecr:GetAuthorizationToken" };
    let call = async {
        if r.public {
            ecr::public_token(cx.base, creds).await
        } else {
            ecr::private_token(cx.base, r, creds, cx.settings.use_fips).await
        }
    };
    report
        .step(step, Some(&r.host), call, silent("ECR"), |answer| match answer {
            Ok(token) => Ok(Passed::new(token, format!("token for {} in {}", r.account, r.region))),
            Err(
                FetchError::GetAuthorizationToken { refusal, reason, .. }
                | FetchError::GetPublicAuthorizationToken { refusal, reason },
            ) => {
                let fix = if r.public && refusal == Refusal::Denied {
                    "allow ecr-public:GetAuthorizationToken and sts:GetServiceBearerToken on \"*\" in the permissions policy of the principal that fetches the token".into()
                } else {
                    get_token_fix(refusal, setup)
                };
                Err(Failed::new(reason, fix))
            }
            Err(e) => Err(Failed::new(e.to_string(), "retry; ECR answered oddly")),
        })
        .await
}
