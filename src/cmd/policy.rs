//! `ecr-credd policy`: the five IAM documents of the cross-account setup,
//! least-privilege, built from serde types (not string templates).

mod render;
#[cfg(test)]
mod tests;
mod validate;
mod workload;

pub use render::{cloudformation, terraform, workload_cloudformation, workload_terraform};
pub use workload::{WorkloadDocuments, IRSA_AUDIENCE, POD_IDENTITY_AUDIENCE};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use validate::{check_name, oidc_issuer};

/// The IAM policy language version every document uses.
pub const VERSION: &str = "2012-10-17";

/// Actions a pull needs on a repository.
pub const PULL_ACTIONS: &[&str] =
    &["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:ListImages"];
/// Further actions a push needs.
pub const PUSH_ACTIONS: &[&str] =
    &["ecr:CompleteLayerUpload", "ecr:InitiateLayerUpload", "ecr:PutImage", "ecr:UploadLayerPart"];

/// An IAM policy document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyDocument {
    /// Always [`VERSION`].
    pub version: String,
    /// The statements.
    pub statement: Vec<Statement>,
}

/// One statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Statement {
    /// A label.
    pub sid: String,
    /// `Allow`.
    pub effect: String,
    /// Who (resource and trust policies only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal>,
    /// What.
    pub action: Vec<String>,
    /// On what (identity policies only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<Vec<String>>,
    /// When.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<BTreeMap<String, BTreeMap<String, String>>>,
}

/// `{"AWS": [arn, ...]}`, `{"Service": [...]}` or `{"Federated": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Principal {
    /// AWS principals by ARN.
    #[serde(rename = "AWS", default, skip_serializing_if = "Vec::is_empty")]
    pub aws: Vec<String>,
    /// AWS services (`ec2.amazonaws.com`, ...).
    #[serde(rename = "Service", default, skip_serializing_if = "Vec::is_empty")]
    pub service: Vec<String>,
    /// An identity provider (an EKS cluster's OIDC provider ARN).
    #[serde(rename = "Federated", default, skip_serializing_if = "Option::is_none")]
    pub federated: Option<String>,
}

impl BaseSource {
    /// What B's role is called, for headings.
    pub fn role_label(self) -> &'static str {
        match self {
            BaseSource::Instance => "instance role",
            BaseSource::WebIdentity => "service account's role (IRSA)",
            BaseSource::PodIdentity => "pod identity role",
            BaseSource::RolesAnywhere => "Roles Anywhere role",
        }
    }
}

/// Where the instance side's base credentials come from (its role's trust).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BaseSource {
    /// An EC2 instance profile: the role trusts ec2.amazonaws.com.
    #[default]
    Instance,
    /// IRSA: the role trusts the cluster's OIDC provider for one service account.
    WebIdentity,
    /// EKS Pod Identity: the role trusts pods.eks.amazonaws.com.
    PodIdentity,
    /// IAM Roles Anywhere (on-prem, hybrid): the role trusts rolesanywhere.amazonaws.com.
    RolesAnywhere,
}

/// Pull only, or pull and push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Access {
    /// Pull images.
    #[default]
    Pull,
    /// Pull and push images.
    Push,
}

/// What the setup connects; also the `policy` command's flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Setup {
    /// Account A, which owns the registry.
    #[arg(long)]
    pub registry_account: String,
    /// Account B, where the instances run.
    #[arg(long)]
    pub instance_account: String,
    /// The role to create in account A.
    #[arg(long)]
    pub role_name: String,
    /// B's instance role name; the trust names it instead of all of B.
    #[arg(long)]
    pub instance_role: Option<String>,
    /// Repository to grant (repeatable); default: every repository in A.
    #[arg(long = "repository")]
    pub repositories: Vec<String>,
    /// Pull only, or pull and push.
    #[arg(long, value_enum, default_value = "pull")]
    pub access: Access,
    /// Require this sts:ExternalId in the trust policy.
    #[arg(long)]
    pub external_id: Option<String>,
    /// AWS partition (aws, aws-cn, aws-us-gov, ...).
    #[arg(long, default_value = "aws")]
    pub partition: String,
    /// Also let the role fetch ECR Public tokens (public.ecr.aws listed with this role).
    #[arg(long)]
    pub ecr_public: bool,
    /// Where B's base credentials come from: decides the trust policy of B's role.
    #[arg(long, value_enum, default_value = "instance")]
    pub source: BaseSource,
    /// With --source web-identity: the cluster's OIDC provider ARN.
    #[arg(long, required_if_eq("source", "web-identity"))]
    pub oidc_provider: Option<String>,
    /// The service account, as NAMESPACE/NAME (or NAME with --namespace):
    /// the daemon's own with --source web-identity, the pods' with --workload.
    #[arg(long, required_if_eq("source", "web-identity"))]
    pub service_account: Option<String>,
    /// Per-workload pulls (KEP-4412): print the pod's own role's documents instead.
    /// --role-name is then that role, in --instance-account (the cluster's account).
    #[arg(long, value_enum, conflicts_with_all = ["source", "instance_role", "ecr_public"])]
    pub workload: Option<crate::config::workload::ExchangeKind>,
    /// With --workload: the pods' namespace (--service-account is then the name alone).
    #[arg(long, requires = "workload")]
    pub namespace: Option<String>,
    /// With --workload irsa: the audience the kubelet requests
    /// (tokenAttributes.serviceAccountTokenAudience) [default: sts.amazonaws.com].
    #[arg(long, requires = "workload")]
    pub audience: Option<String>,
    /// With --workload: a role in --registry-account that the pod's role assumes
    /// (role chaining, [workload] assume_registry_role = true).
    #[arg(long, requires = "workload")]
    pub registry_role: Option<String>,
}

/// What fetching an ECR Public token needs (it is minted through STS).
pub const PUBLIC_TOKEN_ACTIONS: &[&str] = &["ecr-public:GetAuthorizationToken", "sts:GetServiceBearerToken"];

/// The five documents, in setup order (the fifth only when B's role is new).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Documents {
    /// Step 1: A's role permissions policy.
    pub role_permissions_policy: PolicyDocument,
    /// Step 2: A's role trust policy.
    pub role_trust_policy: PolicyDocument,
    /// Step 3: the repository policy on each repository in A.
    pub repository_policy: PolicyDocument,
    /// Step 4: B's instance role policy (the one people forget).
    pub instance_role_policy: PolicyDocument,
    /// B's role's own trust policy: only when you create that role.
    pub instance_role_trust_policy: PolicyDocument,
}

/// Why the setup cannot be expressed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PolicyError {
    /// Not a 12-digit account id.
    #[error("{flag}: {value:?} is not a 12-digit account id")]
    Account {
        /// The flag that gave it.
        flag: &'static str,
        /// What was given.
        value: String,
    },
    /// A flag the setup needs was not given.
    #[error("{flag} is required {why}")]
    Missing {
        /// The flag.
        flag: &'static str,
        /// For what.
        why: &'static str,
    },
    /// A value that does not fit the rest of the setup.
    #[error("{flag}: {value:?} {why}")]
    Invalid {
        /// The flag that gave it.
        flag: &'static str,
        /// What was given.
        value: String,
        /// Why it does not fit.
        why: &'static str,
    },
    /// Not a valid IAM or repository name.
    #[error("{flag}: {value:?} is not a valid name")]
    Name {
        /// The flag that gave it.
        flag: &'static str,
        /// What was given.
        value: String,
    },
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn allow(
    sid: &str,
    principal: Option<Vec<String>>,
    action: Vec<String>,
    resource: Option<Vec<String>>,
) -> Statement {
    Statement {
        sid: sid.into(),
        effect: "Allow".into(),
        principal: principal.map(|aws| Principal { aws, ..Principal::default() }),
        action,
        resource,
        condition: None,
    }
}

fn doc(statement: Vec<Statement>) -> PolicyDocument {
    PolicyDocument { version: VERSION.into(), statement }
}

impl Setup {
    /// The five documents.
    pub fn documents(&self) -> Result<Documents, PolicyError> {
        self.check()?;
        let p = &self.partition;
        let (a, b) = (&self.registry_account, &self.instance_account);
        let role_arn = format!("arn:{p}:iam::{a}:role/{}", self.role_name);
        let instance_principal = match &self.instance_role {
            Some(r) => format!("arn:{p}:iam::{b}:role/{r}"),
            None => format!("arn:{p}:iam::{b}:root"),
        };
        let (sid, actions, mut permissions) = self.pull_grant();
        if self.ecr_public {
            // Neither action takes a resource ARN.
            permissions.statement.push(allow(
                "EcrPublicToken",
                None,
                strings(PUBLIC_TOKEN_ACTIONS),
                Some(vec!["*".into()]),
            ));
        }
        let mut trust_stmt = allow(
            "TrustInstanceAccount",
            Some(vec![instance_principal.clone()]),
            strings(&["sts:AssumeRole"]),
            None,
        );
        if let Some(ext) = &self.external_id {
            let cond = BTreeMap::from([("sts:ExternalId".to_owned(), ext.clone())]);
            trust_stmt.condition = Some(BTreeMap::from([("StringEquals".to_owned(), cond)]));
        }
        let repository =
            doc(vec![allow(sid, Some(vec![role_arn.clone(), instance_principal]), actions, None)]);
        let instance =
            doc(vec![allow("AssumeEcrRole", None, strings(&["sts:AssumeRole"]), Some(vec![role_arn]))]);
        Ok(Documents {
            role_permissions_policy: permissions,
            role_trust_policy: doc(vec![trust_stmt]),
            repository_policy: repository,
            instance_role_policy: instance,
            instance_role_trust_policy: doc(vec![self.base_trust()?]),
        })
    }

    /// What pulling (or pushing) takes: the statement's label, the
    /// repository actions, and the permissions policy of whoever fetches the
    /// token (GetAuthorizationToken, then those actions on the repositories).
    fn pull_grant(&self) -> (&'static str, Vec<String>, PolicyDocument) {
        let (p, a) = (&self.partition, &self.registry_account);
        let repos: Vec<String> = if self.repositories.is_empty() {
            vec![format!("arn:{p}:ecr:*:{a}:repository/*")]
        } else {
            self.repositories.iter().map(|r| format!("arn:{p}:ecr:*:{a}:repository/{r}")).collect()
        };
        let mut actions = strings(PULL_ACTIONS);
        if self.access == Access::Push {
            actions.extend(strings(PUSH_ACTIONS));
        }
        let sid = if self.access == Access::Push { "PullAndPush" } else { "Pull" };
        let permissions = doc(vec![
            allow(
                "GetAuthorizationToken",
                None,
                strings(&["ecr:GetAuthorizationToken"]),
                Some(vec!["*".into()]),
            ),
            allow(sid, None, actions.clone(), Some(repos)),
        ]);
        (sid, actions, permissions)
    }

    /// The trust policy of B's own role, for the source of its credentials.
    fn base_trust(&self) -> Result<Statement, PolicyError> {
        let service = |sid: &str, service: &str, actions: &[&str]| Statement {
            principal: Some(Principal { service: vec![service.into()], ..Principal::default() }),
            ..allow(sid, None, strings(actions), None)
        };
        Ok(match self.source {
            BaseSource::Instance => service("TrustEc2", "ec2.amazonaws.com", &["sts:AssumeRole"]),
            BaseSource::PodIdentity => service(
                "TrustEksPodIdentity",
                "pods.eks.amazonaws.com",
                &["sts:AssumeRole", "sts:TagSession"],
            ),
            BaseSource::RolesAnywhere => service(
                "TrustRolesAnywhere",
                "rolesanywhere.amazonaws.com",
                &["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
            ),
            BaseSource::WebIdentity => {
                let provider = self.oidc_provider.clone().unwrap_or_default();
                let issuer = oidc_issuer(&provider)?;
                let (ns, name) = self.service_account()?.ok_or(PolicyError::Missing {
                    flag: "--service-account",
                    why: "with --source web-identity",
                })?;
                let cond = BTreeMap::from([
                    (format!("{issuer}:aud"), "sts.amazonaws.com".to_owned()),
                    (format!("{issuer}:sub"), format!("system:serviceaccount:{ns}:{name}")),
                ]);
                Statement {
                    principal: Some(Principal { federated: Some(provider), ..Principal::default() }),
                    condition: Some(BTreeMap::from([("StringEquals".to_owned(), cond)])),
                    ..allow("TrustServiceAccount", None, strings(&["sts:AssumeRoleWithWebIdentity"]), None)
                }
            }
        })
    }
}

/// The documents as a person reads them: each with where it goes.
pub fn render_text(setup: &Setup, docs: &Documents) -> String {
    let pretty = |d: &PolicyDocument| serde_json::to_string_pretty(d).unwrap_or_default();
    let (a, b, role) = (&setup.registry_account, &setup.instance_account, &setup.role_name);
    format!(
        "# 1. Account {a}: permissions policy of role {role}\n{}\n\n\
         # 2. Account {a}: trust policy of role {role}\n{}\n\n\
         # 3. Account {a}: repository policy on each repository\n{}\n\n\
         # 4. Account {b}: policy on the instance role (needed, and often forgotten)\n{}\n\n\
         # 5. Account {b}: trust policy of the {} (only when you create {})\n{}\n",
        pretty(&docs.role_permissions_policy),
        pretty(&docs.role_trust_policy),
        pretty(&docs.repository_policy),
        pretty(&docs.instance_role_policy),
        setup.source.role_label(),
        if setup.source == BaseSource::Instance { "the instance role" } else { "that role" },
        pretty(&docs.instance_role_trust_policy),
    )
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The five documents, each with where it goes.
    Text,
    /// One JSON object with the five documents.
    Json,
    /// Terraform resources for both accounts.
    Terraform,
    /// CloudFormation templates for both accounts.
    Cloudformation,
}

/// What `ecr-credd policy` prints for `setup` in `format`: the workload's
/// documents with `--workload`, else the five of the node's setup.
pub fn print(setup: &Setup, format: Format) -> Result<String, PolicyError> {
    let Some(kind) = setup.workload else {
        return Ok(render(setup, &setup.documents()?, format));
    };
    let docs = setup.workload_documents(kind)?;
    Ok(match format {
        Format::Text => workload::render_text(setup, &docs, kind),
        Format::Json => serde_json::to_string_pretty(&docs).unwrap_or_default() + "\n",
        Format::Terraform => workload_terraform(setup, &docs, kind),
        Format::Cloudformation => workload_cloudformation(setup, &docs, kind),
    })
}

/// The documents in `format`.
pub fn render(setup: &Setup, docs: &Documents, format: Format) -> String {
    match format {
        Format::Text => render_text(setup, docs),
        Format::Json => serde_json::to_string_pretty(docs).unwrap_or_default() + "\n",
        Format::Terraform => terraform(setup, docs),
        Format::Cloudformation => cloudformation(setup, docs),
    }
}
