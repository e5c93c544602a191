//! Security: the peer check, nothing written to disk, insecure paths refused,
//! and hostile input answered specifically while others are served.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ecr_credd_client::client;
use ecr_credd_client::wire::{Request, RequestBody, ResponseBody};
use testbed::*;

/// Runs the helper as `nobody`, from a copy nobody can execute.
fn helper_as_nobody(dir: &Path, socket: &Path) -> (i32, String) {
    helper_as(dir, socket, 65534, 65534, ALIAS)
}

#[test]
fn peer_check_refuses_other_users_and_logs_uid_and_pid() {
    require!(Moto, Root);
    let tmp = tempfile::tempdir().unwrap();
    // Everyone may reach the socket file: only the peer check stands in the way.
    open_to_all(tmp.path());
    let (moto, imds) = (Moto::start(tmp.path()), Imds::start(tmp.path()));
    let a = open_to_all(&tmp.path().join("a"));
    let daemon = Daemon::builder(&a)
        .config(&alias_config("group = \"root\""))
        .env(&Daemon::aws_env(&moto, &imds))
        .start();
    std::fs::set_permissions(&daemon.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    wait_until("a token", Duration::from_secs(20), || daemon.helper("get", ALIAS).0 == 0);

    let (code, out) = helper_as_nobody(tmp.path(), &daemon.socket);
    assert_eq!(code, 1);
    assert_eq!(out, "ecr-credd: uid 65534 is not allowed to use the ecr-credd socket\n");
    wait_until("the refusal log line", Duration::from_secs(5), || {
        daemon.proc.output().contains("refused a peer")
    });
    let log = daemon.proc.output();
    let line = log.lines().find(|l| l.contains("refused a peer")).unwrap();
    let pid = line.split("pid=").nth(1).and_then(|p| p.split_whitespace().next()).unwrap_or_default();
    assert!(line.contains("uid=65534") && pid.parse::<u32>().is_ok(), "{line}");
    drop(daemon);

    // The same user, allowed by the config, gets the token through the mode
    // the daemon gives the socket itself (no chmod here): allow-lists open
    // the file to everyone and leave the gate to the peer check ...
    let b = open_to_all(&tmp.path().join("b"));
    let daemon = Daemon::builder(&b)
        .config(&alias_config("group = \"root\"\nallowed_uids = [65534]"))
        .env(&Daemon::aws_env(&moto, &imds))
        .start();
    let mode = std::fs::metadata(&daemon.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666, "allow-lists need a socket everyone can connect to");
    wait_until("a token", Duration::from_secs(20), || daemon.helper("get", ALIAS).0 == 0);
    let (code, out) = helper_as_nobody(tmp.path(), &daemon.socket);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(PASSWORD));
    // ... which refuses whoever is not on them.
    let (code, out) = helper_as(tmp.path(), &daemon.socket, 65533, 65533, ALIAS);
    assert_eq!(
        (code, out.as_str()),
        (1, "ecr-credd: uid 65533 is not allowed to use the ecr-credd socket\n")
    );

    // Refusals are throttled: a hundred make one warning, not a hundred.
    let before = daemon.proc.output().matches("refused a peer").count();
    for _ in 0..100 {
        assert_eq!(helper_as(tmp.path(), &daemon.socket, 65533, 65533, ALIAS).0, 1);
    }
    let refusals = daemon.proc.output().matches("refused a peer").count() - before;
    assert!(refusals <= 2, "{refusals} refusal warnings for 100 refusals");

    // A reload that removes the uid applies at once: it is refused.
    Daemon::write_config(&b, &alias_config("group = \"root\"\nallowed_uids = [65533]"));
    daemon.proc.signal("HUP");
    wait_until("the reload", Duration::from_secs(10), || daemon.proc.output().contains("config reloaded"));
    let (code, out) = helper_as_nobody(tmp.path(), &daemon.socket);
    assert_eq!(
        (code, out.as_str()),
        (1, "ecr-credd: uid 65534 is not allowed to use the ecr-credd socket\n")
    );
    let (code, out) = helper_as(tmp.path(), &daemon.socket, 65533, 65533, ALIAS);
    assert_eq!(code, 0, "the uid the reload added is served: {out}");
}

#[test]
fn nothing_is_written_to_disk_and_no_secret_leaks_into_errors() {
    require!(Moto);
    let tmp = tempfile::tempdir().unwrap();
    let (moto, imds) = (Moto::start(tmp.path()), Imds::start(tmp.path()));
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let daemon = Daemon::builder(&home)
        .config(&alias_config(""))
        .env(&Daemon::aws_env(&moto, &imds))
        .log("trace")
        .start();
    wait_until("a token", Duration::from_secs(20), || daemon.helper("get", ALIAS).0 == 0);
    assert_eq!(daemon.helper("get", ECR_HOST).0, 0);

    // Every open file descriptor: sockets, pipes and anonymous inodes only;
    // no file is open for writing.
    let pid = daemon.proc.pid();
    let mut files = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let Ok(target) = std::fs::read_link(fd.path()) else { continue };
        let target = target.display().to_string();
        if target.starts_with('/') && target != "/dev/null" {
            let info =
                std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy()))
                    .unwrap();
            let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap().trim();
            let flags = u32::from_str_radix(flags, 8).unwrap();
            files.push((target, flags & 0o3 != 0));
        }
    }
    let written: Vec<_> = files.iter().filter(|(_, w)| *w).collect();
    assert!(written.is_empty(), "files open for writing: {written:?}");
    // And nothing appeared beside the config and the socket.
    let mut made = Vec::new();
    let mut stack = vec![home.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                made.push(e.path().strip_prefix(&home).unwrap().display().to_string());
            }
        }
    }
    made.sort();
    assert_eq!(made, vec!["config.toml".to_owned(), "run/ecr-credd.sock".to_owned()]);

    // Errors and the helper's stderr carry no secret either.
    let (imds_secret, imds_token) = imds.secrets();
    let mut texts = vec![daemon.proc.output()];
    for host in [ALIAS, ECR_HOST, "quay.io", "bad host"] {
        let (_, out, err) = daemon.helper("get", host);
        if !out.contains("\"Secret\"") {
            texts.push(out);
        }
        texts.push(err);
    }
    let out = clean_command(daemon_bin(), &home)
        .args(["status", "--json", "--socket"])
        .arg(&daemon.socket)
        .output()
        .unwrap();
    texts.push(String::from_utf8_lossy(&out.stdout).into_owned());
    for text in &texts {
        for secret in
            [PASSWORD, imds_secret.as_str(), imds_token.as_str(), "FQoGZXIvYXdzE", "123456789012-auth-token"]
        {
            assert!(!text.contains(secret), "a secret leaked into:\n{text}");
        }
    }
}

#[test]
fn insecure_config_or_socket_directory_is_refused() {
    require!(Root);
    let tmp = tempfile::tempdir().unwrap();
    let config = Daemon::write_config(tmp.path(), &alias_config(""));
    // Writable by others, by the group, or owned by another user: each refused.
    let refused = |owner: u32, mode: u32| {
        std::os::unix::fs::chown(&config, Some(owner), None).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(mode)).unwrap();
        let out =
            clean_command(daemon_bin(), tmp.path()).args(["run", "--config"]).arg(&config).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let said = format!(
            "{}: the config may be changed by others (owner uid {owner}, mode {mode:04o})",
            config.display()
        );
        assert!(err.contains(&said), "{err}");
    };
    refused(0, 0o666);
    refused(0, 0o664);
    refused(1000, 0o644);

    std::os::unix::fs::chown(&config, Some(0), None).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out =
        clean_command(daemon_bin(), tmp.path()).args(["run", "--config"]).arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the socket directory is writable by others (mode 0777)"), "{err}");

    // A socket directory owned by another user, who could rename our socket
    // away and bind theirs: refused, even at mode 0755.
    let theirs = tmp.path().join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let config_theirs = tmp.path().join("theirs.toml");
    std::fs::write(&config_theirs, format!("[server]\nsocket = \"{}/s.sock\"\n", theirs.display())).unwrap();
    let out = clean_command(daemon_bin(), tmp.path())
        .args(["run", "--config"])
        .arg(&config_theirs)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the socket directory is owned by uid 65534, not root or this daemon"), "{err}");

    // A named group that this host lacks (say `docker` on a containerd-only
    // node): the error names the group and how to fix it.
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
    // (write_config opens [server], so the key lands in that table.)
    let config = Daemon::write_config(tmp.path(), "group = \"no-such-group\"\n");
    let out =
        clean_command(daemon_bin(), tmp.path()).args(["run", "--config"]).arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[server] group \"no-such-group\" does not exist")
            && err.contains("groupadd --system no-such-group"),
        "{err}"
    );
}

fn timed_get(socket: &Path) -> Duration {
    let start = Instant::now();
    let r = client::request(socket, &Request::new(RequestBody::Get { host: ALIAS.into() })).unwrap();
    assert!(matches!(r.body, ResponseBody::Credentials { .. }));
    start.elapsed()
}

#[test]
fn hostile_input_gets_specific_errors_while_others_are_served() {
    require!(Moto);
    let Stack { dir: tmp, moto: _moto, imds: _imds, daemon } = Stack::serving(&alias_config(""), ALIAS);
    let socket = daemon.socket.clone();
    let mut normal: Vec<Duration> = (0..50).map(|_| timed_get(&socket)).collect();
    normal.sort();

    // Slowloris: 300 connections that send half a request and stall.
    let stalled: Vec<UnixStream> = (0..300)
        .map(|_| {
            let mut s = UnixStream::connect(&socket).unwrap();
            s.write_all(b"{\"v\":1,\"op\":\"get\",\"ho").unwrap();
            s
        })
        .collect();

    // JSON nesting bombs inside the frame limit.
    for bomb in ["[".repeat(15_000), format!("{{\"v\":1,\"op\":\"get\",\"host\":{}}}", "[".repeat(10_000))] {
        let got = raw_exchange(&socket, format!("{bomb}\n").as_bytes());
        // serde_json stops at its recursion limit (or at the first wrong type).
        assert!(
            got.contains("bad_request") && got.contains("malformed message"),
            "{}",
            &got[..got.len().min(300)]
        );
    }
    // NUL bytes, invalid UTF-8, userinfo, a 5,000-character host.
    let cases: &[(&[u8], &str)] = &[
        (b"{\"v\":1,\"op\":\"get\",\"host\":\"a\\u0000b\"}\n", "invalid registry host"),
        (b"\x00\x00\x00\n", "malformed message"),
        (b"{\"v\":1,\"op\":\"get\",\"host\":\"\xc3\x28\"}\n", "malformed message"),
    ];
    for (bytes, want) in cases {
        let got = raw_exchange(&socket, bytes);
        assert!(got.contains(want), "{got}");
    }
    let long = format!("{{\"v\":1,\"op\":\"get\",\"host\":\"{}\"}}\n", "a".repeat(5000));
    assert!(raw_exchange(&socket, long.as_bytes()).contains("5000 characters long"));
    let (code, out, _) = daemon.helper("get", &format!("https://user:pass@{ALIAS}/v2/"));
    assert_eq!(code, 0, "userinfo is dropped, the host still matches: {out}");
    let (code, out, _) = daemon.helper("get", "a\0b");
    assert_eq!((code, out.as_str()), (1, "ecr-credd: invalid registry host \"a\\0b\": only letters, digits, '.', '-', ':' and brackets are allowed\n"));

    // 10 MB on the helper's stdin: refused after 64 KiB, without reading it all.
    let mut child = clean_command(helper_bin(), tmp.path())
        .arg("get")
        .env("ECR_CREDD_SOCKET", &socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..10 {
            if stdin.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(1));
    assert!(out.contains("larger than 65536 bytes"), "{out}");
    writer.join().unwrap();

    // With all of that going on, other clients keep their normal latency.
    let mut during: Vec<Duration> = (0..50).map(|_| timed_get(&socket)).collect();
    during.sort();
    let (p50_before, p50_during) = (normal[25], during[25]);
    eprintln!("get latency p50 before {p50_before:?}, during {p50_during:?}, worst during {:?}", during[49]);
    // Stalled clients would cost 5 s each if they held up a worker; on a busy
    // CI machine a get may still stall briefly, so the bound is loose.
    assert!(during[49] < Duration::from_secs(1), "a get took {:?} under attack", during[49]);
    drop(stalled);
    assert!(daemon.helper("get", ALIAS).0 == 0);
}

/// Whether `dir` holds a core file (`core` or `core.PID`, as core_pattern names them).
fn has_core(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().flatten().any(|e| e.file_name().to_string_lossy().starts_with("core"))
}

#[test]
fn an_aborted_daemon_leaves_no_core_file_with_its_tokens() {
    require!(Moto);
    let tmp = tempfile::tempdir().unwrap();
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    // Control: here a dumpable process that aborts with cores allowed leaves one.
    let control = tmp.path().join("control");
    std::fs::create_dir_all(&control).unwrap();
    let _ = clean_command("sh", &control)
        .args(["-c", "ulimit -c unlimited && kill -ABRT $$"])
        .current_dir(&control)
        .status();
    assert!(
        has_core(&control),
        "this machine writes no core file to the working directory (core_pattern {pattern:?}), so the check below would prove nothing"
    );

    // The daemon, holding a token and instance credentials, aborted the same way.
    let (moto, imds) = (Moto::start(tmp.path()), Imds::start(tmp.path()));
    let dir = tmp.path().join("daemon");
    std::fs::create_dir_all(&dir).unwrap();
    let mut daemon = Daemon::builder(&dir)
        .config(&alias_config(""))
        .env(&Daemon::aws_env(&moto, &imds))
        .shell_prefix("ulimit -c unlimited &&")
        .start();
    wait_until("a token", Duration::from_secs(20), || daemon.helper("get", ALIAS).0 == 0);
    daemon.proc.signal("ABRT");
    wait_until("the daemon to die", Duration::from_secs(10), || daemon.proc.exited().is_some());
    assert!(
        !has_core(&dir),
        "the daemon dumped core: {:?}",
        std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name()).collect::<Vec<_>>()
    );
}

#[test]
fn a_flood_of_health_connections_from_another_user_leaves_the_socket_served() {
    require!(Moto, Root);
    let tmp = tempfile::tempdir().unwrap();
    let (moto, imds) = (Moto::start(tmp.path()), Imds::start(tmp.path()));
    let health = free_port();
    let config = alias_config(&format!("[health]\nlisten = \"127.0.0.1:{health}\""));
    // The default soft limit of 1024 fds, as a service gets without LimitNOFILE.
    let daemon = Daemon::builder(tmp.path())
        .config(&config)
        .env(&Daemon::aws_env(&moto, &imds))
        .shell_prefix("ulimit -n 1024 &&")
        .start();
    wait_until("a token", Duration::from_secs(20), || daemon.helper("get", ALIAS).0 == 0);
    let mut normal: Vec<Duration> = (0..100).map(|_| timed_get(&daemon.socket)).collect();
    normal.sort();

    // 3,000 half-open requests to the health port from nobody, held 8 s.
    let script = format!(
        "ulimit -n 4096 && exec setpriv --reuid=65534 --regid=65534 --clear-groups {python} {ROOT}/testbed/flood.py health {health} 3000 8",
        python = python()
    );
    let mut cmd = clean_command("sh", tmp.path());
    cmd.args(["-c", &script]);
    let flood = Proc::spawn("flood", &mut cmd);
    wait_until("the flood", Duration::from_secs(15), || flood.output().contains("flooding"));
    let fds = std::fs::read_dir(format!("/proc/{}/fd", daemon.proc.pid())).unwrap().count();
    let mut during: Vec<Duration> = (0..200).map(|_| timed_get(&daemon.socket)).collect();
    during.sort();
    let (p99_normal, p99_during) = (normal[98], during[197]);
    eprintln!(
        "{}; daemon fds {fds}; socket get p99 {p99_normal:?} before, {p99_during:?} during",
        flood.output().trim()
    );
    assert!(fds < 200, "the flood took {fds} of the daemon's descriptors");
    // A probe (the DaemonSet's have a 1 s timeout) is answered at once all the same.
    for _ in 0..10 {
        let start = Instant::now();
        assert_eq!(http(health, "GET", "/healthz", "").0, 200);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "a probe took {:?} during the flood",
            start.elapsed()
        );
    }
    assert!(!flood.output().contains("done"), "the flood ended before the probes");
    assert!(
        p99_during < Duration::from_millis(100).max(p99_normal * 20),
        "p99 {p99_during:?} during the flood"
    );
    wait_until("the flood to end", Duration::from_secs(20), || flood.output().contains("done"));
    wait_until("the health endpoint back", Duration::from_secs(10), || {
        http(health, "GET", "/healthz", "").0 == 200
    });
    let warnings = daemon.proc.output().matches("accept failed").count();
    assert!(warnings <= 3, "{warnings} accept warnings");
}
