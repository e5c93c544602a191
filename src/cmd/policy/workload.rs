//! `ecr-credd policy --workload`: the documents for per-workload pulls
//! (KEP-4412), where a pod pulls as its own role in the cluster's account B,
//! either directly (A's repository policy names that role) or by chaining
//! into a role in A that trusts it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{allow, doc, oidc_issuer, strings, PolicyDocument, PolicyError, Principal, Setup, Statement};
use crate::config::workload::{ExchangeKind, DEFAULT_ROLE_ANNOTATION};

/// The audience IRSA's trust expects unless `--audience` says otherwise.
pub const IRSA_AUDIENCE: &str = "sts.amazonaws.com";
/// The audience the EKS Pod Identity Agent accepts, and no other.
pub const POD_IDENTITY_AUDIENCE: &str = "pods.eks.amazonaws.com";

/// The documents of a workload's setup, in setup order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadDocuments {
    /// The pods' own role.
    pub workload_role_arn: String,
    /// The pods' namespace.
    pub namespace: String,
    /// The pods' service account.
    pub service_account: String,
    /// Account B: who may become the pod's role (its OIDC trust or Pod Identity's).
    pub workload_role_trust_policy: PolicyDocument,
    /// Account B: what the pod's role may do (pull, or assume A's role).
    pub workload_role_permissions_policy: PolicyDocument,
    /// Account A: the repository policy on each repository.
    pub repository_policy: PolicyDocument,
    /// Account A, with --registry-role: that role's trust of the pod's role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_role_trust_policy: Option<PolicyDocument>,
    /// Account A, with --registry-role: that role's permissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_role_permissions_policy: Option<PolicyDocument>,
    /// IRSA: the annotations the pods' service account carries.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_account_annotations: BTreeMap<String, String>,
    /// The audience the kubelet must request (tokenAttributes.serviceAccountTokenAudience).
    pub audience: String,
    /// The node's `[workload]` table that matches.
    pub daemon_config: String,
}

/// What the documents are about: every ARN and name, validated.
pub(super) struct Names {
    pub kind: ExchangeKind,
    pub workload_role_arn: String,
    pub registry_role_arn: Option<String>,
    pub service_account: (String, String),
    pub audience: String,
}

impl Setup {
    /// The names of a workload setup, or the flag that is missing or wrong.
    pub(super) fn workload_names(&self, kind: ExchangeKind) -> Result<Names, PolicyError> {
        self.check()?;
        let p = &self.partition;
        if let Some(r) = &self.registry_role {
            super::check_name("--registry-role", r, b"+=,@")?;
        }
        let service_account = self.service_account()?.ok_or(PolicyError::Missing {
            flag: "--service-account",
            why: "with --workload (the role's trust, or its association, names one service account)",
        })?;
        let audience =
            match kind {
                ExchangeKind::Irsa => self.audience.clone().unwrap_or_else(|| IRSA_AUDIENCE.into()),
                ExchangeKind::PodIdentity => match &self.audience {
                    Some(a) if a != POD_IDENTITY_AUDIENCE => return Err(PolicyError::Invalid {
                        flag: "--audience",
                        value: a.clone(),
                        why:
                            "is not pods.eks.amazonaws.com, the only audience the Pod Identity Agent accepts",
                    }),
                    _ => POD_IDENTITY_AUDIENCE.into(),
                },
            };
        if audience.is_empty() || !audience.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(PolicyError::Name { flag: "--audience", value: audience });
        }
        Ok(Names {
            kind,
            workload_role_arn: format!("arn:{p}:iam::{}:role/{}", self.instance_account, self.role_name),
            registry_role_arn: self
                .registry_role
                .as_ref()
                .map(|r| format!("arn:{p}:iam::{}:role/{r}", self.registry_account)),
            service_account,
            audience,
        })
    }

    /// The workload documents for `kind`.
    pub fn workload_documents(&self, kind: ExchangeKind) -> Result<WorkloadDocuments, PolicyError> {
        let names = self.workload_names(kind)?;
        let (sid, actions, pull_policy) = self.pull_grant();
        // Pod Identity's sessions carry session tags, which a chained
        // AssumeRole passes on: the next role's trust must allow TagSession.
        let assume_actions: &[&str] = match kind {
            ExchangeKind::Irsa => &["sts:AssumeRole"],
            ExchangeKind::PodIdentity => &["sts:AssumeRole", "sts:TagSession"],
        };
        let (permissions, puller, registry_trust, registry_permissions) = match &names.registry_role_arn {
            Some(registry_role) => (
                doc(vec![allow(
                    "AssumeRegistryRole",
                    None,
                    strings(assume_actions),
                    Some(vec![registry_role.clone()]),
                )]),
                registry_role.clone(),
                Some(doc(vec![allow(
                    "TrustWorkloadRole",
                    Some(vec![names.workload_role_arn.clone()]),
                    strings(assume_actions),
                    None,
                )])),
                Some(pull_policy),
            ),
            None => (pull_policy, names.workload_role_arn.clone(), None, None),
        };
        let annotations = match kind {
            ExchangeKind::Irsa => {
                BTreeMap::from([(DEFAULT_ROLE_ANNOTATION.to_owned(), names.workload_role_arn.clone())])
            }
            ExchangeKind::PodIdentity => BTreeMap::new(),
        };
        Ok(WorkloadDocuments {
            workload_role_arn: names.workload_role_arn.clone(),
            namespace: names.service_account.0.clone(),
            service_account: names.service_account.1.clone(),
            workload_role_trust_policy: doc(vec![self.workload_trust(&names)?]),
            workload_role_permissions_policy: permissions,
            repository_policy: doc(vec![allow(sid, Some(vec![puller]), actions, None)]),
            registry_role_trust_policy: registry_trust,
            registry_role_permissions_policy: registry_permissions,
            service_account_annotations: annotations,
            audience: names.audience.clone(),
            daemon_config: daemon_config(&names),
        })
    }

    /// The pod's role's trust: the cluster's OIDC provider for one service
    /// account and audience (IRSA), or Pod Identity, scoped by its session
    /// tags to the service account.
    fn workload_trust(&self, names: &Names) -> Result<Statement, PolicyError> {
        let condition = |pairs: Vec<(String, String)>| {
            Some(BTreeMap::from([("StringEquals".to_owned(), pairs.into_iter().collect())]))
        };
        match names.kind {
            ExchangeKind::Irsa => {
                let provider = self.oidc_provider.clone().ok_or(PolicyError::Missing {
                    flag: "--oidc-provider",
                    why: "with --workload irsa (the cluster's IAM OIDC provider ARN)",
                })?;
                let issuer = oidc_issuer(&provider)?;
                if provider.split(':').nth(4) != Some(self.instance_account.as_str()) {
                    return Err(PolicyError::Invalid {
                        flag: "--oidc-provider",
                        value: provider,
                        why: "is not in --instance-account, the account of the pod's role",
                    });
                }
                let (ns, name) = &names.service_account;
                Ok(Statement {
                    principal: Some(Principal { federated: Some(provider), ..Principal::default() }),
                    condition: condition(vec![
                        (format!("{issuer}:aud"), names.audience.clone()),
                        (format!("{issuer}:sub"), format!("system:serviceaccount:{ns}:{name}")),
                    ]),
                    ..allow("TrustPodServiceAccount", None, strings(&["sts:AssumeRoleWithWebIdentity"]), None)
                })
            }
            ExchangeKind::PodIdentity => Ok(Statement {
                principal: Some(Principal {
                    service: vec![POD_IDENTITY_AUDIENCE.into()],
                    ..Principal::default()
                }),
                // The session tags the association sets.
                condition: condition(vec![
                    ("aws:RequestTag/kubernetes-namespace".into(), names.service_account.0.clone()),
                    ("aws:RequestTag/kubernetes-service-account".into(), names.service_account.1.clone()),
                ]),
                ..allow("TrustEksPodIdentity", None, strings(&["sts:AssumeRole", "sts:TagSession"]), None)
            }),
        }
    }
}

/// The node's `[workload]` table for this setup.
fn daemon_config(names: &Names) -> String {
    let mut out = format!(
        "[workload]\nenabled = true\nexchange = \"{}\"\nallowed_roles = [\"{}\"]\n",
        names.kind.name(),
        names.workload_role_arn
    );
    if let Some(role) = &names.registry_role_arn {
        out += &format!(
            "assume_registry_role = true   # and role_arn = \"{role}\" in each [[registry]] of this account\n"
        );
    }
    out
}

/// The command that ties the pods to the role.
pub(super) fn binding(docs: &WorkloadDocuments, kind: ExchangeKind) -> String {
    let (ns, name, role) = (&docs.namespace, &docs.service_account, &docs.workload_role_arn);
    match kind {
        ExchangeKind::Irsa => docs
            .service_account_annotations
            .iter()
            .map(|(k, v)| format!("kubectl annotate serviceaccount --namespace {ns} {name} {k}={v}\n"))
            .collect(),
        ExchangeKind::PodIdentity => format!(
            "aws eks create-pod-identity-association --cluster-name CLUSTER --namespace {ns} \
             --service-account {name} --role-arn {role}\n"
        ),
    }
}

/// The documents as a person reads them: each with where it goes.
pub(super) fn render_text(setup: &Setup, docs: &WorkloadDocuments, kind: ExchangeKind) -> String {
    let pretty = |d: &PolicyDocument| serde_json::to_string_pretty(d).unwrap_or_default();
    let (a, b, role) = (&setup.registry_account, &setup.instance_account, &setup.role_name);
    let how = match kind {
        ExchangeKind::Irsa => "IRSA",
        ExchangeKind::PodIdentity => "EKS Pod Identity",
    };
    let mut n = 0;
    let mut step = |text: String| {
        n += 1;
        format!("# {n}. {text}\n")
    };
    let mut out = format!("# Per-workload pulls ({how}): the pods pull as role {role} in account {b}.\n\n");
    out += &step(format!("Account {b}: trust policy of role {role} (the pods' own role)"));
    out += &format!("{}\n\n", pretty(&docs.workload_role_trust_policy));
    out += &step(format!("Account {b}: permissions policy of role {role}"));
    out += &format!("{}\n\n", pretty(&docs.workload_role_permissions_policy));
    out += &step(format!("Account {a}: repository policy on each repository"));
    out += &format!("{}\n\n", pretty(&docs.repository_policy));
    if let (Some(trust), Some(perms), Some(registry_role)) =
        (&docs.registry_role_trust_policy, &docs.registry_role_permissions_policy, &setup.registry_role)
    {
        out += &step(format!("Account {a}: trust policy of role {registry_role} (it trusts the pods' role)"));
        out += &format!("{}\n\n", pretty(trust));
        out += &step(format!("Account {a}: permissions policy of role {registry_role}"));
        out += &format!("{}\n\n", pretty(perms));
    }
    out += &step(match kind {
        ExchangeKind::Irsa => "The pods' service account names the role".into(),
        ExchangeKind::PodIdentity => "The pods' service account is associated with the role".into(),
    });
    out += &format!("{}\n", binding(docs, kind));
    out += &step(format!(
        "The kubelet's CredentialProviderConfig: tokenAttributes.serviceAccountTokenAudience: {}",
        docs.audience
    ));
    out += "\n";
    out += &step("The node's /etc/ecr-credd/config.toml".into());
    out += &docs.daemon_config;
    out
}
