//! Faults survived: throttling, 5xx and dropped connections from STS and
//! ECR (through a fault-injecting proxy in front of moto), IMDS outages, a
//! cold stampede, and credential rotation. Each case bounds the AWS calls.

use std::time::{Duration, Instant};

use testbed::fault_proxy::{Fault, FaultProxy};
use testbed::*;

#[test]
fn sts_throttling_at_start_backs_off_then_recovers() {
    require!(Moto);
    let tmp = tempfile::tempdir().unwrap();
    let (moto, imds) = (Moto::start(tmp.path()), Imds::start(tmp.path()));
    let proxy = FaultProxy::start(moto.port);
    proxy.set(Fault::Throttle);
    let daemon = Daemon::builder(tmp.path()).config(&alias_config("")).env(&proxy.aws_env(&imds)).start();
    let mut out = String::new();
    wait_until("the throttling error", Duration::from_secs(10), || {
        out = daemon.helper("get", ALIAS).1;
        out.contains("Throttling")
    });
    assert_eq!(
        out,
        format!("ecr-credd: 127.0.0.1:5000 ({ACCOUNT}, us-east-1): sts:AssumeRole on {ROLE} throttled: Throttling: Rate exceeded\n")
    );
    // Hammer the helper for 8 s; backoff, not the callers, decides the calls.
    let start = Instant::now();
    let mut gets = 0;
    while start.elapsed() < Duration::from_secs(8) {
        assert_eq!(daemon.helper("get", ALIAS).0, 1);
        gets += 1;
    }
    let calls = proxy.count("AssumeRole");
    eprintln!("STS throttled: {gets} gets over 8 s caused {calls} AssumeRole calls");
    // Throttling backs off from a 16 s step (the first retry 4 to 12 s
    // later), so a throttled fleet spreads out: at most three calls here.
    assert!((1..=3).contains(&calls), "{calls} AssumeRole calls: backoff must bound them");
    assert_eq!(proxy.count("GetAuthorizationToken"), 0, "no ECR call without credentials");
    let throttled = daemon.proc.output().matches("throttled: Throttling").count();
    assert!(throttled >= 1, "the log says throttled:\n{}", daemon.proc.output());

    proxy.set(Fault::None);
    let cleared = Instant::now();
    // STS's throttling keeps retries within a minute of each other.
    wait_until("recovery", Duration::from_secs(75), || daemon.helper("get", ALIAS).0 == 0);
    eprintln!("recovered {:?} after the fault cleared", cleared.elapsed());
}

#[test]
fn ecr_faults_during_refresh_keep_the_valid_token_served() {
    require!(Moto);
    let tmp = tempfile::tempdir().unwrap();
    // 24 s tokens with a 10 s margin: refresh due at ~12 s, usable until 14 s.
    let moto = Moto::start_with(tmp.path(), &[("ECR_TOKEN_TTL", "24")]);
    let imds = Imds::start(tmp.path());
    let proxy = FaultProxy::start(moto.port);
    let daemon = Daemon::builder(tmp.path())
        .config(&alias_config("[tokens]\nsafety_margin = 10\n"))
        .env(&proxy.aws_env(&imds))
        .start();
    wait_until("a token", Duration::from_secs(20), || daemon.helper("get", ALIAS).0 == 0);
    let got_token = Instant::now();
    let before = proxy.count("GetAuthorizationToken");

    // Throttling, then 503s, then dropped connections, while gets continue.
    let mut served = 0;
    for (fault, until) in [(Fault::Throttle, 11), (Fault::Unavailable, 12), (Fault::Drop, 13)] {
        proxy.set(fault);
        while got_token.elapsed() < Duration::from_secs(until) {
            let (code, out, _) = daemon.helper("get", ALIAS);
            assert_eq!(code, 0, "the still-valid token is served during {fault:?}: {out}");
            served += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Past the margin the token is no longer handed out; the error says why.
    proxy.set(Fault::Throttle);
    std::thread::sleep(
        Duration::from_secs(14).saturating_sub(got_token.elapsed()) + Duration::from_millis(500),
    );
    let (code, out, _) = daemon.helper("get", ALIAS);
    assert_eq!(code, 1);
    // The last fault seen: throttling, or the dropped connection before it.
    let ecr = "ecr:GetAuthorizationToken in us-east-1";
    assert!(
        out.contains(&format!("{ecr} throttled: ThrottlingException"))
            || out.contains(&format!("{ecr} failed: ")),
        "{out}"
    );
    let calls = proxy.count("GetAuthorizationToken") - before;
    eprintln!("ECR faulted for ~3 s past the refresh point: {served} gets served, {calls} GetAuthorizationToken calls");
    assert!(calls <= 6, "{calls} calls: no retry storm");

    proxy.set(Fault::None);
    // STS's throttling keeps retries within a minute of each other.
    wait_until("recovery", Duration::from_secs(75), || daemon.helper("get", ALIAS).0 == 0);
}

#[test]
fn imds_down_at_start_then_back_without_restart() {
    require!(Moto);
    let tmp = tempfile::tempdir().unwrap();
    let (moto, imds) = (Moto::start(tmp.path()), Imds::start(tmp.path()));
    imds.control("fail", "on");
    let daemon =
        Daemon::builder(tmp.path()).config(&alias_config("")).env(&Daemon::aws_env(&moto, &imds)).start();
    let mut out = String::new();
    wait_until("the IMDS error", Duration::from_secs(15), || {
        out = daemon.helper("get", ALIAS).1;
        out.contains("IMDS")
    });
    assert!(
        out.starts_with(
            "ecr-credd: 127.0.0.1:5000 (210987654321, us-east-1): instance credentials unavailable from IMDS"
        ),
        "{out}"
    );
    assert_eq!(moto.counts(), (0, 0));
    imds.control("fail", "off");
    wait_until("the token after IMDS returns", Duration::from_secs(40), || {
        daemon.helper("get", ALIAS).0 == 0
    });
    assert_eq!(moto.counts(), (1, 1));
}

#[test]
fn imds_down_after_start_keeps_serving() {
    require!(Moto);
    let Stack { dir: _tmp, moto: _moto, imds, daemon } = Stack::serving(&alias_config(""), ALIAS);
    imds.control("fail", "on");
    for _ in 0..100 {
        assert_eq!(daemon.helper("get", ALIAS).0, 0);
    }
    // An unlisted ECR host needs the (cached) instance credentials: still fine.
    assert_eq!(daemon.helper("get", ECR_HOST).0, 0);
}

#[test]
fn cold_stampede_of_1000_gets_makes_one_call_each() {
    require!(Moto);
    let tmp = tempfile::tempdir().unwrap();
    let (moto, imds) = (Moto::start(tmp.path()), Imds::start(tmp.path()));
    // Slow IMDS keeps the start-up fetch in flight while the stampede arrives.
    imds.control("delay", "0.3");
    let daemon =
        Daemon::builder(tmp.path()).config(&alias_config("")).env(&Daemon::aws_env(&moto, &imds)).start();
    let socket = daemon.socket.clone();
    let threads: Vec<_> = (0..1000)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let req = ecr_credd_client::wire::Request::new(ecr_credd_client::wire::RequestBody::Get {
                    host: ALIAS.into(),
                });
                matches!(
                    ecr_credd_client::client::request(&socket, &req).map(|r| r.body),
                    Ok(ecr_credd_client::wire::ResponseBody::Credentials { .. })
                )
            })
        })
        .collect();
    let ok = threads.into_iter().map(|t| t.join().unwrap()).filter(|ok| *ok).count();
    assert_eq!(ok, 1000, "every caller got the token");
    assert_eq!(moto.counts(), (1, 1), "one AssumeRole and one GetAuthorizationToken");
}

#[test]
fn registries_on_one_role_and_region_share_one_token_per_refresh() {
    require!(Moto);
    let tmp = tempfile::tempdir().unwrap();
    // 40 s tokens, refreshed at about half their life.
    let moto = Moto::start_with(tmp.path(), &[("ECR_TOKEN_TTL", "40")]);
    let imds = Imds::start(tmp.path());
    let hosts = ["127.0.0.1:5000", "127.0.0.1:5001", "127.0.0.1:5002"];
    let registries: String = hosts.iter().map(|h| registry_toml(h, Some(ROLE))).collect();
    let config = format!("[tokens]\nsafety_margin = 10\n{registries}");
    let daemon = Daemon::builder(tmp.path()).config(&config).env(&Daemon::aws_env(&moto, &imds)).start();
    for host in hosts {
        wait_until("a token", Duration::from_secs(20), || daemon.helper("get", host).0 == 0);
    }
    assert_eq!(moto.counts(), (1, 1), "three entries, one AssumeRole and one GetAuthorizationToken");
    // Two refresh rounds later: one call per round, not one per entry.
    std::thread::sleep(Duration::from_secs(45));
    for host in hosts {
        assert_eq!(daemon.helper("get", host).0, 0);
    }
    let (assume, gat) = moto.counts();
    eprintln!("3 registries on one role over ~50 s of 40 s tokens: AssumeRole {assume}, GetAuthorizationToken {gat}");
    assert!(gat <= 4, "{gat} GetAuthorizationToken calls for 3 entries in 3 rounds");
}

#[test]
fn registries_on_one_token_retry_a_throttled_fetch_as_one() {
    require!(Moto);
    let tmp = tempfile::tempdir().unwrap();
    let (moto, imds) = (Moto::start(tmp.path()), Imds::start(tmp.path()));
    let proxy = FaultProxy::start(moto.port);
    proxy.set_for("GetAuthorizationToken", Fault::Throttle);
    let hosts = ["127.0.0.1:5000", "127.0.0.1:5001", "127.0.0.1:5002"];
    let registries: String = hosts.iter().map(|h| registry_toml(h, Some(ROLE))).collect();
    let daemon = Daemon::builder(tmp.path()).config(&registries).env(&proxy.aws_env(&imds)).start();
    // A client keeps asking for the first host only, for 25 s.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(25) {
        assert_eq!(daemon.helper("get", hosts[0]).0, 1);
        std::thread::sleep(Duration::from_millis(500));
    }
    let times: Vec<Duration> =
        proxy.calls().iter().filter(|c| c.api == "GetAuthorizationToken").map(|c| c.at).collect();
    // Rounds are at least a throttled step's quarter (4 s) apart; each is one
    // call, however many entries it serves.
    let rounds = times.windows(2).filter(|w| w[1] - w[0] > Duration::from_secs(2)).count() + 1;
    eprintln!("3 registries, GetAuthorizationToken throttled for 25 s: {} calls at {times:?}", times.len());
    assert!(rounds >= 2, "{times:?}");
    assert_eq!(times.len(), rounds, "one call per round, not one per registry: {times:?}");
    assert_eq!(proxy.count("AssumeRole"), 1, "the role's credentials are kept across the rounds");
    // The quota back: every registry is served, by one more call.
    proxy.set_for("GetAuthorizationToken", Fault::None);
    for host in hosts {
        wait_until("a token", Duration::from_secs(30), || daemon.helper("get", host).0 == 0);
    }
    assert_eq!(proxy.count("GetAuthorizationToken") as usize, rounds + 1);
}

#[test]
fn rotated_credentials_and_passwords_are_picked_up_at_refresh() {
    require!(Moto, Registry);
    let tmp = tempfile::tempdir().unwrap();
    // Short tokens with a new password each time; short-lived instance credentials.
    let moto = Moto::start_with(tmp.path(), &[("ECR_TOKEN_TTL", "16"), ("ECR_ROTATE_PASSWORD", "1")]);
    let imds = Imds::start_with(tmp.path(), &[("IMDS_EXPIRY_SECONDS", "60")]);
    let registry = Registry::start(tmp.path(), &format!("{PASSWORD}-1"));
    let config = format!("[tokens]\nsafety_margin = 10\n{}", registry_toml(&registry.host(), None));
    let daemon = Daemon::builder(tmp.path()).config(&config).env(&Daemon::aws_env(&moto, &imds)).start();
    let secret = || daemon.secret(&registry.host());
    wait_until("the first token", Duration::from_secs(20), || secret().is_some());
    assert_eq!(secret().unwrap(), format!("{PASSWORD}-1"));
    let imds_calls = imds.calls();
    imds.control("rotate", "");
    // The registry now wants the next password; the daemon must refresh into it.
    registry.set_password(&format!("{PASSWORD}-2"));
    wait_until("the rotated password", Duration::from_secs(20), || {
        secret().is_some_and(|s| s.ends_with("-2"))
    });
    assert!(imds.calls() > imds_calls, "fresh instance credentials were fetched from IMDS");
    let (code, body) = basic_auth_get(registry.port, &format!("AWS:{}", secret().unwrap()));
    assert_eq!(code, 200, "the registry accepts the rotated token: {body}");
}

/// GET /v2/ with basic auth, as a client would after `get`.
fn basic_auth_get(port: u16, userpass: &str) -> (u16, String) {
    use base64::Engine;
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(userpass);
    write!(s, "GET /v2/ HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    (raw.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0), raw)
}

fn denied_message(allow: &str) -> (String, u64, u64) {
    let tmp = tempfile::tempdir().unwrap();
    let (moto, imds, role) = iam_bed(tmp.path(), allow);
    let config = format!(
        "[[registry]]\nhost = \"{ALIAS}\"\nregistry_id = \"123456789012\"\nregion = \"us-east-1\"\nrole_arn = \"{role}\"\n"
    );
    let proxy = FaultProxy::start(moto.port);
    let daemon = Daemon::builder(tmp.path()).config(&config).env(&proxy.aws_env(&imds)).start();
    let mut out = String::new();
    wait_until("a denial", Duration::from_secs(15), || {
        out = daemon.helper("get", ALIAS).1;
        out.contains("denied")
    });
    // Keep asking for 5 s: denials back off like any failure.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        assert_eq!(daemon.helper("get", ALIAS).0, 1);
    }
    (out, proxy.count("AssumeRole"), proxy.count("GetAuthorizationToken"))
}

#[test]
fn permission_denials_name_the_step_and_back_off() {
    require!(Moto);
    // The instance role may not assume the registry's role (setup step 4).
    let (out, assume, gat) = denied_message("ecr:GetAuthorizationToken");
    eprintln!("no sts:AssumeRole: {out:?} after {assume} AssumeRole calls");
    assert!(out.starts_with("ecr-credd: 127.0.0.1:5000 (123456789012, us-east-1): sts:AssumeRole on arn:aws:iam::123456789012:role/ecr-pull denied"), "{out}");
    assert!((1..=6).contains(&assume), "{assume} AssumeRole calls in ~6 s");
    assert_eq!(gat, 0);

    // The role may be assumed but lacks ecr:GetAuthorizationToken (setup step 1).
    let (out, assume, gat) = denied_message("sts:AssumeRole");
    eprintln!("no ecr:GetAuthorizationToken: {out:?} after {gat} calls");
    assert!(out.starts_with("ecr-credd: 127.0.0.1:5000 (123456789012, us-east-1): ecr:GetAuthorizationToken in us-east-1 denied"), "{out}");
    assert!((1..=6).contains(&gat), "{gat} GetAuthorizationToken calls in ~6 s");
    assert_eq!(assume, 1, "the assumed role is cached; only ECR is retried");
}

#[test]
fn slow_aws_past_the_timeout_is_reported_then_recovers() {
    require!(Moto);
    let (tmp, tmp2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (moto, imds) = (Moto::start(tmp.path()), Imds::start(tmp.path()));
    // Every call answers after 12 s, past the SDK's 10 s attempt timeout.
    let proxy = FaultProxy::start(moto.port);
    proxy.set(Fault::Delay(Duration::from_secs(12)));
    let daemon = Daemon::builder(tmp.path()).config(&alias_config("")).env(&proxy.aws_env(&imds)).start();
    // AssumeRole answers after 5 s, GetAuthorizationToken after 9 s: the
    // fetch is still in flight when a get's 12 s are up.
    let slow = FaultProxy::start(moto.port);
    slow.set_for("AssumeRole", Fault::Delay(Duration::from_secs(5)));
    slow.set_for("GetAuthorizationToken", Fault::Delay(Duration::from_secs(9)));
    let daemon2 = Daemon::builder(tmp2.path()).config(&alias_config("")).env(&slow.aws_env(&imds)).start();
    let (timed_out, in_flight) = std::thread::scope(|s| {
        let timed = || {
            let start = Instant::now();
            let (code, out, _) = daemon.helper("get", ALIAS);
            (code, out, start.elapsed())
        };
        let first = s.spawn(timed);
        let start = Instant::now();
        let (code, out, _) = daemon2.helper("get", ALIAS);
        (first.join().unwrap(), (code, out, start.elapsed()))
    });
    // Each get waits a bounded time (12 s), in time for the helper (15 s)...
    for (code, out, took) in [&timed_out, &in_flight] {
        assert_eq!(*code, 1, "{out}");
        assert!(*took < Duration::from_secs(14), "{took:?}: {out}");
    }
    // ... then tells the call's own timeout,
    assert!(
        timed_out.1.contains(&format!("sts:AssumeRole on {ROLE} failed: timed out waiting for AWS")),
        "{timed_out:?}"
    );
    // or the call it is still waiting on, with that call's own deadline.
    let out = &in_flight.1;
    assert!(out.contains("no token yet; the fetch from AWS did not finish within 12s"), "{out}");
    assert!(
        out.contains("still waiting on ecr:GetAuthorizationToken in us-east-1 (gives up after 10s)"),
        "{out}"
    );
    // The slow fetch ends (at ~14 s) and serves.
    wait_until("the slow token", Duration::from_secs(20), || daemon2.helper("get", ALIAS).0 == 0);
    proxy.set(Fault::None);
    // A timeout backs off as an overload: retries within 12 s while a client waits.
    wait_until("recovery", Duration::from_secs(75), || daemon.helper("get", ALIAS).0 == 0);
    assert!(proxy.count("AssumeRole") <= 4, "{} AssumeRole calls", proxy.count("AssumeRole"));
}

#[test]
fn sts_unreachable_does_not_hold_up_instance_credential_registries() {
    require!(Moto);
    let tmp = tempfile::tempdir().unwrap();
    let (moto, imds) = (Moto::start(tmp.path()), Imds::start(tmp.path()));
    // STS is a black hole (a VPC with an ECR endpoint and no STS route): it
    // accepts connections and never answers. The test process ends it.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sts = format!("http://{}", hole.local_addr().unwrap());
    std::thread::spawn(move || {
        let held: Vec<_> = hole.incoming().take(64).flatten().collect();
        drop(held);
    });
    let config = registry_toml(ALIAS, None);
    let mut env = Daemon::aws_env(&moto, &imds);
    env.push(("AWS_ENDPOINT_URL_STS", sts));
    let daemon = Daemon::builder(tmp.path()).config(&config).env(&env).start();
    let start = Instant::now();
    let (code, out, _) = daemon.helper("get", ALIAS);
    let took = start.elapsed();
    assert_eq!(code, 0, "an instance-credential registry waits on STS: {out}");
    assert!(took < Duration::from_secs(3), "the first get took {took:?}");
    let (code, _, _) = daemon.helper("get", ECR_HOST);
    assert_eq!(code, 0, "an unlisted ECR host (instance credentials) too");
}
