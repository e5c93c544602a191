//! `ecr-credd doctor` against moto (IAM enforced where a scenario needs it),
//! the IMDS double and a real registry: each broken setup step is named.
//! moto does not evaluate cross-account trust policies, so the trust-policy
//! and external-id cases are unit tests in src/cmd/doctor/classify.rs.

use std::path::Path;
use std::time::Duration;

use testbed::*;

const REPO_CONFIG: &str =
    "[[registry]]\nhost = \"HOST\"\nregistry_id = \"ACCOUNT\"\nregion = \"us-east-1\"\nrole_arn = \"ROLE\"\n";

/// Runs doctor with a HOME whose docker config routes `host` to the helper
/// (unless `configured` is false); returns (exit code, output).
fn doctor_at(
    dir: &Path,
    config: &str,
    env: &[(&str, String)],
    host: &str,
    configured: bool,
    json: bool,
) -> (i32, String) {
    let home = dir.join("home");
    std::fs::create_dir_all(home.join(".docker")).unwrap();
    let docker =
        if configured { format!("{{\"credHelpers\":{{\"{host}\":\"ecr-credd\"}}}}") } else { "{}".into() };
    std::fs::write(home.join(".docker/config.json"), docker).unwrap();
    let socket = dir.join("run/ecr-credd.sock");
    let mut args = vec!["--socket", socket.to_str().unwrap()];
    if json {
        args.push("--json");
    }
    doctor(&home, &Daemon::write_config(dir, config), &args, env)
}

fn config_for(host: &str, account: &str, role: &str) -> String {
    REPO_CONFIG.replace("HOST", host).replace("ACCOUNT", account).replace("ROLE", role)
}

#[test]
fn a_working_setup_passes_every_check() {
    require!(Moto, Registry);
    let tmp = tempfile::tempdir().unwrap();
    let (moto, imds) = (Moto::start(tmp.path()), Imds::start(tmp.path()));
    let registry = Registry::start(tmp.path(), PASSWORD);
    let config = config_for(&registry.host(), ACCOUNT, ROLE);
    let env = Daemon::aws_env(&moto, &imds);
    let daemon = Daemon::builder(tmp.path()).config(&config).env(&env).start();
    wait_until("a token", Duration::from_secs(20), || daemon.helper("get", &registry.host()).0 == 0);
    let (code, out) = doctor_at(tmp.path(), &config, &env, &registry.host(), true, false);
    eprintln!("---- doctor, healthy setup ----\n{out}");
    assert_eq!(code, 0, "{out}");
    for line in [
        "ok   IMDSv2",
        "ok   instance identity",
        "ok   sts:AssumeRole",
        "ok   ecr:GetAuthorizationToken",
        "ok   registry",
        "ok   daemon socket",
        "ok   daemon token",
        "ok   client config",
        "all checks passed",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    assert!(!out.contains(PASSWORD), "doctor prints no secret");
    let (code, json) = doctor_at(tmp.path(), &config, &env, &registry.host(), true, true);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["ok"], true);
    assert!(v["checks"].as_array().unwrap().len() >= 8);

    // HOST/REPO:TAG heads the manifest: a missing tag is named as such.
    let home = tmp.path().join("home");
    let out = clean_command(daemon_bin(), &home)
        .args(["doctor", "--config"])
        .arg(tmp.path().join("config.toml"))
        .arg(format!("{}/missing:v1", registry.host()))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains("HEAD /v2/missing/manifests/v1: HTTP 404") && text.contains("does not exist"),
        "{text}"
    );
}

/// doctor against moto with IAM enforced and the instance role allowed only `allow`.
fn iam_scenario(home: &Path, name: &str, allow: &str) -> (i32, String) {
    let d = home.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let (moto, imds, role) = iam_bed(&d, allow);
    let config = config_for("127.0.0.1:5000", "123456789012", &role);
    doctor_at(&d, &config, &Daemon::aws_env(&moto, &imds), "127.0.0.1:5000", true, false)
}

#[test]
fn each_broken_step_is_named() {
    require!(Moto, Registry);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();

    // IMDS down.
    let (moto, imds) = (Moto::start(home), Imds::start(home));
    imds.control("fail", "on");
    let d = home.join("imds");
    std::fs::create_dir_all(&d).unwrap();
    let (code, out) = doctor_at(
        &d,
        &config_for("127.0.0.1:5000", ACCOUNT, ROLE),
        &Daemon::aws_env(&moto, &imds),
        "127.0.0.1:5000",
        true,
        false,
    );
    eprintln!("---- doctor, IMDS down ----\n{out}");
    assert_eq!(code, 1);
    assert!(out.contains("FAIL IMDSv2") && out.contains("HttpPutResponseHopLimit"), "{out}");
    imds.control("fail", "off");

    // The registry refuses the token: step 3.
    let registry = Registry::start(home, "not-the-token");
    let d = home.join("repo");
    std::fs::create_dir_all(&d).unwrap();
    let (code, out) = doctor_at(
        &d,
        &config_for(&registry.host(), ACCOUNT, ROLE),
        &Daemon::aws_env(&moto, &imds),
        &registry.host(),
        false,
        false,
    );
    eprintln!("---- doctor, registry refuses the token, helper not configured, no daemon ----\n{out}");
    assert_eq!(code, 1);
    assert!(out.contains("ok   ecr:GetAuthorizationToken"), "{out}");
    assert!(
        out.contains("FAIL registry") && out.contains("setup step 3") && out.contains("ecr:BatchGetImage"),
        "{out}"
    );
    // The helper is not configured in docker's config, and no daemon runs.
    assert!(out.contains("FAIL client config") && out.contains("credHelpers"), "{out}");
    // Its fix is the exact command that makes the check pass.
    let fix =
        out.lines().find_map(|l| l.trim().strip_prefix("run: ecr-credd ")).expect("a configure command");
    let home_dir = d.join("home");
    let ran = clean_command(daemon_bin(), &home_dir).args(fix.split_whitespace()).output().unwrap();
    assert!(ran.status.success(), "{fix}: {}", output_text(&ran));
    let socket = d.join("run/ecr-credd.sock");
    let (_, again) = doctor(
        &home_dir,
        &d.join("config.toml"),
        &["--socket", socket.to_str().unwrap()],
        &Daemon::aws_env(&moto, &imds),
    );
    assert!(
        again.contains("ok   client config") && !again.contains("FAIL client config"),
        "after `{fix}`:\n{again}"
    );
    assert!(
        out.contains("FAIL daemon socket") && out.contains("systemctl enable --now ecr-credd.socket"),
        "{out}"
    );
    drop((moto, imds));

    // The instance role may not assume the role: step 4 (or 2).
    let (code, out) = iam_scenario(home, "no-assume", "ecr:GetAuthorizationToken");
    eprintln!("---- doctor, instance role lacks sts:AssumeRole ----\n{out}");
    assert_eq!(code, 1);
    assert!(
        out.contains("FAIL sts:AssumeRole") && out.contains("setup step 4") && out.contains("setup step 2"),
        "{out}"
    );

    // The role may not get a token: step 1.
    let (code, out) = iam_scenario(home, "no-token", "sts:AssumeRole");
    eprintln!("---- doctor, role lacks ecr:GetAuthorizationToken ----\n{out}");
    assert_eq!(code, 1);
    assert!(out.contains("ok   sts:AssumeRole"), "{out}");
    assert!(out.contains("FAIL ecr:GetAuthorizationToken") && out.contains("setup step 1"), "{out}");
}
