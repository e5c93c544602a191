//! The example IaC stays identical to what `ecr-credd policy` prints.

use std::process::Command;

use testbed::daemon_bin;
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const ARGS: &[&str] = &[
    "policy",
    "--registry-account",
    "111122223333",
    "--instance-account",
    "444455556666",
    "--role-name",
    "ecr-access-from-b",
    "--instance-role",
    "ecr-credd-node",
    "--repository",
    "app",
    "--access",
    "pull",
    "--external-id",
    "fleet-1",
];

fn policy(format: &str) -> String {
    let out = Command::new(daemon_bin()).args(ARGS).args(["--format", format]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/examples/{path}")).unwrap()
}

#[test]
fn terraform_example_matches_policy_output() {
    assert_eq!(
        read("terraform/iam.tf"),
        policy("terraform"),
        "regenerate examples/terraform/iam.tf (see examples/README.md)"
    );
    let instance = read("terraform/instance.tf");
    // The instance role the policies name is the one the instance runs as.
    assert!(instance.contains("name = \"ecr-credd-node\""));
    assert!(instance.contains("role_arn = \"arn:aws:iam::111122223333:role/ecr-access-from-b\""));
    assert!(instance.contains("external_id = \"fleet-1\""));
    let config = instance.split("<<-TOML").nth(1).unwrap().split("TOML\n").next().unwrap();
    let config: String = config.lines().map(|l| l.trim_start()).collect::<Vec<_>>().join("\n");
    ecr_credd::config::parse(&config, std::path::Path::new("instance.tf"))
        .expect("the embedded config is valid");
}

#[test]
fn cloudformation_examples_match_policy_output() {
    let printed = policy("cloudformation");
    let parts: Vec<String> = printed
        .split("# ---- stack in account ")
        .skip(1)
        .map(|p| p.split_once('\n').unwrap().1.to_owned())
        .collect();
    assert_eq!(read("cloudformation/account-a-registry.json"), parts[0]);
    assert_eq!(read("cloudformation/account-b-instances.json"), parts[1]);
    for part in parts {
        serde_json::from_str::<serde_json::Value>(&part).unwrap();
    }
}
