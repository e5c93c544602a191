//! The daemon as a process: many gets from one fetch, no secrets in trace
//! logs, bad input refused while others are served, specific errors.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use ecr_credd_client::client;
use ecr_credd_client::helper::NOT_FOUND;
use ecr_credd_client::wire::{Request, RequestBody, ResponseBody};
use testbed::*;

fn wait_for_token(daemon: &Daemon) {
    wait_until("a token", Duration::from_secs(20), || daemon.helper("get", ALIAS).0 == 0);
}

#[test]
fn thousand_gets_one_fetch_and_no_secret_in_trace_logs() {
    require!(Moto);
    let tmp = tempfile::tempdir().unwrap();
    let (moto, imds) = (Moto::start(tmp.path()), Imds::start(tmp.path()));
    let daemon = Daemon::builder(tmp.path())
        .config(&alias_config(""))
        .env(&Daemon::aws_env(&moto, &imds))
        .log("trace")
        .start();
    wait_for_token(&daemon);

    let threads: Vec<_> = (0..8)
        .map(|_| {
            let socket = daemon.socket.clone();
            std::thread::spawn(move || {
                for _ in 0..125 {
                    let r = client::request(&socket, &Request::new(RequestBody::Get { host: ALIAS.into() }))
                        .unwrap();
                    match r.body {
                        ResponseBody::Credentials { secret, .. } => {
                            assert_eq!(secret.expose(), PASSWORD)
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // The helper as docker runs it, timed for the closing note.
    let mut times = Vec::new();
    for _ in 0..50 {
        let start = Instant::now();
        let (code, out, _) = daemon.helper("get", &format!("https://{ALIAS}"));
        times.push(start.elapsed());
        assert_eq!(code, 0);
        assert_eq!(
            out,
            format!("{{\"ServerURL\":\"https://{ALIAS}\",\"Username\":\"AWS\",\"Secret\":\"{PASSWORD}\"}}\n")
        );
    }
    times.sort();
    eprintln!(
        "helper get, whole process: median {:?}, max {:?}",
        times[times.len() / 2],
        times[times.len() - 1]
    );
    let (assume, gat) = moto.counts();
    eprintln!("AWS calls for 1,051 gets: AssumeRole {assume}, GetAuthorizationToken {gat}");
    assert_eq!((assume, gat), (1, 1));

    // An unlisted ECR host is served with the instance's own credentials.
    let (code, out, _) = daemon.helper("get", ECR_HOST);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"Secret\":\"123456789012-auth-token\""), "{out}");
    assert_eq!(moto.counts(), (1, 2));
    let (code, out, _) = daemon.helper("list", "junk");
    assert_eq!((code, out), (0, format!("{{\"{ALIAS}\":\"AWS\"}}\n")));

    // `ecr-credd get` masks the secret.
    let out = clean_command(daemon_bin(), tmp.path())
        .args(["get", ALIAS, "--socket"])
        .arg(&daemon.socket)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && shown.contains("masked"), "{shown}");
    assert!(!shown.contains(PASSWORD));

    let logs = daemon.proc.output();
    assert!(logs.contains("TRACE"), "the daemon really logged at trace level");
    assert!(logs.contains("token refreshed"));
    let (imds_secret, imds_token) = imds.secrets();
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{PASSWORD}"));
    for (what, secret) in [
        ("ECR password", PASSWORD),
        ("ECR token", b64.as_str()),
        ("instance secret key", imds_secret.as_str()),
        ("instance session token", imds_token.as_str()),
        // moto's assumed-role session tokens all start with this.
        ("assumed-role session token", "FQoGZXIvYXdzE"),
    ] {
        assert!(!logs.contains(secret), "{what} leaked into the logs");
    }
}

#[test]
fn bad_input_gets_specific_errors_and_the_daemon_keeps_serving() {
    require!(Moto);
    let Stack { dir: _tmp, moto: _moto, imds: _imds, mut daemon } = Stack::start(&alias_config(""));
    wait_for_token(&daemon);
    let socket = daemon.socket.clone();

    // Idle connections hold no one up.
    let idle: Vec<UnixStream> = (0..200).map(|_| UnixStream::connect(&socket).unwrap()).collect();
    let mut half = UnixStream::connect(&socket).unwrap();
    half.write_all(b"{\"v\":1,\"op\":\"get\",").unwrap();

    let cases: &[(&[u8], &str)] = &[
        (b"garbage\n", "\"kind\":\"bad_request\",\"message\":\"malformed message"),
        (
            b"{\"v\":9,\"op\":\"get\",\"host\":\"x\"}\n",
            "unsupported protocol version 9 (this build speaks 1)",
        ),
        (b"{\"v\":1,\"op\":\"get\",\"host\":\"bad host\"}\n", "invalid registry host"),
        (b"{\"v\":1,\"op\":\"get\",\"host\":\"quay.io\"}\n", "\"kind\":\"not_found\""),
        (&[0xff; 100], "malformed message"),
    ];
    for (bytes, want) in cases {
        let got = raw_exchange(&socket, bytes);
        assert!(got.contains(want), "{:?}: got {got:?}, wanted {want:?}", String::from_utf8_lossy(bytes));
    }
    // An op from a newer client: a clear "unsupported", byte for byte.
    let got = raw_exchange(&socket, b"{\"v\":1,\"op\":\"launch\",\"host\":\"x\"}\n");
    assert_eq!(
        got,
        format!(
            "{{\"v\":1,\"type\":\"error\",\"kind\":\"bad_request\",\"message\":\"unsupported request: this ecr-credd daemon ({}) answers get, get_workload, list and status; upgrade the daemon to match the client\"}}\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    let got = raw_exchange(&socket, &vec![b'a'; 20_000]);
    assert!(got.contains("request larger than 16384 bytes"), "{got}");

    let (code, out, _) = daemon.helper("get", "https://index.docker.io/v1/");
    assert_eq!((code, out.trim()), (1, NOT_FOUND));
    let (code, out, _) = daemon.helper("get", "\n");
    assert_eq!((code, out.as_str()), (1, "ecr-credd: expected a registry server URL on stdin\n"));
    let (code, out, _) = daemon.helper("get", &"x".repeat(70_000));
    assert_eq!(code, 1);
    assert!(out.contains("larger than 65536 bytes"), "{out}");
    let (code, out, _) = daemon.helper("frobnicate", "");
    assert_eq!((code, out.trim()), (1, ecr_credd_client::helper::USAGE));
    assert_eq!(
        daemon.helper("store", "{\"ServerURL\":\"x\",\"Username\":\"u\",\"Secret\":\"s\"}"),
        (0, String::new(), String::new())
    );
    assert_eq!(daemon.helper("erase", "x"), (0, String::new(), String::new()));

    // Through all of that, everyone else is served, fast.
    let start = Instant::now();
    let (code, out, _) = daemon.helper("get", ALIAS);
    assert_eq!(code, 0, "{out}");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(daemon.proc.exited().is_none(), "daemon still running");
    drop((idle, half));

    // SIGTERM: clean exit, socket removed.
    let status = daemon.proc.terminate(Duration::from_secs(15)).expect("daemon exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists(), "socket removed on exit");
}

#[test]
fn failures_name_the_registry_and_the_step() {
    require!(Moto);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    // IMDS that is not there.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let d1 = home.join("d1");
    std::fs::create_dir_all(&d1).unwrap();
    let env = vec![
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", dead),
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", free_port())),
    ];
    let daemon = Daemon::builder(&d1).config(&alias_config("")).env(&env).start();
    let (code, out, _) = daemon.helper("get", ALIAS);
    assert_eq!(code, 1);
    assert!(
        out.starts_with(
            "ecr-credd: 127.0.0.1:5000 (210987654321, us-east-1): instance credentials unavailable from IMDS"
        ),
        "{out}"
    );
    drop(daemon);

    // moto with IAM enforced: the instance principal may not assume the role.
    let (moto, imds) = (Moto::start(home), Imds::start(home));
    let (status, _) = http(moto.port, "POST", "/moto-api/reset-auth", "0");
    assert_eq!(status, 200);
    let d2 = home.join("d2");
    std::fs::create_dir_all(&d2).unwrap();
    let daemon = Daemon::builder(&d2).config(&alias_config("")).env(&Daemon::aws_env(&moto, &imds)).start();
    let mut out = String::new();
    wait_until("the AssumeRole failure", Duration::from_secs(20), || {
        out = daemon.helper("get", ALIAS).1;
        out.contains("sts:AssumeRole")
    });
    assert!(
        out.starts_with("ecr-credd: 127.0.0.1:5000 (210987654321, us-east-1): sts:AssumeRole on arn:aws:iam::210987654321:role/ecr-pull denied"),
        "{out}"
    );
    assert!(!out.contains(NOT_FOUND));

    // The daemon stopped: the helper says so, with the socket path.
    let (code, out, _) = run_helper(Path::new("/nonexistent/ecr-credd.sock"), "get", ALIAS);
    assert_eq!(code, 1);
    assert!(out.contains("cannot reach the ecr-credd daemon at /nonexistent/ecr-credd.sock"), "{out}");
}

#[test]
fn config_errors_name_file_line_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "[server]\nsocket = \"/tmp/x.sock\"\nsockett = \"/tmp/y\"\n").unwrap();
    for cmd in ["check-config", "run"] {
        let out = clean_command(daemon_bin(), tmp.path()).args([cmd, "--config"]).arg(&bad).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("{}:3:1: unknown field `sockett`", bad.display())), "{cmd}: {err}");
    }
    let good = tmp.path().join("good.toml");
    std::fs::write(&good, alias_config("")).unwrap();
    let out = clean_command(daemon_bin(), tmp.path())
        .args(["check-config"])
        .env("ECR_CREDD_CONFIG", &good)
        .output()
        .unwrap();
    assert!(out.status.success());
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("127.0.0.1:5000  210987654321  us-east-1  arn:aws:iam::210987654321:role/ecr-pull"),
        "{shown}"
    );
    // The socket's group, as the daemon would choose it: the default group
    // may be missing (then said so); a named one must exist.
    let default_missing = ecr_credd_client::groups::lookup_group("ecr-credd").is_none();
    assert_eq!(shown.contains("(group ecr-credd, which does not exist here"), default_missing, "{shown}");
    let named = tmp.path().join("named.toml");
    std::fs::write(&named, format!("[server]\ngroup = \"no-such-group\"\n{}", alias_config(""))).unwrap();
    let out = clean_command(daemon_bin(), tmp.path())
        .args(["check-config", "--config"])
        .arg(&named)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("groupadd --system no-such-group"), "{err}");
}
