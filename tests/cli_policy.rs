//! `ecr-credd policy` as a user runs it: the JSON parses back into the four
//! documents, and bad flags get a specific error.

use std::process::Command;

use ecr_credd::policy::Documents;

const DAEMON: &str = env!("CARGO_BIN_EXE_ecr-credd");

/// `ecr-credd policy` for `registry` and `instance` accounts and role `r`.
fn policy(registry: &str, instance: &str) -> std::process::Output {
    Command::new(DAEMON)
        .args(["policy", "--registry-account", registry, "--instance-account", instance, "--role-name", "r"])
        .output()
        .unwrap()
}

#[test]
fn policy_prints_the_four_documents() {
    let out = Command::new(DAEMON)
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
