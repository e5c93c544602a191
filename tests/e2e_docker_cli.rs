//! The docker CLI, with `credHelpers` and with `credsStore`. The CLI execs the
//! helper itself and forwards the credentials to the engine, so a stub engine
//! on loopback (testbed/docker_engine_stub.py) shows exactly what it would send.

use std::path::{Path, PathBuf};
use std::process::Output;

use testbed::*;

struct Engine {
    port: u16,
    _proc: Proc,
}

impl Engine {
    fn start(home: &Path) -> Engine {
        let port = free_port();
        let mut cmd = clean_command(python(), home);
        cmd.arg(format!("{ROOT}/testbed/docker_engine_stub.py")).arg(port.to_string());
        let proc = Proc::spawn("docker engine stub", &mut cmd);
        wait_port(port, "docker engine stub");
        Engine { port, _proc: proc }
    }

    /// Requests so far: (path, decoded X-Registry-Auth, decoded X-Registry-Config, /auth body).
    fn requests(&self) -> Vec<serde_json::Value> {
        let (_, body) = http(self.port, "GET", "/_requests", "");
        serde_json::from_str(&body).unwrap()
    }
}

fn docker(home: &Path, config: &Path, engine: &Engine, socket: &Path, args: &[&str], stdin: &str) -> Output {
    let mut cmd = clean_command("docker", home);
    cmd.env("DOCKER_HOST", format!("tcp://127.0.0.1:{}", engine.port))
        .env("DOCKER_BUILDKIT", "0")
        .env("ECR_CREDD_SOCKET", socket)
        .arg("--config")
        .arg(config)
        .args(args);
    output_with_stdin(&mut cmd, stdin)
}

fn config_dir(home: &Path, name: &str, json: &str) -> PathBuf {
    let dir = home.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), json).unwrap();
    dir
}

/// The registry host the daemon serves.
const HOST: &str = "127.0.0.1:5000";

/// moto, the IMDS double, the engine stub and a daemon serving [`HOST`].
fn bed(home: &Path) -> (Moto, Imds, Engine, Daemon) {
    let (moto, imds) = (Moto::start(home), Imds::start(home));
    let engine = Engine::start(home);
    let daemon = Daemon::builder(home)
        .config(&registry_toml(HOST, Some(ROLE)))
        .env(&Daemon::aws_env(&moto, &imds))
        .start();
    (moto, imds, engine, daemon)
}

#[test]
fn docker_cli_forwards_our_credentials_with_cred_helpers_and_creds_store() {
    require!(Moto, Docker);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let (moto, _imds, engine, daemon) = bed(home);
    let host = HOST;
    let image = format!("{host}/demo:v1");
    let expect_auth = |auth: &serde_json::Value, what: &str| {
        assert_eq!(auth["username"], "AWS", "{what}: {auth}");
        assert_eq!(auth["password"], PASSWORD, "{what}: {auth}");
        assert_eq!(auth["serveraddress"], host, "{what}: {auth}");
    };

    // credHelpers: a pull carries our token in X-Registry-Auth.
    let helpers = config_dir(home, "helpers", &format!("{{\"credHelpers\":{{\"{host}\":\"ecr-credd\"}}}}"));
    let out = docker(home, &helpers, &engine, &daemon.socket, &["pull", &image], "");
    assert!(out.status.success(), "docker pull: {}", output_text(&out));
    let pulls: Vec<_> = engine
        .requests()
        .into_iter()
        .filter(|r| r["path"].as_str().unwrap().contains("/images/create"))
        .collect();
    assert_eq!(pulls.len(), 1);
    expect_auth(&pulls[0]["auth"], "pull with credHelpers");

    // credsStore: push, then a legacy build, which lists the store and sends
    // every credential in X-Registry-Config.
    let store = config_dir(home, "store", "{\"credsStore\":\"ecr-credd\"}");
    let out = docker(home, &store, &engine, &daemon.socket, &["push", &image], "");
    assert!(out.status.success(), "docker push: {}", output_text(&out));
    let context = home.join("context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(context.join("Dockerfile"), format!("FROM {image}\n")).unwrap();
    let out = docker(
        home,
        &store,
        &engine,
        &daemon.socket,
        &["build", "-t", "built", context.to_str().unwrap()],
        "",
    );
    assert!(out.status.success(), "docker build: {}", output_text(&out));
    let requests = engine.requests();
    let find =
        |part: &str| requests.iter().find(|r| r["path"].as_str().unwrap().contains(part)).cloned().unwrap();
    expect_auth(&find("/push")["auth"], "push with credsStore");
    let build = find("/build");
    expect_auth(&build["config"][host], "build with credsStore (list, then get)");

    // docker login: with the store's credentials, and with --password-stdin
    // (the `aws ecr get-login-password | docker login` habit). Both end in
    // `store`, which must succeed without writing anything.
    let out = docker(home, &store, &engine, &daemon.socket, &["login", host], "");
    assert!(out.status.success(), "docker login: {}", output_text(&out));
    assert!(output_text(&out).contains("Login Succeeded"), "{}", output_text(&out));
    let out = docker(
        home,
        &store,
        &engine,
        &daemon.socket,
        &["login", "-u", "AWS", "--password-stdin", host],
        PASSWORD,
    );
    assert!(out.status.success(), "docker login --password-stdin: {}", output_text(&out));
    let logins: Vec<_> =
        engine.requests().into_iter().filter(|r| r["path"].as_str().unwrap().ends_with("/auth")).collect();
    assert_eq!(logins.len(), 2);
    for login in &logins {
        let body: serde_json::Value = serde_json::from_str(login["body"].as_str().unwrap()).unwrap();
        expect_auth(&body, "login");
    }
    let saved = std::fs::read_to_string(store.join("config.json")).unwrap();
    assert!(!saved.contains(PASSWORD) && !saved.contains("\"auth\""), "docker saved a secret: {saved}");

    // Everything above cost one AssumeRole and one GetAuthorizationToken.
    assert_eq!(moto.counts(), (1, 1));
}

#[test]
fn configure_docker_merges_into_a_config_with_other_content_and_the_cli_uses_it() {
    require!(Moto, Docker);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let (_moto, _imds, engine, daemon) = bed(home);
    let host = HOST;
    let original = "{\n\t\"auths\": {\n\t\t\"ghcr.io\": {\n\t\t\t\"auth\": \"dTpw\"\n\t\t}\n\t},\n\t\"credsStore\": \"desktop\",\n\t\"credHelpers\": {\n\t\t\"gcr.io\": \"gcloud\"\n\t},\n\t\"psFormat\": \"table {{.ID}}\\t{{.Names}}\"\n}\n";
    let dir = config_dir(home, "docker", original);
    let file = dir.join("config.json");
    let configure = |args: &[&str]| {
        let out = clean_command(daemon_bin(), home)
            .args(["configure", "docker", "--config-dir"])
            .arg(&dir)
            .args(args)
            .output()
            .unwrap();
        (out.status.code(), output_text(&out))
    };
    let (code, diff) = configure(&[host, "--dry-run"]);
    println!("---- ecr-credd configure docker --dry-run {host} ----\n{diff}");
    assert_eq!(code, Some(0), "{diff}");
    assert!(diff.contains(&format!("+\t\t\"{host}\": \"ecr-credd\"")), "{diff}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original, "--dry-run wrote");

    let (code, said) = configure(&[host]);
    assert_eq!(code, Some(0), "{said}");
    let written = std::fs::read_to_string(&file).unwrap();
    let v: serde_json::Value = serde_json::from_str(&written).unwrap();
    assert_eq!(v["credHelpers"], serde_json::json!({"gcr.io": "gcloud", host: "ecr-credd"}));
    assert_eq!(
        (v["auths"]["ghcr.io"]["auth"].as_str(), v["credsStore"].as_str()),
        (Some("dTpw"), Some("desktop"))
    );
    assert_eq!(v["psFormat"], "table {{.ID}}\t{{.Names}}");
    let out = docker(home, &dir, &engine, &daemon.socket, &["pull", &format!("{host}/demo:v1")], "");
    assert!(out.status.success(), "docker pull: {}", output_text(&out));
    let pull = engine
        .requests()
        .into_iter()
        .find(|r| r["path"].as_str().unwrap().contains("/images/create"))
        .unwrap();
    assert_eq!(
        (pull["auth"]["username"].as_str(), pull["auth"]["password"].as_str()),
        (Some("AWS"), Some(PASSWORD))
    );

    // Twice changes nothing, not even the file's time; --remove restores the original.
    let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
    let (_, said) = configure(&[host]);
    assert!(said.contains("unchanged"), "{said}");
    assert_eq!(std::fs::metadata(&file).unwrap().modified().unwrap(), modified);
    let (code, said) = configure(&[host, "--remove"]);
    assert_eq!(code, Some(0), "{said}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    // With no host named, both ways take the configured registries.
    let config = home.join("config.toml");
    let (code, said) = configure(&["--config", config.to_str().unwrap()]);
    assert!(code == Some(0) && said.contains(&format!("{host}: added")), "{said}");
    let (code, said) = configure(&["--config", config.to_str().unwrap(), "--remove"]);
    assert!(code == Some(0) && said.contains(&format!("{host}: removed")), "{said}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);

    // A host another helper holds is left alone and named; malformed JSON is refused in place.
    let (code, said) = configure(&["gcr.io"]);
    assert_eq!(code, Some(1));
    assert!(
        said.contains("gcr.io is routed to docker-credential-gcloud; left unchanged (--force replaces it)"),
        "{said}"
    );
    std::fs::write(&file, "{\"auths\": {\n  \"x\": }\n").unwrap();
    let (code, said) = configure(&[host]);
    assert_eq!(code, Some(1));
    assert!(said.contains("config.json: line 2, column 8: not JSON"), "{said}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "{\"auths\": {\n  \"x\": }\n");
}
