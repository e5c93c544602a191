//! Operations: the health endpoint over real HTTP, `ecr-credd status`, and
//! config reload on SIGHUP.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use testbed::*;

fn config(health: u16, extra: &str) -> String {
    format!("[health]\nlisten = \"127.0.0.1:{health}\"\n\n{}{extra}", registry_toml(ALIAS, Some(ROLE)))
}

fn status_cmd(daemon: &Daemon) -> (i32, String) {
    let out = clean_command(daemon_bin(), std::path::Path::new("/nonexistent"))
        .args(["status", "--socket"])
        .arg(&daemon.socket)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn health_endpoint_status_and_metrics_over_http() {
    require!(Moto);
    let port = free_port();
    let Stack { dir: _tmp, moto, imds: _imds, daemon } = Stack::start(&config(port, ""));
    wait_port(port, "health endpoint");
    wait_until("ready", Duration::from_secs(20), || http(port, "GET", "/readyz", "").0 == 200);

    assert_eq!(http(port, "GET", "/healthz", ""), (200, "ok\n".into()));
    // The identity is not looked up until something asks for it: a booting
    // fleet's STS calls are its AssumeRoles alone.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(moto.count("GetCallerIdentity"), 0, "GetCallerIdentity before anyone asked");
    let (code, body) = http(port, "GET", "/readyz", "");
    assert_eq!(code, 200);
    assert!(body.contains("\"ready\": true"), "{body}");

    let (code, body) = http(port, "GET", "/status", "");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let r = &v["registries"][0];
    assert_eq!(r["host"], ALIAS);
    assert_eq!(r["account"], ACCOUNT);
    assert_eq!(r["role_arn"], ROLE);
    assert_eq!(r["ready"], true);
    assert!(r["expires_at"].as_u64().unwrap() > 0 && r["next_refresh"].as_u64().unwrap() > 0);
    assert!(v["identity"].as_str().is_some_and(|a| a.starts_with("arn:aws:")), "{body}");
    assert_eq!(moto.count("GetCallerIdentity"), 1, "looked up once /status asked");
    assert!(!body.contains(PASSWORD) && !body.contains("auth-token"), "no secret in /status");

    // Some traffic, then the metrics reflect it.
    assert_eq!(daemon.helper("get", ALIAS).0, 0);
    assert_eq!(daemon.helper("get", "quay.io").0, 1);
    let (code, metrics) = http(port, "GET", "/metrics", "");
    assert_eq!(code, 200);
    for needle in [
        "ecr_credd_token_fetches_total{registry=\"127.0.0.1:5000\",outcome=\"success\",step=\"none\"} 1",
        "ecr_credd_token_expiry_timestamp_seconds{registry=\"127.0.0.1:5000\"}",
        "ecr_credd_socket_requests_total{outcome=\"ok\"}",
        "ecr_credd_socket_requests_total{outcome=\"not_found\"} 1",
        "ecr_credd_socket_request_duration_seconds_bucket",
        "ecr_credd_aws_calls_total{api=\"AssumeRole\",outcome=\"success\"} 1",
        "ecr_credd_aws_calls_total{api=\"GetAuthorizationToken\",outcome=\"success\"} 1",
        "ecr_credd_aws_calls_total{api=\"IMDS\",outcome=\"success\"}",
        "ecr_credd_build_info{version=",
    ] {
        assert!(metrics.contains(needle), "missing {needle:?} in\n{metrics}");
    }
    assert!(!metrics.contains(PASSWORD));

    assert_eq!(http(port, "GET", "/nope", "").0, 404);
    assert_eq!(http(port, "POST", "/status", "x").0, 405);
    // Oversized request heads are refused, slow ones cut off.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let big = format!("GET /status HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(64 * 1024));
    let _ = s.write_all(big.as_bytes());
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer}");
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    slow.write_all(b"GET /status HTTP/1.1\r\n").unwrap();
    let mut buf = Vec::new();
    let start = std::time::Instant::now();
    let _ = slow.read_to_end(&mut buf);
    assert!(start.elapsed() < Duration::from_secs(12), "a slow client is cut off");

    let (code, out) = status_cmd(&daemon);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("127.0.0.1:5000") && out.contains("yes") && out.ends_with("ready\n"), "{out}");
}

#[test]
fn readyz_is_503_with_reasons_while_aws_refuses() {
    require!(Moto);
    let tmp = tempfile::tempdir().unwrap();
    let (moto, imds) = (Moto::start(tmp.path()), Imds::start(tmp.path()));
    assert_eq!(http(moto.port, "POST", "/moto-api/reset-auth", "0").0, 200);
    let port = free_port();
    let daemon =
        Daemon::builder(tmp.path()).config(&config(port, "")).env(&Daemon::aws_env(&moto, &imds)).start();
    wait_port(port, "health endpoint");
    let mut body = String::new();
    wait_until("a refusal", Duration::from_secs(20), || {
        let (code, b) = http(port, "GET", "/readyz", "");
        body = b;
        code == 503 && body.contains("sts:AssumeRole")
    });
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], false);
    assert_eq!(v["not_ready"][0]["host"], ALIAS);
    assert!(
        v["not_ready"][0]["reason"].as_str().unwrap().contains(&format!("sts:AssumeRole on {ROLE} denied")),
        "{body}"
    );
    // Alive, though not ready.
    assert_eq!(http(port, "GET", "/healthz", "").0, 200);
    let (_, metrics) = http(port, "GET", "/metrics", "");
    assert!(metrics.contains("outcome=\"failure\",step=\"assume_role\""), "{metrics}");
    assert!(
        metrics.contains("ecr_credd_aws_calls_total{api=\"AssumeRole\",outcome=\"denied\"}"),
        "{metrics}"
    );

    let (code, out) = status_cmd(&daemon);
    assert_eq!(code, 1, "status exits 1 when not ready: {out}");
    assert!(out.contains("NO") && out.contains("sts:AssumeRole") && out.ends_with("NOT READY\n"), "{out}");
}

#[test]
fn sighup_reloads_keeping_unchanged_tokens_and_rejects_bad_configs() {
    require!(Moto);
    let port = free_port();
    let Stack { dir: tmp, moto, imds: _imds, daemon } = Stack::start(&config(port, ""));
    wait_until("a token", Duration::from_secs(20), || daemon.helper("get", ALIAS).0 == 0);
    assert_eq!(moto.counts(), (1, 1));

    // Add a registry: the old one keeps its token, the new one is fetched.
    let added =
        "\n[[registry]]\nhost = \"127.0.0.2:5000\"\nregistry_id = \"111122223333\"\nregion = \"eu-west-1\"\n";
    Daemon::write_config(tmp.path(), &config(port, added));
    daemon.proc.signal("HUP");
    wait_until("the new registry", Duration::from_secs(20), || daemon.helper("get", "127.0.0.2:5000").0 == 0);
    let (_, gat) = moto.counts();
    assert_eq!(gat, 2, "only the added registry was fetched");
    let (_, out, _) = daemon.helper("list", "");
    assert_eq!(out, "{\"127.0.0.1:5000\":\"AWS\",\"127.0.0.2:5000\":\"AWS\"}\n");

    // A broken config is rejected; the one in force stays.
    std::fs::write(tmp.path().join("config.toml"), "[[registry]]\nhots = 1\n").unwrap();
    daemon.proc.signal("HUP");
    wait_until("the rejection", Duration::from_secs(10), || {
        daemon.proc.output().contains("new config rejected")
    });
    assert!(daemon.proc.output().contains("unknown field `hots`"));
    assert_eq!(daemon.helper("get", "127.0.0.2:5000").0, 0);

    // A config others may write is refused on reload as it is at start.
    let sneaky =
        "\n[[registry]]\nhost = \"127.0.0.3:5000\"\nregistry_id = \"111122223333\"\nregion = \"eu-west-1\"\n";
    let path = Daemon::write_config(tmp.path(), &config(port, sneaky));
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    daemon.proc.signal("HUP");
    wait_until("the rejection of a writable config", Duration::from_secs(10), || {
        daemon.proc.output().contains("the config may be changed by others (owner uid 0, mode 0666)")
    });
    assert_eq!(daemon.helper("get", "127.0.0.3:5000").0, 1, "the writable config was not applied");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();

    // A bad credential source is refused on reload too; the config in force stays.
    std::fs::write(
        &path,
        format!("[aws]\ncredentials = \"imds\"\n\n{}", std::fs::read_to_string(&path).unwrap()),
    )
    .unwrap();
    daemon.proc.signal("HUP");
    wait_until("the rejection of a bad credential source", Duration::from_secs(10), || {
        daemon.proc.output().contains("aws.credentials: \"imds\" is not a credential source")
    });
    assert_eq!(daemon.helper("get", "127.0.0.2:5000").0, 0, "the config in force stays");

    // Removing a registry stops serving it.
    Daemon::write_config(tmp.path(), &config(port, ""));
    daemon.proc.signal("HUP");
    wait_until("the removal", Duration::from_secs(10), || daemon.helper("get", "127.0.0.2:5000").0 == 1);
    assert_eq!(daemon.helper("get", ALIAS).0, 0);
    assert_eq!(moto.counts().1, 2, "no refetch for the registry that stayed");
}

#[test]
fn sigterm_finishes_in_flight_gets_then_exits_zero() {
    require!(Moto);
    let tmp = tempfile::tempdir().unwrap();
    let (moto, imds) = (Moto::start(tmp.path()), Imds::start(tmp.path()));
    // Each IMDS call takes 0.6 s, so the first token takes about 2 s.
    assert_eq!(http(imds.port, "POST", "/_control/delay", "0.6").0, 200);
    let mut daemon = Daemon::builder(tmp.path())
        .config(&config(free_port(), ""))
        .env(&Daemon::aws_env(&moto, &imds))
        .start();
    let socket = daemon.socket.clone();
    let in_flight = std::thread::spawn(move || run_helper(&socket, "get", ALIAS));
    std::thread::sleep(Duration::from_millis(300));
    let start = std::time::Instant::now();
    let status = daemon.proc.terminate(Duration::from_secs(20)).expect("exits after SIGTERM");
    let (code, out, _) = in_flight.join().unwrap();
    assert_eq!(code, 0, "the get in flight at SIGTERM was answered: {out}");
    assert!(out.contains(PASSWORD));
    assert!(status.success(), "{status:?}");
    assert!(start.elapsed() < Duration::from_secs(15));
    assert!(daemon.proc.output().contains("draining in-flight requests"));
}
