//! `ecr-credd policy` as a user runs it: the JSON parses back into the five
//! documents, and bad flags get a specific error.

use std::process::Command;

use ecr_credd::cmd::policy::Documents;

use testbed::{daemon_bin, require, venv_tool};

/// `ecr-credd policy` for `registry` and `instance` accounts and role `r`.
fn policy(registry: &str, instance: &str) -> std::process::Output {
    Command::new(daemon_bin())
        .args(["policy", "--registry-account", registry, "--instance-account", instance, "--role-name", "r"])
        .output()
        .unwrap()
}

#[test]
fn policy_prints_the_five_documents() {
    let out = Command::new(daemon_bin())
        .args(["policy", "--registry-account", "111122223333", "--instance-account", "444455556666"])
        .args(["--role-name", "ecr-access-from-b", "--instance-role", "nodes", "--repository", "app"])
        .args(["--access", "push", "--external-id", "x1", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let docs: Documents = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        docs.instance_role_policy.statement[0].resource.as_deref().unwrap(),
        ["arn:aws:iam::111122223333:role/ecr-access-from-b"]
    );
    assert!(docs.repository_policy.statement[0].action.iter().any(|a| a == "ecr:PutImage"));

    let text = policy("111122223333", "444455556666");
    let text = String::from_utf8_lossy(&text.stdout);
    for heading in ["# 1. Account 111122223333", "# 2.", "# 3.", "# 4. Account 444455556666"] {
        assert!(text.contains(heading), "{text}");
    }

    let bad = policy("12", "444455556666");
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&bad.stderr),
        "ecr-credd: --registry-account: \"12\" is not a 12-digit account id\n"
    );
}

/// `policy` for each source of B's credentials, in `format`.
fn policy_for(source: &[&str], format: &str) -> String {
    let out = Command::new(daemon_bin())
        .args(["policy", "--registry-account", "111122223333", "--instance-account", "444455556666"])
        .args(["--role-name", "ecr-access-from-b", "--instance-role", "nodes", "--format", format])
        .args(source)
        .output()
        .unwrap();
    assert!(out.status.success(), "{source:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

const OIDC: &str = "arn:aws:iam::444455556666:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
const SOURCES: [&[&str]; 4] = [
    &["--source", "instance"],
    &["--source", "web-identity", "--oidc-provider", OIDC, "--service-account", "kube-system/ecr-credd"],
    &["--source", "pod-identity"],
    &["--source", "roles-anywhere"],
];

#[test]
fn the_base_roles_trust_policy_follows_the_source() {
    let trust = |source: &[&str]| -> serde_json::Value {
        let docs: serde_json::Value = serde_json::from_str(&policy_for(source, "json")).unwrap();
        docs["instance_role_trust_policy"]["Statement"][0].clone()
    };
    let s = trust(SOURCES[0]);
    assert_eq!(s["Principal"]["Service"][0], "ec2.amazonaws.com");
    assert_eq!(s["Action"][0], "sts:AssumeRole");
    let s = trust(SOURCES[1]);
    assert_eq!(s["Principal"]["Federated"], OIDC);
    assert_eq!(s["Action"][0], "sts:AssumeRoleWithWebIdentity");
    let issuer = "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
    assert_eq!(
        s["Condition"]["StringEquals"][format!("{issuer}:sub")],
        "system:serviceaccount:kube-system:ecr-credd"
    );
    assert_eq!(s["Condition"]["StringEquals"][format!("{issuer}:aud")], "sts.amazonaws.com");
    let s = trust(SOURCES[2]);
    assert_eq!(s["Principal"]["Service"][0], "pods.eks.amazonaws.com");
    assert_eq!(s["Action"], serde_json::json!(["sts:AssumeRole", "sts:TagSession"]));
    let s = trust(SOURCES[3]);
    assert_eq!(s["Principal"]["Service"][0], "rolesanywhere.amazonaws.com");
    let text = policy_for(SOURCES[0], "text");
    assert!(text.contains("# 5. Account 444455556666: trust policy of the instance role (only when you create the instance role)"), "{text}");

    // A malformed provider or service account is refused, naming the flag.
    let out = Command::new(daemon_bin())
        .args(["policy", "--registry-account", "111122223333", "--instance-account", "444455556666"])
        .args([
            "--role-name",
            "r",
            "--source",
            "web-identity",
            "--oidc-provider",
            "nope",
            "--service-account",
            "x",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--oidc-provider: \"nope\" is not a valid name"));
}

#[test]
fn cloudformation_passes_cfn_lint_for_every_source() {
    require!(Linters);
    let tmp = tempfile::tempdir().unwrap();
    let lint = venv_tool("cfn-lint");
    let mut files = Vec::new();
    let printed = SOURCES.iter().map(|source| policy_for(source, "cloudformation"));
    let workloads = WORKLOADS.iter().map(|w| workload_policy(w, "cloudformation"));
    for (i, printed) in printed.chain(workloads).enumerate() {
        for (j, stack) in stacks(&printed).into_iter().enumerate() {
            let path = tmp.path().join(format!("stack-{i}-{j}.json"));
            std::fs::write(&path, stack).unwrap();
            files.push(path);
        }
    }
    // Two stacks per node setup; one per direct workload setup, two chained.
    assert_eq!(files.len(), 8 + 6);
    let out = Command::new(&lint).args(&files).output().expect("cfn-lint (make test installs it)");
    assert!(
        out.status.success(),
        "cfn-lint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // And it does catch a broken template.
    let broken = tmp.path().join("broken.json");
    std::fs::write(&broken, r#"{"AWSTemplateFormatVersion":"2010-09-09","Resources":{"R":{"Type":"AWS::IAM::Role","Properties":{}}}}"#).unwrap();
    assert!(
        !Command::new(&lint).arg(&broken).output().unwrap().status.success(),
        "cfn-lint passed a role without a trust policy"
    );
}

/// The CloudFormation templates in `printed`, each headed `# ---- stack in account …`.
fn stacks(printed: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in printed.lines() {
        if line.starts_with("# ---- ") {
            out.extend(current.take());
            current = line.starts_with("# ---- stack in account ").then(String::new);
        } else if let Some(c) = current.as_mut() {
            c.push_str(line);
            c.push('\n');
        }
    }
    out.extend(current);
    out
}

const WORKLOADS: [&[&str]; 4] = [
    &["--workload", "irsa", "--oidc-provider", OIDC, "--namespace", "team-a", "--service-account", "app"],
    &[
        "--workload",
        "irsa",
        "--oidc-provider",
        OIDC,
        "--service-account",
        "team-a/app",
        "--registry-role",
        "ecr-from-pods",
    ],
    &["--workload", "pod-identity", "--service-account", "team-a/app"],
    &["--workload", "pod-identity", "--service-account", "team-a/app", "--registry-role", "ecr-from-pods"],
];

/// `policy --workload …` for the pods' role `team-a-pull` in B, in `format`.
fn workload_policy(args: &[&str], format: &str) -> String {
    let out = Command::new(daemon_bin())
        .args(["policy", "--registry-account", "111122223333", "--instance-account", "444455556666"])
        .args(["--role-name", "team-a-pull", "--repository", "team-a/app", "--format", format])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn workload_policies_print_the_pods_roles_trust_with_sub_and_aud() {
    let docs: serde_json::Value = serde_json::from_str(&workload_policy(WORKLOADS[0], "json")).unwrap();
    let issuer = "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
    let trust = &docs["workload_role_trust_policy"]["Statement"][0];
    assert_eq!(trust["Principal"]["Federated"], OIDC);
    assert_eq!(
        trust["Condition"]["StringEquals"][format!("{issuer}:sub")],
        "system:serviceaccount:team-a:app"
    );
    assert_eq!(trust["Condition"]["StringEquals"][format!("{issuer}:aud")], "sts.amazonaws.com");
    assert_eq!(docs["audience"], "sts.amazonaws.com");

    let text = workload_policy(WORKLOADS[2], "text");
    assert!(text.contains("\"pods.eks.amazonaws.com\""), "{text}");
    assert!(text.contains("\"sts:TagSession\""), "{text}");
    assert!(text.contains("serviceAccountTokenAudience: pods.eks.amazonaws.com"), "{text}");
    assert!(text.contains("exchange = \"pod-identity\""), "{text}");

    let tf = workload_policy(WORKLOADS[3], "terraform");
    for needle in [
        "resource \"aws_iam_role\" \"team_a_pull\"",
        "resource \"aws_eks_pod_identity_association\" \"team_a_pull\"",
        "resource \"aws_iam_role\" \"ecr_from_pods\"",
        "resource \"aws_ecr_repository_policy\" \"team_a_app\"",
    ] {
        assert!(tf.contains(needle), "missing {needle:?} in\n{tf}");
    }

    // A flag the setup needs, or one that cannot go with --workload, is named.
    let out = Command::new(daemon_bin())
        .args(["policy", "--registry-account", "111122223333", "--instance-account", "444455556666"])
        .args(["--role-name", "r", "--workload", "irsa", "--service-account", "team-a/app"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "ecr-credd: --oidc-provider is required with --workload irsa (the cluster's IAM OIDC provider ARN)\n"
    );
    let out = Command::new(daemon_bin())
        .args(["policy", "--registry-account", "111122223333", "--instance-account", "444455556666"])
        .args(["--role-name", "r", "--workload", "pod-identity", "--source", "instance"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("'--workload <WORKLOAD>' cannot be used with '--source <SOURCE>'"));
}
