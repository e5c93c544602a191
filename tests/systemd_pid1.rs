//! The package under a real systemd: a Debian root with systemd as PID 1 in
//! a private dockerd's container (Debian 12, systemd 252, and Debian 11,
//! systemd 247, the oldest we claim), the .deb installed with dpkg while
//! systemd runs, moto and the IMDS double on the host's loopback. Checks what
//! an operator relies on: socket activation and who may connect, reload and
//! restart, readable journal lines, the unit's settings and its exposure.

use std::process::Output;
use std::time::{Duration, Instant};

use testbed::engine::Dockerd;
use testbed::roots::debian_root;
use testbed::stages::Stages;
use testbed::*;

/// Served with the instance's credentials.
const SERVED: &str = "127.0.0.1:5000";
/// Its role may not be assumed: the instance role lacks sts:AssumeRole.
const DENIED: &str = "127.0.0.1:5001";
/// Added by a reload.
const ADDED: &str = "127.0.0.1:5002";
const BOX: &str = "ecr-credd-systemd";

/// The container with systemd as PID 1.
struct Machine<'a> {
    docker: &'a Dockerd,
}

impl Machine<'_> {
    /// `sh -c SCRIPT` as root.
    fn sh(&self, script: &str) -> Output {
        self.docker.exec(BOX, None, &["sh", "-c", script], "")
    }

    /// `sh -c SCRIPT` as root, which must succeed; its stdout.
    fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(out.status.success(), "{script}: {}", output_text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn write(&self, path: &str, text: &str) {
        let script = format!("mkdir -p \"$(dirname {path})\" && cat > {path}");
        let out = self.docker.exec(BOX, None, &["sh", "-c", &script], text);
        assert!(out.status.success(), "write {path}: {}", output_text(&out));
    }

    /// The helper's `get HOST` as `user` (root when `None`).
    fn get(&self, user: Option<&str>, host: &str) -> Output {
        self.docker.exec(BOX, user, &["docker-credential-ecr-credd", "get"], host)
    }

    fn journal(&self) -> String {
        self.ok("journalctl -u ecr-credd --no-pager")
    }

    /// The uid the service's main process runs as.
    fn running_uid(&self) -> String {
        let pid = self.show("MainPID");
        self.ok(&format!("awk '/^Uid:/ {{ print $2 }}' /proc/{pid}/status")).trim().to_owned()
    }

    /// `n` gets in a row, with `action` run after the first 20: none may fail.
    fn gets_across(&self, suite: &str, what: &str, n: usize, action: &str) {
        let script = format!(
            "i=0; while [ $i -lt {n} ]; do i=$((i+1)); \
             if echo {SERVED} | docker-credential-ecr-credd get >/dev/null; then echo ok $i; else echo FAIL $i; fi; sleep 0.02; done"
        );
        let mut loop_cmd = self.docker.command();
        loop_cmd.args(["exec", BOX, "sh", "-c", &script]);
        let mut gets = Proc::spawn("gets", &mut loop_cmd);
        wait_until("the first gets", Duration::from_secs(30), || gets.output().matches("ok ").count() >= 20);
        self.ok(action);
        let at = gets.output().lines().count();
        wait_until("the gets", Duration::from_secs(240), || gets.exited().is_some());
        let out = gets.output();
        let (ok, failed) = (out.matches("ok ").count(), out.matches("FAIL").count());
        eprintln!("{suite}: gets across {what}: {ok} ok, {failed} failed; {what} done after {at}");
        assert_eq!((ok, failed), (n, 0), "{out}");
        assert!(at < n, "the {what} came after the gets");
    }

    /// `systemctl show ecr-credd -p NAME` → value.
    fn show(&self, name: &str) -> String {
        self.ok(&format!("systemctl show ecr-credd.service -p {name} --value")).trim().to_owned()
    }
}

fn config(health: u16, role: &str, extra: &str) -> String {
    format!(
        "[health]\nlisten = \"127.0.0.1:{health}\"\n\
         [[registry]]\nhost = \"{SERVED}\"\nregistry_id = \"123456789012\"\nregion = \"us-east-1\"\n\
         [[registry]]\nhost = \"{DENIED}\"\nregistry_id = \"123456789012\"\nregion = \"us-east-1\"\nrole_arn = \"{role}\"\n{extra}"
    )
}

fn secret(out: &Output) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", output_text(out)));
    v["Secret"].as_str().unwrap_or_default().to_owned()
}

/// What the stages share: the suite, the emulators' role and the health port.
struct Bed<'a> {
    suite: &'a str,
    m: Machine<'a>,
    role: String,
    health: u16,
}

/// Boots `suite` with systemd as PID 1, installs the .deb while it runs, then
/// runs each stage; a failing stage does not stop the ones after it.
fn under_systemd(suite: &str) {
    let root = debian_root(
        &format!("systemd-ca-{suite}"),
        suite,
        &["systemd", "systemd-sysv", "dbus", "ca-certificates"],
    );
    let tmp = tempfile::tempdir().unwrap();
    let (moto, imds, role) = iam_bed(tmp.path(), "ecr:GetAuthorizationToken");
    let docker = Dockerd::start(&tmp.path().join("engine"));
    let bed = Bed { suite, m: boot(&docker, &root, suite), role, health: free_port() };
    install(&bed, &moto, &imds);
    let mut stages = Stages::new(suite);
    stages.run("socket activation and who may connect", || activation_and_peers(&bed));
    stages.run("journal, reload and rejected reload", || reloads(&bed));
    stages.run("restart during 200 gets, then a quiet minute", || restart_and_settle(&bed));
    stages.run("upgrade during 500 gets, remove and reinstall", || upgrade_and_reinstall(&bed));
    if suite == "bullseye" {
        stages.run("the unit as systemd 219 applies it", || as_systemd_219_sees_it(&bed.m));
    } else {
        stages.run("watchdog restart with a hung source", || {
            the_watchdog_restarts_a_daemon_whose_source_hangs(&bed.m, bed.health)
        });
    }
    stages.finish();
}

/// The root imported into the engine and started with systemd as PID 1.
fn boot<'a>(docker: &'a Dockerd, root: &std::path::Path, suite: &str) -> Machine<'a> {
    let image = format!("ecr-credd-systemd:{suite}");
    docker.import(root, &image);
    docker.ok(&[
        "run",
        "-d",
        "--name",
        BOX,
        "--network",
        "host",
        "--cap-add",
        "SYS_ADMIN",
        "--security-opt",
        "seccomp=unconfined",
        "--tmpfs",
        "/run",
        "--tmpfs",
        "/run/lock",
        "-v",
        "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        &image,
        "/lib/systemd/systemd",
    ]);
    let m = Machine { docker };
    wait_until("systemd to finish booting", Duration::from_secs(60), || {
        let state = String::from_utf8_lossy(&m.sh("systemctl is-system-running").stdout).trim().to_owned();
        state == "running" || state == "degraded"
    });
    eprintln!("{suite}: {}", m.ok("systemctl --version | head -n 1").trim());
    // Minimal roots lack procps: a reload must not need /bin/kill.
    m.ok("test ! -e /bin/kill && test ! -e /usr/bin/kill");
    m
}

/// dpkg -i with systemd running: the group made, the socket enabled and
/// listening, the service not yet started.
fn install(bed: &Bed, moto: &Moto, imds: &Imds) {
    let m = &bed.m;
    let deb = dist_file("_amd64.deb");
    m.docker.ok(&["cp", deb.to_str().unwrap(), &format!("{BOX}:/tmp/ecr-credd.deb")]);
    eprintln!("{}", m.ok("dpkg -i /tmp/ecr-credd.deb 2>&1"));
    assert_eq!(m.ok("systemctl is-active ecr-credd.socket").trim(), "active");
    assert_eq!(m.ok("stat -c %G /run/ecr-credd/ecr-credd.sock").trim(), "ecr-credd");
    m.ok("useradd -m -G ecr-credd alice && useradd -m bob");
    m.write("/etc/ecr-credd/config.toml", &config(bed.health, &bed.role, ""));
    m.write(
        "/etc/systemd/system/ecr-credd.service.d/test-bed.conf",
        &format!(
            "[Service]\nEnvironment=AWS_ENDPOINT_URL={} AWS_EC2_METADATA_SERVICE_ENDPOINT={}\n",
            moto.endpoint(),
            imds.endpoint()
        ),
    );
    m.ok("systemctl daemon-reload");
    assert_eq!(
        String::from_utf8_lossy(&m.sh("systemctl is-active ecr-credd.service").stdout).trim(),
        "inactive"
    );
}

/// Socket activation on the first get; then a member of the group is served
/// and anyone else is told which group to join.
fn activation_and_peers(bed: &Bed) {
    let m = &bed.m;
    let activated = (0..300).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        m.get(None, SERVED).status.success()
    });
    assert!(
        activated,
        "no token via socket activation: {}\n{}\n{}",
        output_text(&m.get(None, SERVED)),
        m.journal(),
        String::from_utf8_lossy(&m.sh("systemctl status ecr-credd --no-pager").stdout)
    );
    assert_eq!(m.ok("systemctl is-active ecr-credd.service").trim(), "active");
    // DynamicUser= with the package's static user of that name runs as it.
    assert_eq!(m.running_uid(), m.ok("id -u ecr-credd-daemon").trim(), "runs as the static user");
    let token = secret(&m.get(None, SERVED));
    assert!(!token.is_empty());
    assert_eq!(secret(&m.get(Some("alice"), SERVED)), token, "alice is in ecr-credd");
    let bob = m.get(Some("bob"), SERVED);
    let said = String::from_utf8_lossy(&bob.stdout);
    assert!(!bob.status.success(), "bob got a token");
    assert!(
        said.contains("only root and members of group ecr-credd may use it")
            && said.contains("sudo usermod -aG ecr-credd USER")
            && !said.contains("systemctl start"),
        "{said}"
    );
}

/// The journal says which registry, step and role failed; a reload adds a
/// registry (ExecReload without /bin/kill) and refuses a broken config,
/// saying why, keeping the old.
fn reloads(bed: &Bed) {
    let (m, role) = (&bed.m, &bed.role);
    let denial = format!("token fetch failed for {DENIED}: sts:AssumeRole on {role} denied");
    wait_until("the denial in the journal", Duration::from_secs(20), || m.journal().contains(&denial));
    let added =
        format!("[[registry]]\nhost = \"{ADDED}\"\nregistry_id = \"123456789012\"\nregion = \"us-east-1\"\n");
    m.write("/etc/ecr-credd/config.toml", &config(bed.health, role, &added));
    m.ok("systemctl reload ecr-credd");
    wait_until("the added registry's token", Duration::from_secs(20), || m.get(None, ADDED).status.success());
    m.write("/etc/ecr-credd/config.toml", "[[registry]]\nhost = \n");
    m.ok("systemctl reload ecr-credd");
    let rejected = "SIGHUP: new config rejected; keeping the one in force: /etc/ecr-credd/config.toml:2:";
    wait_until("the rejection in the journal", Duration::from_secs(20), || m.journal().contains(rejected));
    assert!(m.get(None, ADDED).status.success(), "the config in force stays");
    assert_eq!(m.ok("systemctl is-active ecr-credd.service").trim(), "active");
    m.write("/etc/ecr-credd/config.toml", &config(bed.health, role, ""));
    let journal = m.journal();
    let lines =
        |needle: &str| journal.lines().filter(|l| l.contains(needle)).take(2).collect::<Vec<_>>().join("\n");
    eprintln!("{}: journalctl -u ecr-credd:\n{}\n{}", bed.suite, lines(&denial), lines(rejected));
}

/// A restart during 200 gets loses none; the unit's hardening score; after a
/// quiet minute the service is still up, never restarted (watchdog 30 s).
fn restart_and_settle(bed: &Bed) {
    let (m, suite) = (&bed.m, bed.suite);
    let before = m.show("MainPID");
    m.gets_across(suite, "restart", 200, "systemctl restart ecr-credd.service");
    assert_ne!(m.show("MainPID"), before, "the daemon was restarted");
    let quiet_from = Instant::now();
    let security =
        String::from_utf8_lossy(&m.sh("systemd-analyze security ecr-credd.service --no-pager").stdout)
            .into_owned();
    let score = exposure_score(&security);
    eprintln!("{suite}: systemd-analyze security ecr-credd.service: {score}");
    assert!(score <= 1.5, "exposure {score}:\n{security}");
    std::thread::sleep(Duration::from_secs(62).saturating_sub(quiet_from.elapsed()));
    for (name, want) in [
        ("Type", "notify"),
        ("WatchdogUSec", "30s"),
        ("DynamicUser", "yes"),
        ("NRestarts", "0"),
        ("ActiveState", "active"),
    ] {
        assert_eq!(m.show(name), want, "{name}");
    }
    assert!(m.get(None, SERVED).status.success());
    assert_eq!(http(bed.health, "GET", "/readyz", "").0, 503, "the denied registry keeps readiness down");
}

/// An upgrade to a higher version during 500 gets loses none: the service
/// restarts, the socket (and its path) stays. Removed, then installed
/// again: the socket is enabled again, as it was.
fn upgrade_and_reinstall(bed: &Bed) {
    let m = &bed.m;
    m.ok(
        "rm -rf /tmp/up && dpkg-deb -R /tmp/ecr-credd.deb /tmp/up && \
         sed -i 's/^Version: .*/&+up1/' /tmp/up/DEBIAN/control && dpkg-deb -b /tmp/up /tmp/ecr-credd-up.deb >/dev/null",
    );
    let before = m.show("MainPID");
    m.gets_across(bed.suite, "upgrade", 500, "dpkg -i --force-confold /tmp/ecr-credd-up.deb >/dev/null 2>&1");
    assert_ne!(m.show("MainPID"), before, "the upgrade restarted the daemon");
    m.ok("dpkg -r ecr-credd >/dev/null 2>&1");
    assert_ne!(m.ok("systemctl is-enabled ecr-credd.socket || true").trim(), "enabled");
    m.ok("dpkg -i --force-confold /tmp/ecr-credd.deb >/dev/null 2>&1");
    assert_eq!(m.ok("systemctl is-enabled ecr-credd.socket").trim(), "enabled");
    assert_eq!(m.ok("systemctl is-active ecr-credd.socket").trim(), "active");
    wait_until("served after the reinstall", Duration::from_secs(30), || {
        m.get(None, SERVED).status.success()
    });
}

/// A `credential_process` that never answers and no token held: after two
/// minutes the daemon stops pinging the watchdog, and systemd restarts it.
fn the_watchdog_restarts_a_daemon_whose_source_hangs(m: &Machine, health: u16) {
    m.write("/etc/ecr-credd/aws-config", "[profile x]\ncredential_process = sleep 100074\n");
    m.write(
        "/etc/systemd/system/ecr-credd.service.d/hung.conf",
        "[Service]\nEnvironment=AWS_CONFIG_FILE=/etc/ecr-credd/aws-config\n",
    );
    let config = format!(
        "[health]\nlisten = \"127.0.0.1:{health}\"\n[aws]\ncredentials = \"profile:x\"\n\
         [[registry]]\nhost = \"{SERVED}\"\nregistry_id = \"123456789012\"\nregion = \"us-east-1\"\n"
    );
    m.write("/etc/ecr-credd/config.toml", &config);
    m.ok("systemctl daemon-reload && systemctl restart ecr-credd.service");
    let before: u32 = m.show("NRestarts").parse().unwrap_or(0);
    let started = Instant::now();
    wait_until("a watchdog restart", Duration::from_secs(300), || {
        m.show("NRestarts").parse::<u32>().unwrap_or(0) > before
    });
    let journal = m.journal();
    eprintln!("bookworm: watchdog restart {:?} after the hung source's start", started.elapsed());
    assert!(journal.contains("withholding the watchdog ping"), "{journal}");
    assert!(journal.contains("has given no answer for"), "{journal}");
    m.ok("rm /etc/systemd/system/ecr-credd.service.d/hung.conf && systemctl daemon-reload");
}

/// The `[Service]` directives of our unit that systemd 219 (Amazon Linux 2)
/// knows, each with the release whose NEWS entry introduced it. Everything
/// else in the unit (DynamicUser= 232, ProtectKernelTunables= 232,
/// ProtectKernelModules= 232, ProtectControlGroups= 232, RemoveIPC= 232,
/// RestrictNamespaces= 233, LockPersonality= 235, KeyringMode= 235,
/// PrivateMounts= 239, ProtectHostname= 242, RestrictSUIDSGID= 242,
/// ProtectKernelLogs= 244, ProtectClock= 245, ProcSubset= 247,
/// AmbientCapabilities= 229, RestrictRealtime= 231,
/// MemoryDenyWriteExecute= 231) 219 ignores with a warning.
const SYSTEMD_219: &[(&str, &str)] = &[
    ("Type", "notify: before 200"),
    ("NotifyAccess", "before 200"),
    ("ExecStart", "before 200"),
    ("ExecReload", "before 200"),
    ("Restart", "before 200"),
    ("RestartSec", "before 200"),
    ("WatchdogSec", "before 200"),
    ("TimeoutStartSec", "before 200"),
    ("TimeoutStopSec", "before 200"),
    ("User", "before 200"),
    ("UMask", "before 200"),
    ("LimitCORE", "before 200"),
    ("LimitNOFILE", "before 200"),
    ("CapabilityBoundingSet", "before 200"),
    ("PrivateTmp", "before 200"),
    ("DevicePolicy", "before 200"),
    ("NoNewPrivileges", "187"),
    ("PrivateDevices", "209"),
    ("SystemCallErrorNumber", "209"),
    ("RestrictAddressFamilies", "211"),
    ("SystemCallArchitectures", "213"),
    ("ProtectHome", "214"),
    // 214 knows yes and full; strict is 232's, and 219 ignores the line.
    ("ProtectSystem", "214, without strict"),
    // 187, but the @sets are 231's: the rpm's %post resets it on 219.
    ("SystemCallFilter", "187, without @sets"),
];

/// The unit as systemd 219 would apply it: only the directives (and values)
/// it knows, run as the static user. It must still start and serve.
fn as_systemd_219_sees_it(m: &Machine) {
    let unit = std::fs::read_to_string(format!("{ROOT}/systemd/ecr-credd.service")).unwrap();
    let mut section = "";
    let kept: Vec<&str> = unit
        .lines()
        .filter(|l| {
            if l.starts_with('[') {
                section = l;
                return true;
            }
            let Some((key, value)) = l.split_once('=') else { return false };
            if section != "[Service]" {
                return !l.starts_with('#');
            }
            let known = SYSTEMD_219.iter().any(|(k, _)| *k == key);
            known && !(key == "ProtectSystem" && value == "strict") && key != "SystemCallFilter"
        })
        .collect();
    let text = kept.join("\n") + "\n";
    assert!(!text.contains("DynamicUser") && text.contains("User=ecr-credd-daemon"), "{text}");
    m.write("/etc/systemd/system/ecr-credd.service", &text);
    m.ok("systemctl daemon-reload && systemctl restart ecr-credd.service");
    wait_until("served under the systemd-219 unit", Duration::from_secs(30), || {
        m.get(None, SERVED).status.success()
    });
    assert_eq!(m.show("DynamicUser"), "no");
    assert_eq!(m.running_uid(), m.ok("id -u ecr-credd-daemon").trim(), "runs as the static user");
    eprintln!("bullseye: the unit as systemd 219 applies it starts and serves:\n{text}");
    m.ok("rm /etc/systemd/system/ecr-credd.service && systemctl daemon-reload && systemctl restart ecr-credd.service");
}

#[test]
fn debian_12_systemd_252() {
    require!(Moto, Docker, Root, Systemd, Dist, Debootstrap, PackageTools);
    under_systemd("bookworm");
}

#[test]
fn debian_11_systemd_247() {
    require!(Moto, Docker, Root, Systemd, Dist, Debootstrap, PackageTools);
    under_systemd("bullseye");
}
