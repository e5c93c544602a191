//! `doctor --service-account-token FILE`: a pod's own pull, step by step:
//! the token's claims and audience, the role and the allow-list, the
//! exchange (IRSA's trust, or the Pod Identity Agent and its association),
//! the chained role, ECR's permission, and the registry with the token.
//! Each failure names its step and prints the document that makes it pass.

use std::path::PathBuf;
use std::time::SystemTime;

use aws_credential_types::Credentials;

use super::claims::Claims;
use super::classify::{json, not_denied};
use super::report::{silent, within, Failed, Passed, Report};
use super::{reach, Context, Target};
use crate::aws::{ecr, sts, workload as exchange};
use crate::cmd::policy::{Setup, WorkloadDocuments, IRSA_AUDIENCE, POD_IDENTITY_AUDIENCE};
use crate::config::workload::{ExchangeKind, WorkloadConfig};
use crate::config::RegistryConfig;
use crate::tokens::{FetchError, Refusal};
use crate::workload::{decide, Decision};
use ecr_credd_client::secret::Secret;

/// What `--service-account-token` and its companions asked for.
#[derive(Debug, Clone)]
pub(crate) struct WorkloadCheck {
    /// The pod's token, as the kubelet would pass it.
    pub token_file: PathBuf,
    /// The role the pod's service account names (IRSA), or its association's.
    pub role: Option<String>,
    /// The audience the exchange expects, when not the exchange's default.
    pub audience: Option<String>,
}

/// What every registry's steps share.
struct Pod<'a> {
    kind: ExchangeKind,
    config: &'a WorkloadConfig,
    token: Secret,
    claims: Claims,
    role: Option<String>,
    audience: String,
}

/// Runs the pod's steps for every target.
pub(super) async fn run(
    cx: &Context<'_>,
    config: &WorkloadConfig,
    targets: &[Target],
    check: &WorkloadCheck,
    report: &mut Report,
) {
    let kind = config.exchange;
    if config.enabled {
        report.pass("workload config", None, format!("[workload] enabled, exchange = \"{}\"", kind.name()));
    } else {
        report.fail(
            "workload config",
            None,
            "[workload] is off: the daemon refuses every pod that names a role".into(),
            "set [workload] enabled = true (and exchange = \"irsa\" or \"pod-identity\") in the config, then \
             systemctl reload ecr-credd"
                .into(),
        );
    }
    let Some(pod) = pod(kind, config, check, report) else { return };
    for target in targets {
        registry(cx, &pod, target, report).await;
    }
}

/// The token's claims, its audience and (IRSA) the role: `None` when a
/// step failed, for no exchange can succeed after it.
fn pod<'a>(
    kind: ExchangeKind,
    config: &'a WorkloadConfig,
    check: &WorkloadCheck,
    report: &mut Report,
) -> Option<Pod<'a>> {
    let default_audience = match kind {
        ExchangeKind::Irsa => IRSA_AUDIENCE,
        ExchangeKind::PodIdentity => POD_IDENTITY_AUDIENCE,
    };
    let audience = check.audience.clone().unwrap_or_else(|| default_audience.into());
    let file = check.token_file.display();
    let new_token = |claims: Option<&Claims>| {
        let (ns, name) =
            claims.and_then(Claims::service_account).unwrap_or_else(|| ("NAMESPACE".into(), "NAME".into()));
        format!(
            "write a fresh token for the pod's service account: kubectl create token {name} --namespace {ns} \
             --audience {audience} > {file}"
        )
    };
    let step = "service-account token";
    let token = match std::fs::read_to_string(&check.token_file) {
        // The file's copy is zeroed too, not only the Secret's.
        Ok(text) => Secret::new(zeroize::Zeroizing::new(text).trim().to_owned()),
        Err(e) => return fail(report, step, format!("{file}: {e}"), new_token(None)),
    };
    let claims = match Claims::of(token.expose()) {
        Ok(claims) => claims,
        Err(why) => return fail(report, step, format!("{file}: {why}"), new_token(None)),
    };
    let expiry = match claims.expires_in(SystemTime::now()) {
        Some(left) if left <= 0 => {
            return fail(
                report,
                step,
                format!("{file}: expired {} min ago", -left / 60),
                new_token(Some(&claims)),
            )
        }
        Some(left) => format!("expires in {} min", left / 60),
        None => "no exp claim".into(),
    };
    report.pass(step, None, format!("sub {}, issuer {}, {expiry}", claims.sub, claims.iss));

    if !claims.aud.contains(&audience) {
        let other = match kind {
            ExchangeKind::Irsa => {
                "; or, if the role's OIDC trust expects another audience, pass it with --audience"
            }
            ExchangeKind::PodIdentity => "; the Pod Identity Agent accepts no other",
        };
        let fix = format!(
            "the kubelet must request the token for {audience}: tokenAttributes.serviceAccountTokenAudience: \
             {audience} in its CredentialProviderConfig{other}"
        );
        return fail(report, "audience", format!("the token is for {:?}, not {audience}", claims.aud), fix);
    }
    report.pass("audience", None, audience.clone());

    let role = check.role.clone();
    if kind == ExchangeKind::Irsa {
        let Some(role_arn) = &role else {
            let (ns, name) = claims.service_account().unwrap_or_default();
            let fix = format!(
                "pass --role with the service account's {key} annotation: kubectl get serviceaccount --namespace \
                 {ns} {name} -o jsonpath='{{.metadata.annotations}}'",
                key = config.role_annotation
            );
            return fail(
                report,
                "workload role",
                "no --role given (IRSA names it in an annotation)".into(),
                fix,
            );
        };
        let enabled = WorkloadConfig { enabled: true, ..config.clone() };
        let annotations = [(config.role_annotation.clone(), role_arn.clone())].into();
        if let Decision::Refuse(why) = decide(&enabled, true, &annotations) {
            let fix = "add a pattern that matches it to [workload] allowed_roles, or name a role it allows";
            return fail(report, "allow-list", why, fix.into());
        }
        let by = if config.allowed_roles.is_empty() {
            "any role: allowed_roles is empty"
        } else {
            "allowed_roles"
        };
        report.pass("workload role", None, format!("{role_arn} ({by})"));
    }
    Some(Pod { kind, config, token, claims, role, audience })
}

fn fail<T>(report: &mut Report, check: &str, detail: String, fix: String) -> Option<T> {
    report.fail(check, None, detail, fix);
    None
}

/// The exchange, the chained role, the token and the registry for `target`.
async fn registry(cx: &Context<'_>, pod: &Pod<'_>, target: &Target, report: &mut Report) {
    let r = &target.registry;
    let host = Some(r.host.as_str());
    let chained = pod.config.assume_registry_role.then(|| sts::RoleSession::of(r)).flatten();
    let (command, docs) = documents(pod, r, target, chained.is_some()).unzip();
    let whole = command.map(|c| format!("\n(`{c}` prints the whole setup)")).unwrap_or_default();
    let sts_target = cx.settings.sts_target(r, cx.instance_region.as_deref());

    let Some(creds) = exchanged(cx, pod, r, &sts_target, docs.as_ref(), &whole, report).await else { return };
    let creds = match chained {
        None => creds,
        Some(role) => {
            let role_arn = role.role_arn.clone();
            let client = sts::client(cx.base, &sts_target, creds);
            let call = sts::assume_role(&client, &role);
            let step = "trust (sts:AssumeRole into the registry's role)";
            let judged = report.step(step, host, call, silent("STS"), |answer| match answer {
                Ok(creds) => Ok(Passed::new(creds, format!("assumed {role_arn} as the pod"))),
                Err(f) => {
                    let fix = match (&docs, f.refusal) {
                        (Some(d), Refusal::Denied) => format!(
                            "the registry's role must trust the pods' role:\n{}\nand the pods' role may assume it:\n{}{whole}",
                            d.registry_role_trust_policy.as_ref().map(json).unwrap_or_default(),
                            json(&d.workload_role_permissions_policy)
                        ),
                        (None, Refusal::Denied) => format!(
                            "{role_arn} must trust the pods' role, and the pods' role be allowed sts:AssumeRole on it"
                        ),
                        (_, refusal) => not_denied(refusal, "STS").unwrap_or_default(),
                    };
                    Err(Failed::new(format!("{role_arn}: {}", f.reason), fix))
                }
            });
            match judged.await {
                Some(creds) => creds,
                None => return,
            }
        }
    };

    let step = "permission (ecr:GetAuthorizationToken)";
    let call = ecr::private_token(cx.base, r, creds, cx.settings.use_fips);
    let judged = report.step(step, host, call, silent("ECR"), |answer| match answer {
        Ok(token) => {
            Ok(Passed::new(token, format!("token for {} in {}, as the pod", r.account, r.region)))
        }
        Err(e) => {
            let fix = match (&docs, e.refusal().unwrap_or(Refusal::Failed)) {
                (Some(d), Refusal::Denied) => format!(
                    "the role that fetches the token may not call ecr:GetAuthorizationToken; its permissions policy \
                     should read:\n{}{whole}",
                    json(d.registry_role_permissions_policy.as_ref().unwrap_or(&d.workload_role_permissions_policy))
                ),
                (None, Refusal::Denied) => "allow ecr:GetAuthorizationToken on \"*\" to the pods' role".into(),
                (_, refusal) => not_denied(refusal, "ECR").unwrap_or_default(),
            };
            Err(Failed::new(e.to_string(), fix))
        }
    });
    let Some(token) = judged.await else { return };
    let fix = match &docs {
        Some(d) => format!(
            "the repository policy must allow the role that fetched the token; for example:\n{}{whole}",
            json(&d.repository_policy)
        ),
        None => "the repository policy must allow the pods' role (or the registry's role, chained)".into(),
    };
    let repo = target.repository.as_deref();
    reach::registry_reachable(r, repo, (&token.username, token.secret.expose()), &fix, report).await;
}

/// The pod's token exchanged for its credentials: IRSA or the agent.
async fn exchanged(
    cx: &Context<'_>,
    pod: &Pod<'_>,
    r: &RegistryConfig,
    sts_target: &(String, bool),
    docs: Option<&WorkloadDocuments>,
    whole: &str,
    report: &mut Report,
) -> Option<Credentials> {
    let host = Some(r.host.as_str());
    let trust = docs.map(|d| json(&d.workload_role_trust_policy)).unwrap_or_default();
    let (step, answer) = match pod.kind {
        ExchangeKind::Irsa => {
            let role = pod.role.as_deref().unwrap_or_default();
            (
                "trust (sts:AssumeRoleWithWebIdentity)",
                within(exchange::web_identity(cx.base, sts_target, role, &pod.token)).await,
            )
        }
        ExchangeKind::PodIdentity => {
            let endpoint = &pod.config.pod_identity_endpoint;
            ("agent (EKS Pod Identity)", within(exchange::pod_identity(endpoint, &pod.token)).await)
        }
    };
    let (refusal, reason) = match answer {
        Some(Ok(creds)) => {
            let who =
                pod.role.as_deref().map_or_else(|| "the association's role".into(), |r| format!("role {r}"));
            report.pass(step, host, format!("{who} for {}", pod.claims.sub));
            return Some(creds);
        }
        Some(Err(
            FetchError::WebIdentity { refusal, reason, .. } | FetchError::PodIdentity { refusal, reason, .. },
        )) => (refusal, reason),
        Some(Err(e)) => (Refusal::Failed, e.to_string()),
        None => (Refusal::Overloaded, "no answer in time".into()),
    };
    let (ns, name) = pod.claims.service_account().unwrap_or_default();
    let lower = reason.to_ascii_lowercase();
    let (step, fix) = match pod.kind {
        ExchangeKind::Irsa if lower.contains("audience") => ("audience", format!(
            "STS refused the token's audience {:?}: the cluster's IAM OIDC provider must list it as a client ID \
             (aws iam add-client-id-to-open-id-connect-provider), and the kubelet must request it \
             (tokenAttributes.serviceAccountTokenAudience: {})", pod.claims.aud, pod.audience)),
        ExchangeKind::Irsa if lower.contains("invalididentitytoken") => ("trust (sts:AssumeRoleWithWebIdentity)", format!(
            "the role's account has no IAM OIDC provider for the issuer {}: eksctl utils associate-iam-oidc-provider \
             --cluster CLUSTER --approve, or aws iam create-open-id-connect-provider --url {} --client-id-list {}",
            pod.claims.iss, pod.claims.iss, pod.audience)),
        ExchangeKind::Irsa if refusal == Refusal::Denied => (step, format!(
            "the role's trust policy does not trust system:serviceaccount:{ns}:{name} from {} with audience {}; \
             it should read:\n{trust}{whole}", pod.claims.provider_name(), pod.audience)),
        ExchangeKind::PodIdentity if lower.contains("unreachable") || refusal == Refusal::Overloaded => (
            "agent (EKS Pod Identity)",
            format!(
                "the agent at {} is unreachable: install the add-on (aws eks create-addon --cluster-name CLUSTER \
                 --addon-name eks-pod-identity-agent); it listens on 169.254.170.23:80 and [fd00:ec2::23]:80 of \
                 every node, and [workload] pod_identity_endpoint overrides the address",
                pod.config.pod_identity_endpoint
            ),
        ),
        ExchangeKind::PodIdentity if refusal == Refusal::Denied => ("trust (EKS Pod Identity association)", format!(
            "no association for {ns}/{name}, or its role does not trust pods.eks.amazonaws.com: \
             aws eks create-pod-identity-association --cluster-name CLUSTER --namespace {ns} --service-account {name} \
             --role-arn {}; the role's trust should read:\n{trust}{whole}",
            pod.role.as_deref().unwrap_or("ROLE_ARN"))),
        ExchangeKind::Irsa => (step, not_denied(refusal, "STS").unwrap_or_default()),
        ExchangeKind::PodIdentity => (
            step,
            "the agent refused the request (its answer is above): check the token and the agent's log \
             (kubectl logs -n kube-system -l app.kubernetes.io/name=eks-pod-identity-agent)"
                .into(),
        ),
    };
    report.fail(step, host, reason, fix);
    None
}

/// The workload setup's documents, and the `policy` command that prints
/// them, when the role and the service account are known.
fn documents(
    pod: &Pod<'_>,
    r: &RegistryConfig,
    target: &Target,
    chained: bool,
) -> Option<(String, WorkloadDocuments)> {
    let role = pod.role.as_deref()?;
    let fields: Vec<&str> = role.splitn(6, ':').collect();
    let (partition, account) = (*fields.get(1)?, *fields.get(4)?);
    let name = role.rsplit('/').next()?;
    let (ns, sa) = pod.claims.service_account()?;
    let irsa = pod.kind == ExchangeKind::Irsa;
    let setup = Setup {
        registry_account: r.account.clone(),
        instance_account: account.into(),
        role_name: name.into(),
        partition: partition.into(),
        repositories: target.repository.iter().map(|r| r.split(':').next().unwrap_or(r).to_owned()).collect(),
        workload: Some(pod.kind),
        oidc_provider: irsa
            .then(|| format!("arn:{partition}:iam::{account}:oidc-provider/{}", pod.claims.provider_name())),
        namespace: Some(ns.clone()),
        service_account: Some(sa.clone()),
        audience: irsa.then(|| pod.audience.clone()),
        registry_role: r
            .role_arn
            .as_deref()
            .filter(|_| chained)
            .and_then(|a| a.rsplit('/').next())
            .map(Into::into),
        ..Setup::default()
    };
    let docs = setup.workload_documents(pod.kind).ok()?;
    let mut command = format!(
        "ecr-credd policy --workload {} --registry-account {} --instance-account {account} --role-name {name}",
        pod.kind.name(),
        r.account
    );
    if let Some(p) = &setup.oidc_provider {
        command += &format!(" --oidc-provider {p}");
    }
    command += &format!(" --namespace {ns} --service-account {sa}");
    if let Some(rr) = &setup.registry_role {
        command += &format!(" --registry-role {rr}");
    }
    Some((command, docs))
}
