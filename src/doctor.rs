//! `ecr-credd doctor`: walks IMDS -> identity -> AssumeRole ->
//! GetAuthorizationToken -> registry -> daemon -> client config for each
//! registry and says which setup step is missing, with the fix.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use aws_sdk_sts::config::Region;
use serde::Serialize;

use crate::config::{Config, RegistryConfig};
use crate::credential_source::{first_credentials, CredentialSource};
use crate::credentials::{describe_sdk_error, AwsSettings};
use crate::policy::{Access, Setup};
use crate::token_source::FetchError;
use ecr_credd_client::registry::normalize_host;

mod classify;
mod local;

pub use classify::{assume_role_fix, classify_assume_role, get_token_fix, AssumeRoleCause};

/// Every network step gives up after this.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// One line of the report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    /// What was checked, e.g. `sts:AssumeRole`.
    pub check: String,
    /// The registry, when the check is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What to do, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn pass(check: &str, registry: Option<&str>, detail: String) -> Self {
        Check { check: check.into(), registry: registry.map(Into::into), ok: true, detail, fix: None }
    }
    fn fail(check: &str, registry: Option<&str>, detail: String, fix: String) -> Self {
        Check { check: check.into(), registry: registry.map(Into::into), ok: false, detail, fix: Some(fix) }
    }
}

/// What doctor looks at.
pub struct Target {
    /// The registry as configured (or as an unlisted ECR host).
    pub registry: RegistryConfig,
    /// `HOST/REPO` given on the command line: the repository to probe.
    pub repository: Option<String>,
}

/// The registries to examine: those named on the command line, else all configured.
pub fn targets(config: &Config, args: &[String]) -> Result<Vec<Target>, String> {
    if args.is_empty() {
        return Ok(config
            .registries
            .iter()
            .map(|r| Target { registry: r.clone(), repository: None })
            .collect());
    }
    args.iter()
        .map(|arg| {
            let trimmed = arg.trim().trim_start_matches("https://").trim_start_matches("http://");
            let (host_part, repo) = match trimmed.split_once('/') {
                Some((h, r)) if !r.is_empty() => (h, Some(r.trim_end_matches('/').to_owned())),
                _ => (trimmed, None),
            };
            let host = normalize_host(host_part).map_err(|e| format!("{arg}: {e}"))?;
            let registry = config
                .registries
                .iter()
                .find(|r| r.host == host)
                .cloned()
                .or_else(|| RegistryConfig::unlisted(&host))
                .ok_or_else(|| format!("{host} is neither configured nor an ECR hostname"))?;
            Ok(Target { registry, repository: repo })
        })
        .collect()
}

async fn within<T>(fut: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::time::timeout(STEP_TIMEOUT, fut).await.ok()
}

/// The base credentials from a configured source other than the instance
/// profile: which source gave them, and (under `chain`) what each earlier one lacked.
async fn base_from_source(
    base: &SdkConfig,
    settings: &AwsSettings,
    checks: &mut Vec<Check>,
) -> Option<(Credentials, String)> {
    let providers = settings
        .credentials
        .providers(&crate::proxy::imds_provider_config(), &crate::credentials::other_providers(base));
    let fix = match &settings.credentials {
        CredentialSource::Env => "export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the service's environment",
        CredentialSource::Profile(_) => "check the profile in AWS_CONFIG_FILE (~/.aws/config): keys, sso_session, or a working credential_process",
        CredentialSource::WebIdentity => "set AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (IRSA does in the pod) and let the role trust the cluster's OIDC provider (ecr-credd policy --source web-identity)",
        CredentialSource::Container => "run where the container credentials endpoint is set (ECS task role, EKS Pod Identity association)",
        _ => "see the reasons above; ecr-credd policy --source prints the trust each source needs",
    };
    match within(first_credentials(&providers)).await {
        Some((Ok((name, creds)), lacked)) => {
            let skipped =
                if lacked.is_empty() { String::new() } else { format!("; not from: {}", lacked.join("; ")) };
            checks.push(Check::pass("base credentials", None, format!("{} gave them{skipped}", name)));
            Some((creds, name))
        }
        Some((Err(reason), _)) => {
            checks.push(Check::fail(
                "base credentials",
                None,
                format!("{}: {reason}", settings.credentials),
                fix.into(),
            ));
            None
        }
        None => {
            checks.push(Check::fail(
                "base credentials",
                None,
                format!("{}: no answer in time", settings.credentials),
                fix.into(),
            ));
            None
        }
    }
}

/// Runs every check; never hangs (each network step has a timeout).
pub async fn run(
    base: &SdkConfig,
    settings: &AwsSettings,
    targets: &[Target],
    socket: &Path,
    homes: &[PathBuf],
) -> Vec<Check> {
    let mut checks = Vec::new();
    let imds_config = crate::proxy::imds_provider_config();
    let imds = aws_config::imds::Client::builder().configure(&imds_config).build();
    if settings.credentials != CredentialSource::Instance {
        let found = base_from_source(base, settings, &mut checks).await;
        let from_imds = found.as_ref().is_some_and(|(_, name)| name == crate::credential_source::IMDS_NAME);
        let instance_region = if from_imds { imds_region(&imds).await } else { None };
        let instance = found.map(|(c, _)| c);
        return finish(base, settings, instance, instance_region, targets, socket, homes, checks).await;
    }
    let imds_fix =
        "the instance needs an instance profile (aws ec2 associate-iam-instance-profile) and IMDSv2 \
         reachable: HttpTokens=required is fine; from containers HttpPutResponseHopLimit must be 2 or more; \
         AWS_EC2_METADATA_SERVICE_ENDPOINT overrides the address";
    let role_name = match within(imds.get("/latest/meta-data/iam/security-credentials/")).await {
        Some(Ok(names)) if !names.as_ref().trim().is_empty() => {
            let name = names.as_ref().lines().next().unwrap_or_default().to_owned();
            checks.push(Check::pass("IMDSv2", None, format!("instance profile role {name}")));
            Some(name)
        }
        Some(Ok(_)) => {
            checks.push(Check::fail(
                "IMDSv2",
                None,
                "no instance profile is attached".into(),
                imds_fix.into(),
            ));
            None
        }
        Some(Err(e)) => {
            checks.push(Check::fail("IMDSv2", None, crate::credentials::error_chain(&e), imds_fix.into()));
            None
        }
        None => {
            checks.push(Check::fail(
                "IMDSv2",
                None,
                format!("no answer within {STEP_TIMEOUT:?}"),
                imds_fix.into(),
            ));
            None
        }
    };
    let instance = match role_name {
        Some(_) => {
            within(ImdsCredentialsProvider::builder().configure(&imds_config).build().provide_credentials())
                .await
                .and_then(Result::ok)
        }
        None => None,
    };
    let instance_region = imds_region(&imds).await;
    finish(base, settings, instance, instance_region, targets, socket, homes, checks).await
}

/// The instance's region from IMDS, if it answers in time.
async fn imds_region(imds: &aws_config::imds::Client) -> Option<String> {
    match within(imds.get("/latest/meta-data/placement/region")).await {
        Some(Ok(r)) => Some(r.as_ref().trim().to_owned()).filter(|r| !r.is_empty()),
        _ => None,
    }
}

/// The checks after the base credentials: identity, each registry, the
/// daemon and the clients.
#[allow(clippy::too_many_arguments)]
async fn finish(
    base: &SdkConfig,
    settings: &AwsSettings,
    instance: Option<Credentials>,
    instance_region: Option<String>,
    targets: &[Target],
    socket: &Path,
    homes: &[PathBuf],
    mut checks: Vec<Check>,
) -> Vec<Check> {
    let first = targets.first().map(|t| settings.sts_target(&t.registry, instance_region.as_deref()));
    let (region, fips) = first.unwrap_or_else(|| ("us-east-1".into(), settings.use_fips));
    let identity = match &instance {
        Some(creds) => {
            let sts = sts_client(base, &region, fips, creds.clone());
            match within(sts.get_caller_identity().send()).await {
                Some(Ok(out)) => {
                    let arn = out.arn().unwrap_or_default().to_owned();
                    checks.push(Check::pass(
                        "instance identity",
                        None,
                        format!("account {} as {arn}", out.account().unwrap_or("?")),
                    ));
                    Some(arn)
                }
                Some(Err(e)) => {
                    let (_, reason) = describe_sdk_error(&e);
                    checks.push(Check::fail(
                        "instance identity",
                        None,
                        format!("sts:GetCallerIdentity: {reason}"),
                        "check outbound access to STS (proxy, VPC endpoint) and the instance credentials"
                            .into(),
                    ));
                    None
                }
                None => {
                    checks.push(Check::fail(
                        "instance identity",
                        None,
                        "STS did not answer in time".into(),
                        "check outbound HTTPS to STS".into(),
                    ));
                    None
                }
            }
        }
        None => None,
    };
    for target in targets {
        let sts = settings.sts_target(&target.registry, instance_region.as_deref());
        match crate::ecr::endpoints(&target.registry, &sts.0, settings.use_fips) {
            Ok((sts_url, ecr_url)) => checks.push(Check::pass(
                "endpoints",
                Some(&target.registry.host),
                format!(
                    "STS {sts_url} (sts_region {}), ECR {ecr_url}{}",
                    sts.0,
                    if sts.1 { ", FIPS" } else { "" }
                ),
            )),
            Err(e) => checks.push(Check::fail(
                "endpoints",
                Some(&target.registry.host),
                e,
                "check sts_region and the registry's region".into(),
            )),
        }
        let registry_checks = match &instance {
            Some(creds) => check_registry(base, settings, &sts, target, creds, identity.as_deref()).await,
            None => Vec::new(),
        };
        checks.extend(registry_checks);
    }
    checks.extend(local::daemon(socket, targets).await);
    checks.extend(local::client_config(targets, homes));
    checks
}

fn sts_client(base: &SdkConfig, region: &str, fips: bool, creds: Credentials) -> aws_sdk_sts::Client {
    let conf = aws_sdk_sts::config::Builder::from(base)
        .region(Region::new(region.to_owned()))
        .use_fips(fips)
        .credentials_provider(creds)
        .build();
    aws_sdk_sts::Client::from_conf(conf)
}

async fn check_registry(
    base: &SdkConfig,
    settings: &AwsSettings,
    (sts_region, sts_fips): &(String, bool),
    target: &Target,
    instance: &Credentials,
    identity: Option<&str>,
) -> Vec<Check> {
    let r = &target.registry;
    let host = Some(r.host.as_str());
    let mut checks = Vec::new();
    let setup = Setup {
        registry_account: r.account.clone(),
        instance_account: identity.and_then(|a| a.split(':').nth(4)).unwrap_or("<B>").to_owned(),
        role_name: r.role_arn.as_deref().and_then(|a| a.rsplit('/').next()).unwrap_or("<role>").to_owned(),
        instance_role: identity.and_then(|a| a.split('/').nth(1)).map(str::to_owned),
        repositories: target.repository.iter().cloned().collect(),
        access: Access::Pull,
        external_id: r.external_id.clone(),
        partition: "aws".into(),
        ecr_public: r.public,
        source: crate::policy::BaseSource::Instance,
        oidc_provider: None,
        service_account: None,
    };
    let creds = match &r.role_arn {
        Some(role_arn) => {
            let sts = sts_client(base, sts_region, *sts_fips, instance.clone());
            let call = sts
                .assume_role()
                .role_arn(role_arn)
                .role_session_name(&r.session_name)
                .set_external_id(r.external_id.clone())
                .send();
            match within(call).await {
                Some(Ok(out)) => match out.credentials() {
                    Some(c) => {
                        checks.push(Check::pass("sts:AssumeRole", host, format!("assumed {role_arn}")));
                        Credentials::new(
                            c.access_key_id(),
                            c.secret_access_key(),
                            Some(c.session_token().to_owned()),
                            None,
                            "doctor",
                        )
                    }
                    None => {
                        checks.push(Check::fail(
                            "sts:AssumeRole",
                            host,
                            "no credentials in the answer".into(),
                            "retry; STS answered oddly".into(),
                        ));
                        return checks;
                    }
                },
                Some(Err(e)) => {
                    let (denied, reason) = describe_sdk_error(&e);
                    let cause = classify_assume_role(denied, &reason);
                    checks.push(Check::fail(
                        "sts:AssumeRole",
                        host,
                        format!("{role_arn}: {reason}"),
                        assume_role_fix(cause, &setup, r.external_id.is_some()),
                    ));
                    return checks;
                }
                None => {
                    checks.push(Check::fail(
                        "sts:AssumeRole",
                        host,
                        "STS did not answer in time".into(),
                        "check outbound HTTPS to STS".into(),
                    ));
                    return checks;
                }
            }
        }
        None => instance.clone(),
    };
    let step = if r.public { "ecr-public:GetAuthorizationToken" } else { "ecr:GetAuthorizationToken" };
    let call = async {
        if r.public {
            crate::ecr::public_token(base, creds).await
        } else {
            crate::ecr::private_token(base, r, creds, settings.use_fips).await
        }
    };
    let token = match within(call).await {
        Some(Ok(token)) => {
            checks.push(Check::pass(step, host, format!("token for {} in {}", r.account, r.region)));
            token
        }
        Some(Err(
            FetchError::GetAuthorizationToken { denied, reason, .. }
            | FetchError::GetPublicAuthorizationToken { denied, reason },
        )) => {
            let fix = if r.public && denied {
                "allow ecr-public:GetAuthorizationToken and sts:GetServiceBearerToken on \"*\" in the permissions policy of the principal that fetches the token".into()
            } else {
                get_token_fix(denied, &setup)
            };
            checks.push(Check::fail(step, host, reason, fix));
            return checks;
        }
        Some(Err(e)) => {
            checks.push(Check::fail(step, host, e.to_string(), "retry; ECR answered oddly".into()));
            return checks;
        }
        None => {
            checks.push(Check::fail(
                step,
                host,
                "ECR did not answer in time".into(),
                "check outbound HTTPS to ECR".into(),
            ));
            return checks;
        }
    };
    let password = (token.username, token.password);
    checks.push(
        local::registry_reachable(r, target.repository.as_deref(), &password.0, password.1.expose(), &setup)
            .await,
    );
    checks
}

/// The report as lines for a person.
pub fn render_text(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let mark = if c.ok { "ok  " } else { "FAIL" };
        let reg = c.registry.as_deref().map(|r| format!(" [{r}]")).unwrap_or_default();
        out += &format!("{mark} {}{reg}: {}\n", c.check, c.detail);
        if let Some(fix) = &c.fix {
            for line in fix.lines() {
                out += &format!("       {line}\n");
            }
        }
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    out +=
        &if failed == 0 { "all checks passed\n".to_owned() } else { format!("{failed} check(s) failed\n") };
    out
}
