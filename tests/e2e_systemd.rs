//! systemd without a running systemd: unit verification and exposure score,
//! readiness and watchdog on our own NOTIFY_SOCKET, socket activation with
//! LISTEN_FDS, and a restart that loses no `get`.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use testbed::*;

/// The units, with ExecStart pointing at the binary under test.
fn units_in(dir: &Path) {
    let service = std::fs::read_to_string(format!("{ROOT}/systemd/ecr-credd.service")).unwrap();
    std::fs::write(dir.join("ecr-credd.service"), service.replace("/usr/bin/ecr-credd", daemon_bin()))
        .unwrap();
    std::fs::copy(format!("{ROOT}/systemd/ecr-credd.socket"), dir.join("ecr-credd.socket")).unwrap();
}

#[test]
fn units_verify_and_score_at_most_1_5() {
    require!(Systemd);
    let tmp = tempfile::tempdir().unwrap();
    units_in(tmp.path());
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no", "ecr-credd.service", "ecr-credd.socket"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.trim().is_empty(), "systemd-analyze verify: {text}");

    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager", "./ecr-credd.service"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score = exposure_score(&text);
    eprintln!("systemd-analyze security exposure: {score}");
    assert!(score <= 1.5, "exposure {score} is above 1.5:\n{text}");

    let service = std::fs::read_to_string(tmp.path().join("ecr-credd.service")).unwrap();
    for line in
        ["Type=notify", "WatchdogSec=", "Restart=on-failure", "DynamicUser=yes", "ProtectSystem=strict"]
    {
        assert!(service.contains(line), "service lacks {line}");
    }
    let socket = std::fs::read_to_string(tmp.path().join("ecr-credd.socket")).unwrap();
    for line in ["ListenStream=/run/ecr-credd/ecr-credd.sock", "SocketMode=0660", "SocketGroup=ecr-credd"] {
        assert!(socket.contains(line), "socket lacks {line}");
    }
    // containerd-only and podman hosts have no docker group; the unit must not need one.
    assert!(!socket.contains("SocketGroup=docker"), "the socket unit names the docker group");
}

#[test]
fn ready_watchdog_and_stopping_go_to_notify_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let notify_path = tmp.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let env = vec![
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", dead.clone()),
        ("AWS_ENDPOINT_URL", dead),
        ("NOTIFY_SOCKET", notify_path.display().to_string()),
        ("WATCHDOG_USEC", "400000".to_string()),
    ];
    let socket = tmp.path().join("run/ecr-credd.sock");
    let config = Daemon::write_config(tmp.path(), &alias_config(""));
    // systemd names the watched process in WATCHDOG_PID; sh's $$ is the daemon after exec.
    let script = format!("WATCHDOG_PID=$$ exec {} run --config {}", daemon_bin(), config.display());
    let mut cmd = clean_command("sh", tmp.path());
    cmd.args(["-c", &script]);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let mut daemon = Proc::spawn("ecr-credd", &mut cmd);
    let mut buf = [0u8; 4096];
    let n = notify.recv(&mut buf).unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.contains("READY=1"), "{first}");
    // READY=1 comes only once the socket has its final mode.
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let mut pings = 0;
    let start = Instant::now();
    while pings < 3 && start.elapsed() < Duration::from_secs(5) {
        let n = notify.recv(&mut buf).unwrap();
        if String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1") {
            pings += 1;
        }
    }
    assert_eq!(pings, 3, "watchdog pings at half the 400 ms timeout");
    assert!(daemon.terminate(Duration::from_secs(15)).unwrap().success());
    let mut stopping = false;
    while let Ok(n) = notify.recv(&mut buf) {
        if String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1") {
            stopping = true;
            break;
        }
    }
    assert!(stopping);
}

/// Starts the daemon on an inherited listening socket, the way systemd does:
/// the fd arrives as fd 3 with LISTEN_FDS=1 and LISTEN_PID of the daemon.
fn activated(dir: &Path, listener: &UnixListener, env: &[(&str, String)]) -> Proc {
    let config = Daemon::write_config(dir, &alias_config(""));
    let fd: std::os::fd::OwnedFd = listener.try_clone().unwrap().into();
    let script = format!(
        "exec 3<&0 0</dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec {} run --config {}",
        daemon_bin(),
        config.display()
    );
    let mut cmd = clean_command("sh", dir);
    cmd.args(["-c", &script]).env("RUST_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc::spawn_with_stdin("ecr-credd (activated)", &mut cmd, Stdio::from(fd))
}

#[test]
fn socket_activation_and_restart_lose_no_get() {
    require!(Moto);
    let tmp = tempfile::tempdir().unwrap();
    let (moto, imds) = (Moto::start(tmp.path()), Imds::start(tmp.path()));
    let env = Daemon::aws_env(&moto, &imds);
    // The "systemd" side: a socket that outlives every daemon.
    let path = tmp.path().join("held.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let mut daemon = activated(tmp.path(), &listener, &env);
    wait_until("the first token", Duration::from_secs(20), || run_helper(&path, "get", ALIAS).0 == 0);
    assert!(daemon.output().contains("using the socket passed by systemd"), "{}", daemon.output());

    // A stream of gets while the daemon restarts.
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (0, Vec::new());
                while !stop.load(Ordering::SeqCst) {
                    match run_helper(&path, "get", ALIAS) {
                        (0, _, _) => ok += 1,
                        (_, out, _) => failed.push(out),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert!(daemon.terminate(Duration::from_secs(15)).unwrap().success());
    assert!(path.exists(), "an activated daemon leaves systemd's socket alone");
    std::thread::sleep(Duration::from_millis(300)); // no daemon at all for a while
    let second = activated(tmp.path(), &listener, &env);
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::SeqCst);
    let (mut ok, mut failed) = (0, Vec::new());
    for w in workers {
        let (o, f) = w.join().unwrap();
        ok += o;
        failed.extend(f);
    }
    eprintln!("gets across the restart: {ok} succeeded, {} failed", failed.len());
    assert!(failed.is_empty(), "gets failed across the restart: {failed:?}");
    assert!(ok > 20, "the stream kept going ({ok})");
    drop(second);
}

#[test]
fn the_socket_group_comes_from_the_activated_socket() {
    require!(Moto, Root);
    let tmp = tempfile::tempdir().unwrap();
    open_to_all(tmp.path());
    let (moto, imds) = (Moto::start(tmp.path()), Imds::start(tmp.path()));
    // As systemd makes it with SocketGroup=users; the config names no group.
    let users = ecr_credd_client::groups::lookup_group("users").expect("group users in /etc/group");
    let path = tmp.path().join("held.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::os::unix::fs::chown(&path, None, Some(users)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660)).unwrap();
    let daemon = activated(tmp.path(), &listener, &Daemon::aws_env(&moto, &imds));
    wait_until("the first token", Duration::from_secs(20), || run_helper(&path, "get", ALIAS).0 == 0);

    // A member of the socket's group gets the token: the daemon's peer check
    // follows the socket it was handed, not the config's default group.
    let (code, out) = helper_as(tmp.path(), &path, 65534, users, ALIAS);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(PASSWORD), "{out}");

    // A group only NSS knows (LDAP, sssd: not in /etc/group, which the static
    // binary reads): under systemd the daemon takes the gid from the socket.
    let nss_only = 4242;
    assert_eq!(
        ecr_credd_client::groups::group_name(nss_only),
        "4242",
        "gid 4242 must not be in /etc/group here"
    );
    std::os::unix::fs::chown(&path, None, Some(nss_only)).unwrap();
    drop(daemon);
    let _daemon = activated(tmp.path(), &listener, &Daemon::aws_env(&moto, &imds));
    wait_until("the token again", Duration::from_secs(20), || run_helper(&path, "get", ALIAS).0 == 0);
    let (code, out) = helper_as(tmp.path(), &path, 65534, nss_only, ALIAS);
    assert_eq!(code, 0, "a member of a group missing from /etc/group: {out}");
    std::os::unix::fs::chown(&path, None, Some(users)).unwrap();

    // Someone outside it is told which group to join, not to start the service.
    let (code, out) = helper_as(tmp.path(), &path, 65534, 65534, ALIAS);
    assert_eq!(code, 1);
    assert!(
        out.contains("only root and members of group users may use it")
            && out.contains("sudo usermod -aG users USER")
            && !out.contains("systemctl start"),
        "{out}"
    );
}
