//! The documents as Terraform and as CloudFormation, for teams that manage
//! IAM as code. Both embed the same serde-built documents.

use serde_json::json;

use super::{Documents, PolicyDocument, Setup};

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

/// Terraform for both accounts (apply each part with that account's provider).
pub fn terraform(setup: &Setup, docs: &Documents) -> String {
    let role = tf_name(&setup.role_name);
    let mut out = format!(
        "# ---- account {a} (registry) ----\n\n\
         resource \"aws_iam_role\" \"{role}\" {{\n  name               = \"{name}\"\n  assume_role_policy = {trust}\n}}\n\n\
         resource \"aws_iam_role_policy\" \"{role}\" {{\n  name   = \"ecr-access\"\n  role   = aws_iam_role.{role}.id\n  policy = {perms}\n}}\n",
        a = setup.registry_account,
        name = setup.role_name,
        trust = jsonencode(&docs.role_trust_policy),
        perms = jsonencode(&docs.role_permissions_policy),
    );
    let repos: Vec<String> = if setup.repositories.is_empty() {
        vec!["REPLACE_WITH_REPOSITORY".into()]
    } else {
        setup.repositories.clone()
    };
    for repo in repos {
        out += &format!(
            "\nresource \"aws_ecr_repository_policy\" \"{}\" {{\n  repository = \"{repo}\"\n  policy     = {}\n}}\n",
            tf_name(&repo),
            jsonencode(&docs.repository_policy)
        );
    }
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

/// Two CloudFormation templates: one for each account.
pub fn cloudformation(setup: &Setup, docs: &Documents) -> String {
    let a = json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("ecr-credd: role {} for instances in account {}", setup.role_name, setup.instance_account),
        "Resources": {
            "EcrAccessRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": setup.role_name,
                    "AssumeRolePolicyDocument": docs.role_trust_policy,
                    "Policies": [{ "PolicyName": "ecr-access", "PolicyDocument": docs.role_permissions_policy }],
                }
            }
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
