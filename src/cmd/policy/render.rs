//! The documents as Terraform and as CloudFormation, for teams that manage
//! IAM as code. Both embed the same serde-built documents.

use serde_json::json;

use super::workload::WorkloadDocuments;
use super::{Documents, PolicyDocument, Setup};
use crate::config::workload::ExchangeKind;

fn pretty(d: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(d).unwrap_or_default()
}

/// A Terraform resource name from an IAM or repository name.
fn tf_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

fn indent(text: &str, by: &str) -> String {
    text.lines().collect::<Vec<_>>().join(&format!("\n{by}"))
}

fn jsonencode(d: &PolicyDocument) -> String {
    // HCL object constructors accept JSON syntax, so the document embeds as is.
    format!("jsonencode({})", indent(&pretty(d), "  "))
}

/// An `aws_iam_role` named `name` with its `trust`, and its inline policy
/// `policy_name` with `perms`.
fn tf_role(name: &str, trust: &PolicyDocument, policy_name: &str, perms: &PolicyDocument) -> String {
    let r = tf_name(name);
    format!(
        "resource \"aws_iam_role\" \"{r}\" {{\n  name               = \"{name}\"\n  assume_role_policy = {}\n}}\n\n\
         resource \"aws_iam_role_policy\" \"{r}\" {{\n  name   = \"{policy_name}\"\n  role   = aws_iam_role.{r}.id\n  policy = {}\n}}\n",
        jsonencode(trust),
        jsonencode(perms),
    )
}

/// Terraform for both accounts (apply each part with that account's provider).
pub fn terraform(setup: &Setup, docs: &Documents) -> String {
    let role = tf_name(&setup.role_name);
    let mut out = format!(
        "# ---- account {} (registry) ----\n\n{}",
        setup.registry_account,
        tf_role(&setup.role_name, &docs.role_trust_policy, "ecr-access", &docs.role_permissions_policy)
    );
    out += &repository_policies(setup, &docs.repository_policy);
    let instance_role = setup.instance_role.clone().unwrap_or_else(|| "REPLACE_WITH_INSTANCE_ROLE".into());
    out += &format!(
        "\n# ---- account {b} (instances) ----\n\n\
         resource \"aws_iam_role_policy\" \"assume_{role}\" {{\n  name   = \"assume-{name}\"\n  role   = \"{instance_role}\"\n  policy = {doc}\n}}\n",
        b = setup.instance_account,
        name = setup.role_name,
        doc = jsonencode(&docs.instance_role_policy),
    );
    out += &format!(
        "\n# Only when you create the {label}: its trust policy.\noutput \"instance_role_trust_policy\" {{\n  value = {doc}\n}}\n",
        label = setup.source.role_label(),
        doc = jsonencode(&docs.instance_role_trust_policy),
    );
    out
}

/// An `AWS::IAM::Role` resource: `name` with its `trust` and its inline
/// policy `policy_name` with `perms`.
fn cfn_role(
    name: &str,
    trust: &PolicyDocument,
    policy_name: &str,
    perms: &PolicyDocument,
) -> serde_json::Value {
    json!({
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": name,
            "AssumeRolePolicyDocument": trust,
            "Policies": [{ "PolicyName": policy_name, "PolicyDocument": perms }],
        }
    })
}

/// Two CloudFormation templates: one for each account.
pub fn cloudformation(setup: &Setup, docs: &Documents) -> String {
    let a = json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("ecr-credd: role {} for instances in account {}", setup.role_name, setup.instance_account),
        "Resources": {
            "EcrAccessRole":
                cfn_role(&setup.role_name, &docs.role_trust_policy, "ecr-access", &docs.role_permissions_policy),
        },
        "Outputs": {
            "RepositoryPolicy": {
                "Description": "Set this as the repository policy of each repository (aws ecr set-repository-policy)",
                "Value": serde_json::to_string(&docs.repository_policy).unwrap_or_default(),
            }
        }
    });
    let instance_role = setup.instance_role.clone().unwrap_or_else(|| "REPLACE_WITH_INSTANCE_ROLE".into());
    let b = json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("ecr-credd: let instance role {instance_role} assume {}", setup.role_name),
        "Resources": {
            "AssumeEcrAccessRole": {
                "Type": "AWS::IAM::Policy",
                "Properties": {
                    "PolicyName": format!("assume-{}", setup.role_name),
                    "Roles": [instance_role],
                    "PolicyDocument": docs.instance_role_policy,
                }
            }
        },
        "Outputs": {
            "InstanceRoleTrustPolicy": {
                "Description": format!("Only when you create the {}: its trust policy", setup.source.role_label()),
                "Value": serde_json::to_string(&docs.instance_role_trust_policy).unwrap_or_default(),
            }
        }
    });
    format!(
        "# ---- stack in account {} (registry) ----\n{}\n# ---- stack in account {} (instances) ----\n{}\n",
        setup.registry_account,
        pretty(&a),
        setup.instance_account,
        pretty(&b)
    )
}

/// Terraform for a workload's setup: B's role (and its Pod Identity
/// association), then A's repository policies (and the chained role).
pub fn workload_terraform(setup: &Setup, docs: &WorkloadDocuments, kind: ExchangeKind) -> String {
    let role = tf_name(&setup.role_name);
    let mut out = format!(
        "# ---- account {} (cluster) ----\n\n{}",
        setup.instance_account,
        tf_role(
            &setup.role_name,
            &docs.workload_role_trust_policy,
            "ecr-pull",
            &docs.workload_role_permissions_policy
        )
    );
    match kind {
        ExchangeKind::PodIdentity => {
            out += &format!(
                "\nresource \"aws_eks_pod_identity_association\" \"{role}\" {{\n  cluster_name    = \"REPLACE_WITH_CLUSTER\"\n  namespace       = \"{}\"\n  service_account = \"{}\"\n  role_arn        = aws_iam_role.{role}.arn\n}}\n",
                docs.namespace, docs.service_account
            )
        }
        ExchangeKind::Irsa => {
            out += &format!(
                "\n# Annotate the service account {}/{} with these.\noutput \"service_account_annotations\" {{\n  value = {}\n}}\n",
                docs.namespace,
                docs.service_account,
                indent(&pretty(&docs.service_account_annotations), "  ")
            )
        }
    }
    out += &format!("\n# ---- account {} (registry) ----\n", setup.registry_account);
    if let (Some(trust), Some(perms), Some(name)) =
        (&docs.registry_role_trust_policy, &docs.registry_role_permissions_policy, &setup.registry_role)
    {
        out += &format!("\n{}", tf_role(name, trust, "ecr-access", perms));
    }
    out + &repository_policies(setup, &docs.repository_policy)
}

/// One `aws_ecr_repository_policy` per repository (a placeholder when none is named).
fn repository_policies(setup: &Setup, policy: &PolicyDocument) -> String {
    let repos: Vec<String> = if setup.repositories.is_empty() {
        vec!["REPLACE_WITH_REPOSITORY".into()]
    } else {
        setup.repositories.clone()
    };
    repos
        .iter()
        .map(|repo| {
            format!(
                "\nresource \"aws_ecr_repository_policy\" \"{}\" {{\n  repository = \"{repo}\"\n  policy     = {}\n}}\n",
                tf_name(repo),
                jsonencode(policy)
            )
        })
        .collect()
}

/// CloudFormation for a workload's setup: a stack in B, and in A either a
/// stack with the chained role or the repository policy to set.
pub fn workload_cloudformation(setup: &Setup, docs: &WorkloadDocuments, kind: ExchangeKind) -> String {
    let mut resources = serde_json::Map::new();
    resources.insert(
        "PodRole".into(),
        cfn_role(
            &setup.role_name,
            &docs.workload_role_trust_policy,
            "ecr-pull",
            &docs.workload_role_permissions_policy,
        ),
    );
    let mut b = json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("ecr-credd: role {} for the pods of {}/{}", setup.role_name, docs.namespace, docs.service_account),
    });
    match kind {
        ExchangeKind::PodIdentity => {
            b["Parameters"] =
                json!({ "ClusterName": { "Type": "String", "Description": "The EKS cluster" } });
            resources.insert(
                "PodIdentityAssociation".into(),
                json!({
                    "Type": "AWS::EKS::PodIdentityAssociation",
                    "Properties": {
                        "ClusterName": { "Ref": "ClusterName" },
                        "Namespace": docs.namespace,
                        "ServiceAccount": docs.service_account,
                        "RoleArn": { "Fn::GetAtt": ["PodRole", "Arn"] },
                    }
                }),
            );
        }
        ExchangeKind::Irsa => {
            b["Outputs"] = json!({ "ServiceAccountAnnotations": {
                "Description": format!("Annotate the service account {}/{} with these", docs.namespace, docs.service_account),
                "Value": serde_json::to_string(&docs.service_account_annotations).unwrap_or_default(),
            }});
        }
    }
    b["Resources"] = resources.into();
    let mut out =
        format!("# ---- stack in account {} (cluster) ----\n{}\n", setup.instance_account, pretty(&b));
    let repository_policy = serde_json::to_string(&docs.repository_policy).unwrap_or_default();
    match (&docs.registry_role_trust_policy, &docs.registry_role_permissions_policy, &setup.registry_role) {
        (Some(trust), Some(perms), Some(name)) => {
            let a = json!({
                "AWSTemplateFormatVersion": "2010-09-09",
                "Description": format!("ecr-credd: role {name}, assumed by the pods' role {}", docs.workload_role_arn),
                "Resources": { "RegistryRole": cfn_role(name, trust, "ecr-access", perms) },
                "Outputs": { "RepositoryPolicy": {
                    "Description": "Set this as the repository policy of each repository (aws ecr set-repository-policy)",
                    "Value": repository_policy,
                }},
            });
            out += &format!(
                "# ---- stack in account {} (registry) ----\n{}\n",
                setup.registry_account,
                pretty(&a)
            );
        }
        _ => {
            out += &format!(
                "# ---- repository policy in account {} (aws ecr set-repository-policy --policy-text) ----\n{}\n",
                setup.registry_account,
                pretty(&docs.repository_policy)
            );
        }
    }
    out
}
