//! Base credentials beyond the instance profile (`[aws] credentials`), each
//! end to end: the daemon gets its base credentials from the source, assumes
//! the registry's role in moto, and skopeo pushes and pulls through the
//! helper. IMDS is a dead port unless the case is about IMDS, so a token can
//! only have come from the source under test.

use std::path::Path;
use std::time::Duration;

use testbed::sources::{container_endpoint, no_imds, sso_home, sso_portal};
use testbed::*;

/// Pushes an image to `registry` and pulls it back, both through the helper.
fn push_and_pull(home: &Path, daemon: &Daemon, registry: &Registry) {
    let oci = make_oci_image(home);
    let auth = helper_auth_file(home, &[&registry.host()]);
    let image = format!("docker://{}/sources/app:v1", registry.host());
    let push = skopeo_copy(home, &auth, &daemon.socket, &oci, &image);
    assert!(push.status.success(), "push: {}", output_text(&push));
    let back = format!("oci:{}:pulled", home.join("pulled").display());
    let pull = skopeo_copy(home, &auth, &daemon.socket, &image, &back);
    assert!(pull.status.success(), "pull: {}", output_text(&pull));
}

fn config(registry: &Registry, source: &str) -> String {
    format!("[aws]\ncredentials = \"{source}\"\n\n{}", registry_toml(&registry.host(), Some(ROLE)))
}

/// The base-credential source the daemon reports, once it has a token.
fn source_of(daemon: &Daemon, host: &str) -> String {
    wait_until("a token", Duration::from_secs(30), || daemon.helper("get", host).0 == 0);
    let out = clean_command(daemon_bin(), Path::new("/nonexistent"))
        .args(["status", "--json", "--socket"])
        .arg(&daemon.socket)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["credential_source"].as_str().unwrap_or_default().to_owned()
}

/// Starts the daemon in `dir` with base credentials from `source` (and
/// `env`), checks `/status` names `shown`, and pushes and pulls through the helper.
fn serves_with(dir: &Path, registry: &Registry, source: &str, env: &[(&str, String)], shown: &str) -> Daemon {
    std::fs::create_dir_all(dir).unwrap();
    let daemon = Daemon::builder(dir).config(&config(registry, source)).env(env).start();
    assert_eq!(source_of(&daemon, &registry.host()), shown);
    push_and_pull(dir, &daemon, registry);
    daemon
}

#[test]
fn env_and_profiles_give_the_base_credentials() {
    require!(Moto, Registry, Skopeo);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let moto = Moto::start(home);
    let registry = Registry::start(home, PASSWORD);

    // env: static keys in the environment.
    let mut env = no_imds(&moto);
    env.push(("AWS_ACCESS_KEY_ID", "AKIAENVEXAMPLE000001".into()));
    env.push(("AWS_SECRET_ACCESS_KEY", "env-secret-not-logged".into()));
    let daemon = serves_with(&home.join("env"), &registry, "env", &env, "environment");
    assert!(daemon.proc.output().contains("base credentials from environment"));
    assert!(!daemon.proc.output().contains("env-secret-not-logged"));
    drop(daemon);

    // profile:NAME with keys, and one whose credential_process is a script.
    let dir = home.join("profile");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("creds.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho '{\"Version\":1,\"AccessKeyId\":\"AKIAPROCESS000000001\",\"SecretAccessKey\":\"process-secret\",\"SessionToken\":\"process-token\"}'\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let aws_config = dir.join("aws-config");
    std::fs::write(
        &aws_config,
        format!(
            "[profile keys]\naws_access_key_id = AKIAPROFILE000000001\naws_secret_access_key = profile-secret\n\n\
             [profile roles-anywhere]\ncredential_process = {}\n",
            script.display()
        ),
    )
    .unwrap();
    let mut env = no_imds(&moto);
    env.push(("AWS_CONFIG_FILE", aws_config.display().to_string()));
    for profile in ["keys", "roles-anywhere"] {
        let source = format!("profile:{profile}");
        serves_with(&dir.join(profile), &registry, &source, &env, &format!("profile {profile}"));
    }
}

#[test]
fn web_identity_and_container_endpoint() {
    require!(Moto, Registry, Skopeo);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let moto = Moto::start(home);
    let registry = Registry::start(home, PASSWORD);

    // web-identity (IRSA): moto answers AssumeRoleWithWebIdentity.
    let dir = home.join("web");
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(
        &token,
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6a3ViZS1zeXN0ZW06ZWNyIn0.c2ln",
    )
    .unwrap();
    let mut env = no_imds(&moto);
    env.push(("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()));
    env.push(("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/irsa-node".into()));
    env.push(("AWS_ROLE_SESSION_NAME", "ecr-credd-test".into()));
    drop(serves_with(&dir, &registry, "web-identity", &env, "web identity"));

    // container (EKS Pod Identity): FULL_URI on loopback with a token file.
    let dir = home.join("container");
    let (_endpoint, port, env) = container_endpoint(&dir, &moto, 21600);
    serves_with(&dir, &registry, "container", &env, "container endpoint");
    let (_, stats) = http(port, "GET", "/_stats", "");
    assert!(stats.contains("\"calls\": 1"), "the endpoint gave the credentials: {stats}");
}

#[test]
fn an_sso_profile_gives_the_base_credentials() {
    require!(Moto, Registry, Skopeo);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let moto = Moto::start(home);
    let registry = Registry::start(home, PASSWORD);
    let (_portal, port) = sso_portal(home, 3600);
    let dir = home.join("sso");
    let mut env = no_imds(&moto);
    env.extend(sso_home(&dir, port));
    let daemon = serves_with(&dir, &registry, "profile:sso", &env, "profile sso");
    let (_, calls) = http(port, "GET", "/_calls", "");
    assert!(!calls.contains("\"calls\": 0"), "the portal gave the credentials: {calls}");
    drop(daemon);

    let (_, report) = doctor_with(&dir, &config(&registry, "profile:sso"), &env);
    eprintln!("doctor, credentials = \"profile:sso\":\n{report}");
    assert!(report.contains("ok   base credentials: profile sso gave them"), "{report}");
    // The stopped daemon left its socket: the fix is to start it, not to join its group.
    assert!(report.contains("FAIL daemon access") && report.contains("start it: systemctl"), "{report}");
    assert!(!report.contains("usermod"), "{report}");

    // A portal out of reach: doctor names the source and the profile's fix.
    let (code, report) = doctor_with(&dir, &config(&registry, "profile:sso"), &{
        let mut env = env.clone();
        env.retain(|(k, _)| *k != "AWS_ENDPOINT_URL_SSO");
        env.push(("AWS_ENDPOINT_URL_SSO", format!("http://127.0.0.1:{}", free_port())));
        env
    });
    eprintln!("doctor, credentials = \"profile:sso\", portal unreachable:\n{report}");
    assert_eq!(code, 1, "{report}");
    assert!(report.contains("FAIL base credentials: profile:sso:"), "{report}");
    assert!(report.contains("sso_session"), "{report}");
}

#[test]
fn chain_picks_the_first_source_and_instance_ignores_the_environment() {
    require!(Moto, Registry, Skopeo);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let (moto, imds) = (Moto::start(home), Imds::start(home));
    let registry = Registry::start(home, PASSWORD);
    let keys =
        [("AWS_ACCESS_KEY_ID", "AKIAENVEXAMPLE000002".to_owned()), ("AWS_SECRET_ACCESS_KEY", "s".to_owned())];

    // chain: the environment comes first, IMDS is never asked.
    let dir = home.join("chain");
    std::fs::create_dir_all(&dir).unwrap();
    let mut env = Daemon::aws_env(&moto, &imds);
    env.extend(keys.clone());
    let before = imds.calls();
    let daemon = Daemon::builder(&dir).config(&config(&registry, "chain")).env(&env).start();
    assert_eq!(source_of(&daemon, &registry.host()), "environment");
    assert_eq!(imds.calls(), before, "the chain stopped at the environment, and IMDS was not asked");
    drop(daemon);

    // chain with no keys: each earlier source is named with what it lacked.
    let dir = home.join("chain-imds");
    std::fs::create_dir_all(&dir).unwrap();
    let daemon =
        Daemon::builder(&dir).config(&config(&registry, "chain")).env(&Daemon::aws_env(&moto, &imds)).start();
    assert_eq!(source_of(&daemon, &registry.host()), "instance profile (IMDS)");
    let log = daemon.proc.output();
    assert!(log.contains("base credentials from instance profile (IMDS) (not: environment:"), "{log}");
    assert!(log.contains("web identity:"), "{log}");
    drop(daemon);

    // instance (the default): keys in the environment are ignored.
    let dir = home.join("instance");
    std::fs::create_dir_all(&dir).unwrap();
    let mut env = Daemon::aws_env(&moto, &imds);
    env.extend(keys);
    let before = imds.calls();
    let daemon = Daemon::builder(&dir).config(&config(&registry, "instance")).env(&env).start();
    assert_eq!(source_of(&daemon, &registry.host()), "instance profile (IMDS)");
    assert!(imds.calls() > before, "IMDS gave the credentials");
    push_and_pull(&dir, &daemon, &registry);
}

#[test]
fn a_bad_source_is_refused_at_check_config_and_start_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("imds", "aws.credentials: \"imds\" is not a credential source; use instance, chain"),
        ("profile:", "aws.credentials: \"profile:\" needs a profile name"),
        ("profile:nope", "aws.credentials: profile \"nope\" is in neither"),
        ("web-identity", "aws.credentials: web-identity: AWS_WEB_IDENTITY_TOKEN_FILE is not set"),
    ];
    for (source, want) in cases {
        let path = Daemon::write_config(tmp.path(), &format!("[aws]\ncredentials = \"{source}\"\n"));
        for args in [&["check-config", "--config"][..], &["run", "--config"][..]] {
            let out = clean_command(daemon_bin(), tmp.path()).args(args).arg(&path).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?} {source}: {err}");
            assert!(err.contains(want) && err.contains("config.toml:"), "{args:?} {source}: {err}");
        }
    }
    let path = Daemon::write_config(tmp.path(), "[aws]\ncredentials = \"web-identity\"\n");
    let out = clean_command(daemon_bin(), tmp.path())
        .args(["check-config", "--config"])
        .arg(&path)
        .env("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/token")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read the token file /nonexistent/token"), "{err}");
}

/// `ecr-credd doctor` for `config` (no daemon running): exit code and report.
fn doctor_with(dir: &Path, config: &str, env: &[(&str, String)]) -> (i32, String) {
    doctor(dir, &Daemon::write_config(dir, config), &[], env)
}

/// moto and a registry, for doctor to check against.
fn doctor_bed() -> (tempfile::TempDir, Moto, Registry) {
    let tmp = tempfile::tempdir().unwrap();
    let moto = Moto::start(tmp.path());
    let registry = Registry::start(tmp.path(), PASSWORD);
    (tmp, moto, registry)
}

/// doctor's report with base credentials from `source`, printed for the log.
fn doctor_report(home: &Path, registry: &Registry, source: &str, env: &[(&str, String)]) -> (i32, String) {
    let (code, report) = doctor_with(home, &config(registry, source), env);
    eprintln!("doctor, credentials = \"{source}\":\n{report}");
    (code, report)
}

/// An environment with only a web identity token file.
fn web_identity_env(home: &Path, moto: &Moto) -> Vec<(&'static str, String)> {
    let token = home.join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln").unwrap();
    let mut env = no_imds(moto);
    env.push(("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()));
    env.push(("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/irsa-node".into()));
    env
}

#[test]
fn doctor_names_the_environment_as_the_source() {
    require!(Moto, Registry);
    let (tmp, moto, registry) = doctor_bed();
    let mut env = no_imds(&moto);
    env.push(("AWS_ACCESS_KEY_ID", "AKIAENVEXAMPLE000003".into()));
    env.push(("AWS_SECRET_ACCESS_KEY", "s".into()));
    let (_, report) = doctor_report(tmp.path(), &registry, "env", &env);
    assert!(report.contains("ok   base credentials: environment gave them"), "{report}");
    assert!(report.contains("ok   sts:AssumeRole"), "{report}");
}

#[test]
fn doctor_names_what_each_skipped_source_of_the_chain_lacked() {
    require!(Moto, Registry);
    let (tmp, moto, registry) = doctor_bed();
    let env = web_identity_env(tmp.path(), &moto);
    let (_, report) = doctor_report(tmp.path(), &registry, "chain", &env);
    assert!(
        report.contains("ok   base credentials: web identity gave them; not from: environment:"),
        "{report}"
    );
    assert!(report.contains("profile (AWS_PROFILE or default):"), "{report}");
}

#[test]
fn doctor_names_web_identity_and_a_profile_each_on_its_own() {
    require!(Moto, Registry);
    let (tmp, moto, registry) = doctor_bed();
    let home = tmp.path();
    let (_, report) = doctor_report(home, &registry, "web-identity", &web_identity_env(home, &moto));
    assert!(report.contains("ok   base credentials: web identity gave them"), "{report}");
    let aws_config = home.join("aws-config");
    std::fs::write(
        &aws_config,
        "[profile ci]\naws_access_key_id = AKIAPROFILE000000002\naws_secret_access_key = s\n",
    )
    .unwrap();
    let mut env = no_imds(&moto);
    env.push(("AWS_CONFIG_FILE", aws_config.display().to_string()));
    let (_, report) = doctor_report(home, &registry, "profile:ci", &env);
    assert!(report.contains("ok   base credentials: profile ci gave them"), "{report}");
    assert!(report.contains("ok   ecr:GetAuthorizationToken"), "{report}");
}

#[test]
fn doctor_names_the_container_endpoint_or_says_what_it_lacks() {
    require!(Moto, Registry);
    let (tmp, moto, registry) = doctor_bed();
    let home = tmp.path();
    let (_endpoint, _, env) = container_endpoint(&home.join("pod"), &moto, 21600);
    let (_, report) = doctor_report(home, &registry, "container", &env);
    assert!(report.contains("ok   base credentials: container endpoint gave them"), "{report}");
    let (code, report) = doctor_report(home, &registry, "container", &no_imds(&moto));
    assert_eq!(code, 1);
    assert!(report.contains("FAIL base credentials: container:"), "{report}");
    assert!(report.contains("EKS Pod Identity association"), "{report}");
}
