//! The example IaC stays identical to what `ecr-credd policy` prints.

use std::process::Command;

use testbed::{daemon_bin, require};
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

/// `examples/PATH` (YAML) as JSON, read by the test bed's PyYAML.
fn yaml(path: &str) -> serde_json::Value {
    let script = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))";
    let out = Command::new(testbed::paths::python())
        .args(["-c", script, &format!("{ROOT}/examples/{path}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{path}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `k8s.io/kubelet/config/v1` as recorded from kubernetes/kubernetes
/// `staging/src/k8s.io/kubelet/config/v1/types.go` (commit 008b3652): each
/// object's fields by their JSON names, and whether each is required.
const CREDENTIAL_PROVIDER_CONFIG: &[(&str, bool)] =
    &[("apiVersion", true), ("kind", true), ("providers", true)];
const CREDENTIAL_PROVIDER: &[(&str, bool)] = &[
    ("name", true),
    ("matchImages", true),
    ("defaultCacheDuration", true),
    ("apiVersion", true),
    ("args", false),
    ("env", false),
    ("tokenAttributes", false),
];
const TOKEN_ATTRIBUTES: &[(&str, bool)] = &[
    ("serviceAccountTokenAudience", true),
    ("cacheType", true),
    ("requireServiceAccount", true),
    ("requiredServiceAccountAnnotationKeys", false),
    ("optionalServiceAccountAnnotationKeys", false),
];
const EXEC_ENV_VAR: &[(&str, bool)] = &[("name", true), ("value", true)];

/// Unknown and missing fields of `v` against `fields`.
fn fields(what: &str, v: &serde_json::Value, fields: &[(&str, bool)], out: &mut Vec<String>) {
    let Some(object) = v.as_object() else { return out.push(format!("{what} is not an object")) };
    for key in object.keys() {
        if !fields.iter().any(|(f, _)| f == key) {
            out.push(format!("{what}.{key} is not an upstream field"));
        }
    }
    for (f, required) in fields {
        if *required && !object.contains_key(*f) {
            out.push(format!("{what}.{f} is required"));
        }
    }
}

/// What the kubelet would refuse in a CredentialProviderConfig: the
/// recorded fields, and the rules its validation adds to them.
fn problems(config: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    fields("config", config, CREDENTIAL_PROVIDER_CONFIG, &mut out);
    if config["apiVersion"] != "kubelet.config.k8s.io/v1" || config["kind"] != "CredentialProviderConfig" {
        out.push("not a kubelet.config.k8s.io/v1 CredentialProviderConfig".into());
    }
    for (i, p) in config["providers"].as_array().into_iter().flatten().enumerate() {
        let what = format!("providers[{i}]");
        fields(&what, p, CREDENTIAL_PROVIDER, &mut out);
        if p["apiVersion"] != "credentialprovider.kubelet.k8s.io/v1" {
            out.push(format!("{what}.apiVersion is not credentialprovider.kubelet.k8s.io/v1"));
        }
        let duration = p["defaultCacheDuration"].as_str().unwrap_or_default();
        let (n, unit) = duration.split_at(duration.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len());
        if n.parse::<u64>().is_err() || !["s", "m", "h"].contains(&unit) {
            out.push(format!("{what}.defaultCacheDuration {duration:?} is not a duration"));
        }
        for (j, e) in p["env"].as_array().into_iter().flatten().enumerate() {
            fields(&format!("{what}.env[{j}]"), e, EXEC_ENV_VAR, &mut out);
        }
        let t = &p["tokenAttributes"];
        if t.is_null() {
            continue;
        }
        let what = format!("{what}.tokenAttributes");
        fields(&what, t, TOKEN_ATTRIBUTES, &mut out);
        if !["Token", "ServiceAccount"].contains(&t["cacheType"].as_str().unwrap_or_default()) {
            out.push(format!("{what}.cacheType must be Token or ServiceAccount"));
        }
        let keys = |k: &str| -> Vec<String> {
            t[k].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
        };
        let (required, optional) =
            (keys("requiredServiceAccountAnnotationKeys"), keys("optionalServiceAccountAnnotationKeys"));
        if !required.is_empty() && t["requireServiceAccount"] != true {
            out.push(format!(
                "{what}: requiredServiceAccountAnnotationKeys needs requireServiceAccount: true"
            ));
        }
        if required.iter().any(|k| optional.contains(k)) {
            out.push(format!("{what}: a key is both required and optional"));
        }
    }
    out
}

#[test]
fn credential_provider_configs_have_only_upstream_fields() {
    require!(Linters);
    let ecr = ["*.dkr.ecr.*.amazonaws.com", "*.dkr.ecr-fips.*.amazonaws.com", "*.dkr-ecr.*.on.aws"];
    for (path, audience) in [
        ("kubernetes/credential-provider-config.yaml", None),
        ("kubernetes/credential-provider-config-workload.yaml", Some("sts.amazonaws.com")),
        ("kubernetes/credential-provider-config-pod-identity.yaml", Some("pods.eks.amazonaws.com")),
    ] {
        let config = yaml(path);
        assert_eq!(problems(&config), Vec::<String>::new(), "{path}");
        let p = &config["providers"][0];
        assert_eq!(p["name"], "ecr-credd-kubelet-provider", "{path}: the provider binary's name");
        for pattern in ecr {
            assert!(p["matchImages"].as_array().unwrap().iter().any(|m| m == pattern), "{path}: {pattern}");
        }
        let t = &p["tokenAttributes"];
        assert_eq!(t["serviceAccountTokenAudience"].as_str(), audience, "{path}");
        if audience.is_some() {
            assert_eq!(t["cacheType"], "Token", "{path}: a token is never shared between pods");
        }
    }
    let irsa = yaml("kubernetes/credential-provider-config-workload.yaml");
    assert_eq!(
        irsa["providers"][0]["tokenAttributes"]["optionalServiceAccountAnnotationKeys"][0],
        ecr_credd_client::kubelet::ROLE_ANNOTATION
    );

    // The check does catch what the kubelet refuses.
    let mut broken = irsa.clone();
    let t = &mut broken["providers"][0]["tokenAttributes"];
    t["cachetype"] = t["cacheType"].take();
    t.as_object_mut().unwrap().remove("cacheType");
    t["requiredServiceAccountAnnotationKeys"] = serde_json::json!(["eks.amazonaws.com/ecr-role-arn"]);
    assert_eq!(
        problems(&broken),
        [
            "providers[0].tokenAttributes.cachetype is not an upstream field",
            "providers[0].tokenAttributes.cacheType is required",
            "providers[0].tokenAttributes.cacheType must be Token or ServiceAccount",
            "providers[0].tokenAttributes: requiredServiceAccountAnnotationKeys needs requireServiceAccount: true",
            "providers[0].tokenAttributes: a key is both required and optional",
        ]
    );
}

#[test]
fn workload_rbac_and_pod_validate_strictly() {
    require!(Linters);
    let validate = testbed::venv_tool("kubernetes-validate");
    let run = |path: &str| Command::new(&validate).args(["--strict", "-k", "1.34.0", path]).output().unwrap();
    for (file, kinds) in [
        (
            "workload-rbac.yaml",
            &[
                "clusterrole/ecr-credd-kubelet-token-audiences",
                "clusterrolebinding/ecr-credd-kubelet-token-audiences",
            ][..],
        ),
        ("workload-pod.yaml", &["namespace/team-a", "serviceaccount/app", "pod/app"][..]),
    ] {
        let path = format!("{ROOT}/examples/kubernetes/{file}");
        let out = run(&path);
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        for kind in kinds {
            assert!(text.contains(&format!("passed for resource {kind}")), "{text}");
        }
    }
    let rbac = read("kubernetes/workload-rbac.yaml");
    for needle in [
        "verbs: [\"request-serviceaccounts-token-audience\"]",
        "name: system:nodes",
        "\"sts.amazonaws.com\"",
        "\"pods.eks.amazonaws.com\"",
    ] {
        assert!(rbac.contains(needle), "workload-rbac.yaml lacks {needle}");
    }
    let pod = read("kubernetes/workload-pod.yaml");
    assert!(pod.contains(&format!("{}: arn:aws:iam::", ecr_credd_client::kubelet::ROLE_ANNOTATION)));
    // The validator does reject a broken manifest.
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("broken.yaml");
    std::fs::write(&broken, pod.replace("serviceAccountName: app", "serviceAccount: {name: app}")).unwrap();
    assert!(!run(broken.to_str().unwrap()).status.success(), "a broken manifest passed");
}

/// `promtool test rules` on `test_file` in `dir`: (passed, output).
fn promtool_test(dir: &std::path::Path, test_file: &str) -> (bool, String) {
    let out = Command::new(testbed::paths::promtool())
        .args(["test", "rules", test_file])
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn alert_rules_fire_when_their_tests_say_and_the_readme_shows_the_same_file() {
    require!(Promtool);
    let rules = read("prometheus/ecr-credd.rules.yml");
    let (ok, out) =
        promtool_test(&std::path::Path::new(ROOT).join("tests/prometheus"), "ecr-credd.rules.test.yml");
    assert!(ok, "{out}");
    let check = Command::new(testbed::paths::promtool())
        .args(["check", "rules", &format!("{ROOT}/examples/prometheus/ecr-credd.rules.yml")])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));

    // The tests do catch a rule that fires too early or not at all.
    for (from, to) in [("for: 10m", "for: 1m"), ("outcome=\"throttled\"", "outcome=\"denied\"")] {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("examples/prometheus")).unwrap();
        std::fs::create_dir_all(tmp.path().join("tests/prometheus")).unwrap();
        assert!(rules.contains(from));
        std::fs::write(tmp.path().join("examples/prometheus/ecr-credd.rules.yml"), rules.replace(from, to))
            .unwrap();
        let tests =
            std::fs::read_to_string(format!("{ROOT}/tests/prometheus/ecr-credd.rules.test.yml")).unwrap();
        std::fs::write(tmp.path().join("tests/prometheus/ecr-credd.rules.test.yml"), tests).unwrap();
        let (ok, _) = promtool_test(&tmp.path().join("tests/prometheus"), "ecr-credd.rules.test.yml");
        assert!(!ok, "the rule tests passed with {to:?} for {from:?}");
    }

    // The README shows the file itself, so the two cannot drift.
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).unwrap();
    assert!(
        readme.contains(&format!("```yaml\n{rules}```")),
        "README.md's alert rules differ from examples/prometheus/ecr-credd.rules.yml"
    );
}
