//! Base-credential sources that misbehave. A `credential_process` that never
//! exits: every wait is bounded and says which source hung, registries whose
//! role credentials are cached keep being served, and the hung child is not
//! started again on every retry. One that fails printing a secret to stderr:
//! the secret reaches no log, status or answer.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use testbed::*;

/// The hung child's command line, unique to this test.
const HUNG: &str = "sleep 100071";

/// Processes running the hung command (no other test uses it).
fn hung_children() -> usize {
    let out = Command::new("pgrep").args(["-f", "-x", HUNG]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// The daemon's environment for `credentials = "profile:x"`, whose
/// `credential_process` is `process`; IMDS is a dead port.
fn profile_x(dir: &Path, moto: &Moto, process: &str) -> Vec<(&'static str, String)> {
    let aws_config = dir.join("aws-config");
    std::fs::write(&aws_config, format!("[profile x]\ncredential_process = {process}\n")).unwrap();
    vec![
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", format!("http://127.0.0.1:{}", free_port())),
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_CONFIG_FILE", aws_config.display().to_string()),
    ]
}

/// A config with the health endpoint on `health`, `profile:x`, and ALIAS on ROLE, then `extra`.
fn config(health: u16, extra: &str) -> String {
    format!(
        "[health]\nlisten = \"127.0.0.1:{health}\"\n[aws]\ncredentials = \"profile:x\"\n\n{}{extra}",
        registry_toml(ALIAS, Some(ROLE))
    )
}

#[test]
fn a_hung_credential_process_is_bounded_and_named() {
    require!(Moto);
    let _ = Command::new("pkill").args(["-f", "-x", HUNG]).status();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let moto = Moto::start(dir);
    // Keys that expire in 15 s until the file `hang` exists; then a child
    // that never exits.
    let script = dir.join("creds.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ -e {hang} ]; then exec {HUNG}; fi\n\
             printf '{{\"Version\":1,\"AccessKeyId\":\"AKIAPROCESS000000001\",\"SecretAccessKey\":\"s\",\"SessionToken\":\"t\",\"Expiration\":\"%s\"}}' \"$(date -u -d '+15 sec' +%Y-%m-%dT%H:%M:%SZ)\"\n",
            hang = dir.join("hang").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let env = profile_x(dir, &moto, &script.display().to_string());
    let health = free_port();
    let other_role = "arn:aws:iam::210987654321:role/ecr-other";
    let daemon = Daemon::builder(dir).config(&config(health, "")).env(&env).start();
    wait_until("a token", Duration::from_secs(20), || daemon.helper("get", ALIAS).0 == 0);

    // The source hangs from now on, and the keys it gave expire; a reload
    // adds a registry on the cached role and one on a new role.
    std::fs::write(dir.join("hang"), "").unwrap();
    std::thread::sleep(Duration::from_secs(16));
    let added = format!(
        "{}{}",
        registry_toml("127.0.0.1:5001", Some(ROLE)),
        registry_toml("127.0.0.1:5002", Some(other_role))
    );
    Daemon::write_config(dir, &config(health, &added));
    daemon.proc.signal("HUP");
    wait_until("the reload", Duration::from_secs(10), || daemon.proc.output().contains("config reloaded"));

    // The new role needs base credentials: the get fails within its wait,
    // naming the source and its deadline.
    let start = Instant::now();
    let (code, out, _) = daemon.helper("get", "127.0.0.1:5002");
    assert_eq!(code, 1, "{out}");
    assert!(start.elapsed() < Duration::from_secs(6), "{:?}", start.elapsed());
    assert!(out.contains("profile x: no answer within 4s"), "{out}");
    // The registry on the cached role is served at once.
    let start = Instant::now();
    assert_eq!(daemon.helper("get", "127.0.0.1:5001").0, 0);
    assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
    assert_eq!(daemon.helper("get", ALIAS).0, 0);

    // Retries go on, but wait on the one hung child rather than start more.
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(hung_children(), 1, "one hung child, not one per retry");
    // Not ready, saying why; alive, since every fetch still ends and backs off.
    let (status, body) = http(health, "GET", "/readyz", "");
    assert_eq!(status, 503);
    assert!(body.contains("127.0.0.1:5002") && body.contains("no answer within 4s"), "{body}");
    assert_eq!(http(health, "GET", "/healthz", "").0, 200);
    drop(daemon);
    let _ = Command::new("pkill").args(["-f", "-x", HUNG]).status();
}

#[test]
fn a_failing_credential_process_stderr_reaches_no_log_status_or_answer() {
    require!(Moto);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let moto = Moto::start(dir);
    let env = profile_x(dir, &moto, "sh -c 'echo SEKRIT >&2; exit 1'");
    let health = free_port();
    let daemon = Daemon::builder(dir).config(&config(health, "")).env(&env).log("debug").start();
    let (code, out, _) = daemon.helper("get", ALIAS);
    assert_eq!(code, 1);
    assert!(
        out.contains("profile x") && out.contains("exit status: 1") && out.contains("stderr is not shown"),
        "{out}"
    );
    let (_, status) = http(health, "GET", "/status", "");
    assert!(status.contains("exit status: 1"), "{status}");
    let (_, socket_status, _) = run_client(
        daemon_bin(),
        &["status", "--json", "--socket", &daemon.socket.display().to_string()],
        &daemon.socket,
        "",
    );
    wait_until("a retry logged", Duration::from_secs(10), || {
        daemon.proc.output().matches("token fetch failed").count() >= 2
    });
    for (place, text) in
        [("get", &out), ("/status", &status), ("status", &socket_status), ("log", &daemon.proc.output())]
    {
        assert!(!text.contains("SEKRIT"), "{place}: {text}");
    }
}

#[test]
fn a_source_hung_from_the_start_turns_health_red_after_two_minutes() {
    require!(Moto);
    const HUNG_FROM_START: &str = "sleep 100073";
    let _ = Command::new("pkill").args(["-f", "-x", HUNG_FROM_START]).status();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let moto = Moto::start(dir);
    let env = profile_x(dir, &moto, HUNG_FROM_START);
    let health = free_port();
    let daemon = Daemon::builder(dir).config(&config(health, "")).env(&env).start();
    let (code, out, _) = daemon.helper("get", ALIAS);
    assert!(code == 1 && out.contains("profile x: no answer within 4s"), "{out}");
    assert_eq!(http(health, "GET", "/healthz", "").0, 200, "a hang is not a stall at once");
    // No token anywhere and no answer for 2 minutes: a restart loses nothing,
    // so health turns red (and under systemd the watchdog restarts it).
    let started = std::time::Instant::now();
    let mut body = String::new();
    wait_until("/healthz to fail", Duration::from_secs(200), || {
        let (code, b) = http(health, "GET", "/healthz", "");
        body = b;
        code == 503
    });
    eprintln!("after {:?}: /healthz 503 {}", started.elapsed(), body.trim());
    assert!(body.contains("has given no answer for") && body.contains("no registry holds a token"), "{body}");
    drop(daemon);
    let _ = Command::new("pkill").args(["-f", "-x", HUNG_FROM_START]).status();
}
