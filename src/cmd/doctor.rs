//! `ecr-credd doctor`: walks IMDS -> identity -> AssumeRole ->
//! GetAuthorizationToken -> registry -> daemon -> client config for each
//! registry and says which setup step is missing, with the fix.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use serde::Serialize;

use crate::aws::chain::AwsSettings;
use crate::aws::ecr::sdk_config;
use crate::aws::http::{imds_provider_config, Proxy};
use crate::aws::providers::{CredentialSource, ProviderKind};
use crate::config::{Config, RegistryConfig};
use ecr_credd_client::registry::normalize_host;

mod base;
mod claims;
mod classify;
mod local;
mod reach;
mod registry;
mod report;
mod workload;

pub(crate) use workload::WorkloadCheck;

use report::{Failed, Passed, Report};

/// Every network step gives up after this.
pub(super) const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// One line of the report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(super) struct Check {
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

/// What doctor looks at.
pub(super) struct Target {
    /// The registry as configured (or as an unlisted ECR host).
    pub registry: RegistryConfig,
    /// `HOST/REPO` given on the command line: the repository to probe.
    pub repository: Option<String>,
}

/// The registries to examine: those named on the command line, else all configured.
pub(super) fn targets(config: &Config, args: &[String]) -> Result<Vec<Target>, String> {
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

/// `doctor`: loads the config, runs every check and prints the report;
/// `Ok(false)` when a check failed.
pub(super) fn command(
    hosts: &[String],
    config: Option<PathBuf>,
    socket: Option<PathBuf>,
    workload: Option<WorkloadCheck>,
    kubelet_config: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<bool> {
    let (_, config) = super::load_config(config)?;
    let targets = targets(&config, hosts).map_err(anyhow::Error::msg)?;
    let socket = socket
        .or_else(|| std::env::var_os("ECR_CREDD_SOCKET").map(Into::into))
        .unwrap_or_else(|| config.socket.clone());
    let mut homes: Vec<PathBuf> = std::env::var_os("HOME").map(Into::into).into_iter().collect();
    homes.push("/root".into());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let checks = runtime.block_on(async {
        let base = sdk_config(Proxy::resolve(&config).as_ref()).await?;
        let settings = AwsSettings::from_config(&config);
        anyhow::Ok(match &workload {
            Some(pod) => run_workload(&base, &settings, &config, &targets, pod).await,
            None => {
                let mut checks = run(&base, &settings, &targets, &socket, &homes).await;
                checks.extend(local::kubelet_config(&targets, kubelet_config.as_deref()));
                checks
            }
        })
    })?;
    let ok = checks.iter().all(|c| c.ok);
    if json {
        let report = serde_json::json!({ "ok": ok, "checks": checks });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_text(&checks));
    }
    Ok(ok)
}

/// What the registry checks share: the SDK settings, the `[aws]` settings
/// and the instance's region (where STS is called by default).
struct Context<'a> {
    base: &'a SdkConfig,
    settings: &'a AwsSettings,
    instance_region: Option<String>,
}

/// Runs every check; never hangs (each network step has a timeout).
pub(super) async fn run(
    base: &SdkConfig,
    settings: &AwsSettings,
    targets: &[Target],
    socket: &Path,
    homes: &[PathBuf],
) -> Vec<Check> {
    let mut report = Report::default();
    let imds = aws_config::imds::Client::builder().configure(&imds_provider_config()).build();
    let (instance, instance_region) = if settings.credentials == CredentialSource::Instance {
        let creds = instance_profile(&imds, &mut report).await;
        (creds, base::imds_region(&imds).await)
    } else {
        let found = base::from_source(base, settings, &mut report).await;
        let from_imds = found.as_ref().is_some_and(|(_, answered)| answered.kind == ProviderKind::Imds);
        let region = if from_imds { base::imds_region(&imds).await } else { None };
        (found.map(|(c, _)| c), region)
    };
    let cx = Context { base, settings, instance_region };
    let identity = match &instance {
        Some(creds) => base::identity(&cx, creds, targets, &mut report).await,
        None => None,
    };
    for target in targets {
        registry::endpoints(&cx, &target.registry, &mut report);
        if let Some(creds) = &instance {
            registry::check(&cx, target, creds, identity.as_deref(), &mut report).await;
        }
    }
    let mut checks = report.into_checks();
    checks.extend(local::daemon(socket, targets).await);
    checks.extend(local::client_config(targets, homes));
    checks
}

/// A pod's own pull, step by step: its token, the exchange, the chained
/// role, ECR and the registry; the node's credentials play no part.
async fn run_workload(
    base: &SdkConfig,
    settings: &AwsSettings,
    config: &Config,
    targets: &[Target],
    pod: &WorkloadCheck,
) -> Vec<Check> {
    let mut report = Report::default();
    // Only where STS is called by default comes from the instance.
    let instance_region = if settings.credentials == CredentialSource::Instance {
        let imds = aws_config::imds::Client::builder().configure(&imds_provider_config()).build();
        base::imds_region(&imds).await
    } else {
        None
    };
    let cx = Context { base, settings, instance_region };
    workload::run(&cx, &config.workload, targets, pod, &mut report).await;
    report.into_checks()
}

/// The instance profile's credentials from IMDSv2, with the role's name.
async fn instance_profile(imds: &aws_config::imds::Client, report: &mut Report) -> Option<Credentials> {
    const FIX: &str =
        "the instance needs an instance profile (aws ec2 associate-iam-instance-profile) and IMDSv2 \
         reachable: HttpTokens=required is fine; from containers HttpPutResponseHopLimit must be 2 or more; \
         AWS_EC2_METADATA_SERVICE_ENDPOINT overrides the address";
    let late = Failed::new(format!("no answer within {STEP_TIMEOUT:?}"), FIX);
    let call = imds.get("/latest/meta-data/iam/security-credentials/");
    report
        .step("IMDSv2", None, call, late, |answer| match answer {
            Ok(names) if !names.as_ref().trim().is_empty() => {
                let name = names.as_ref().lines().next().unwrap_or_default().to_owned();
                Ok(Passed::new((), format!("instance profile role {name}")))
            }
            Ok(_) => Err(Failed::new("no instance profile is attached".into(), FIX)),
            Err(e) => Err(Failed::new(crate::aws::sdk_error::error_chain(&e), FIX)),
        })
        .await?;
    let provider = ImdsCredentialsProvider::builder().configure(&imds_provider_config()).build();
    report::within(provider.provide_credentials()).await.and_then(Result::ok)
}

/// The report as lines for a person.
pub(super) fn render_text(checks: &[Check]) -> String {
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
