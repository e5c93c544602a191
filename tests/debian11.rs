//! The x86_64 release on an older distribution: a Debian 11 root (glibc
//! 2.31, no systemd running, no `docker` group), built once with debootstrap
//! and cached under target/. The .deb installs with dpkg, its scripts make
//! the `ecr-credd` group, and the installed daemon fetches a real token from
//! moto on the host's loopback, reaching moto through /etc/hosts and the IMDS
//! double through DNS, which the static binary must resolve by itself.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use testbed::*;

/// An address of our own on loopback for the DNS double (port 53, as resolv.conf has no port).
const DNS_ADDRESS: &str = "127.0.0.153";

/// /proc mounted in the root for as long as it lives.
struct ProcMount(PathBuf);

impl ProcMount {
    fn new(root: &Path) -> ProcMount {
        let target = root.join("proc");
        if !target.join("self").exists() {
            let ok = Command::new("mount").args(["-t", "proc", "proc"]).arg(&target).status().unwrap();
            assert!(ok.success(), "mount proc in {}", root.display());
        }
        ProcMount(target)
    }
}

impl Drop for ProcMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// `chroot ROOT` with a plain environment plus `env`.
fn chroot(root: &Path, userspec: Option<&str>, args: &[&str], env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new("chroot");
    if let Some(spec) = userspec {
        cmd.arg(format!("--userspec={spec}"));
    }
    cmd.arg(root).args(args).env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").env("LANG", "C");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what}: {}", output_text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the installed helper's `get ALIAS` in the root as `userspec`.
fn helper_get(root: &Path, userspec: Option<&str>) -> Output {
    output_with_stdin(
        &mut chroot(root, userspec, &["/usr/bin/docker-credential-ecr-credd", "get"], &[]),
        ALIAS,
    )
}

fn gid_of(root: &Path, group: &str) -> Option<u32> {
    id_in(root, "etc/group", group)
}

fn uid_of(root: &Path, user: &str) -> Option<u32> {
    id_in(root, "etc/passwd", user)
}

/// The third field of `name`'s line in `file` (/etc/passwd or /etc/group).
fn id_in(root: &Path, file: &str, name: &str) -> Option<u32> {
    std::fs::read_to_string(root.join(file)).unwrap().lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&name)).then(|| f[2].parse().unwrap())
    })
}

#[test]
fn deb_installs_and_serves_in_a_debian_11_root_with_no_docker_group() {
    require!(Moto, Root, Dist, Debootstrap);
    // ca-certificates: the package depends on it (TLS to STS and ECR).
    let root = testbed::roots::debian_root("bullseye-ca", "bullseye", &["ca-certificates"]);
    let _proc = ProcMount::new(&root);
    let tmp = tempfile::tempdir().unwrap();
    let _ = chroot(&root, None, &["dpkg", "--purge", "ecr-credd"], &[]).output();
    let _ = std::fs::remove_dir_all(root.join("etc/systemd/system/ecr-credd.socket.d"));
    let _ = chroot(&root, None, &["groupdel", "ecr-credd"], &[]).output();
    let _ = chroot(&root, None, &["userdel", "ecr-credd-daemon"], &[]).output();
    let _ = chroot(&root, None, &["groupdel", "ecr-credd-daemon"], &[]).output();
    assert_eq!(gid_of(&root, "docker"), None, "the Debian 11 root must have no docker group");
    let libc = ok(&mut chroot(&root, None, &["ldd", "--version"], &[]), "ldd");
    eprintln!("root: {}", libc.lines().next().unwrap_or_default());

    // From the signed repository, as a fleet installs (no systemd running:
    // the scripts make the group and stop there).
    // The README's EC2 user data does it: the repository added with its
    // key, apt-get update && apt-get install, the config, and the login
    // user's docker routed to the helper.
    let repo = Repo::add(&root);
    let _ = chroot(&root, None, &["userdel", "-r", "admin"], &[]).output();
    ok(&mut chroot(&root, None, &["useradd", "-m", "admin"], &[]), "useradd admin");
    std::fs::copy(format!("{ROOT}/examples/cloud-init/user-data.sh"), root.join("tmp/user-data.sh")).unwrap();
    // The root's own mirror is unreachable from here: only our repository.
    let mirror = root.join("etc/apt/sources.list");
    std::fs::rename(&mirror, mirror.with_extension("list.off")).unwrap();
    let ran =
        chroot(&root, None, &["sh", "-x", "/tmp/user-data.sh"], &[("REPO_URL", "file:///tmp/repo".into())])
            .output()
            .unwrap();
    std::fs::rename(mirror.with_extension("list.off"), &mirror).unwrap();
    println!(
        "---- EC2 user data: apt-get update && apt-get install ecr-credd (signed repository) ----\n{}",
        output_text(&ran)
    );
    assert!(ran.status.success(), "user data: {}", output_text(&ran));
    let docker = root.join("home/admin/.docker/config.json");
    let routed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&docker).unwrap()).unwrap();
    assert_eq!(
        routed["credHelpers"]["111122223333.dkr.ecr.eu-west-1.amazonaws.com"], "ecr-credd",
        "{routed}"
    );
    let admin = uid_of(&root, "admin").unwrap();
    assert_eq!(std::fs::metadata(&docker).unwrap().uid(), admin, "the user's docker config is theirs");
    let groups = std::fs::read_to_string(root.join("etc/group")).unwrap();
    assert!(
        groups.lines().any(|l| l.starts_with("ecr-credd:") && l.ends_with("admin")),
        "admin joined ecr-credd"
    );
    let gid = gid_of(&root, "ecr-credd").expect("the package creates the ecr-credd group");
    // ... and the daemon's static user, for systemd without DynamicUser= (AL2's 219).
    let user = uid_of(&root, "ecr-credd-daemon").expect("the package creates the user ecr-credd-daemon");
    assert!(user < 1000, "a system user: uid {user}");
    for bin in SHIPPED_PROGRAMS {
        let v = ok(&mut chroot(&root, None, &[&format!("/usr/bin/{bin}"), "--version"], &[]), bin);
        assert!(v.contains(env!("CARGO_PKG_VERSION")), "{bin}: {v}");
    }

    // The packaged config plus one registry; the health port is ours.
    let config_path = root.join("etc/ecr-credd/config.toml");
    // (From the source: the user data above replaced the installed copy with its own.)
    let packaged = std::fs::read_to_string(format!("{ROOT}/packaging/config.toml")).unwrap();
    let health = free_port();
    std::fs::write(
        &config_path,
        format!(
            "{}\n{}",
            packaged.replace("127.0.0.1:9466", &format!("127.0.0.1:{health}")),
            registry_toml(ALIAS, Some(ROLE))
        ),
    )
    .unwrap();
    let checked = ok(
        &mut chroot(
            &root,
            None,
            &["/usr/bin/ecr-credd", "check-config", "--config", "/etc/ecr-credd/config.toml"],
            &[],
        ),
        "check-config",
    );
    assert!(checked.contains(": OK"), "{checked}");

    // Names: moto through /etc/hosts, the IMDS double through DNS.
    std::fs::write(root.join("etc/hosts"), "127.0.0.1 localhost moto.hosts.test\n").unwrap();
    std::fs::write(
        root.join("etc/resolv.conf"),
        format!("nameserver {DNS_ADDRESS}\noptions timeout:2 attempts:2\n"),
    )
    .unwrap();
    let mut dns_cmd = clean_command(python(), tmp.path());
    dns_cmd.arg(format!("{ROOT}/testbed/dns_double.py")).args([DNS_ADDRESS, "53", "imds.dns.test=127.0.0.1"]);
    let dns = Proc::spawn("dns double", &mut dns_cmd);
    wait_until("the DNS double", Duration::from_secs(10), || dns.output().contains("listening"));
    let (moto, imds) = (Moto::start(tmp.path()), Imds::start(tmp.path()));
    let env = [
        ("RUST_LOG", "info".to_string()),
        ("AWS_ENDPOINT_URL", format!("http://moto.hosts.test:{}", moto.port)),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", format!("http://imds.dns.test:{}", imds.port)),
    ];
    let mut daemon_cmd =
        chroot(&root, None, &["/usr/bin/ecr-credd", "run", "--config", "/etc/ecr-credd/config.toml"], &env);
    let daemon = Proc::spawn("ecr-credd (Debian 11)", &mut daemon_cmd);
    let socket = root.join("run/ecr-credd/ecr-credd.sock");
    wait_until("the daemon's socket", Duration::from_secs(20), || socket.exists());
    assert_eq!(std::fs::metadata(&socket).unwrap().gid(), gid, "the socket's group is ecr-credd");

    wait_until("a token in the Debian 11 root", Duration::from_secs(30), || {
        helper_get(&root, None).status.success()
    });
    let out = helper_get(&root, None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Secret"], PASSWORD);
    assert!(dns.output().contains("query imds.dns.test 1"), "the static binary asked DNS:\n{}", dns.output());
    assert_eq!(moto.counts(), (1, 1));

    // A member of ecr-credd gets the token; anyone else is told to join it.
    let member = helper_get(&root, Some(&format!("65534:{gid}")));
    assert!(member.status.success(), "member: {}", output_text(&member));
    let outsider = helper_get(&root, Some("65534:65534"));
    let text = String::from_utf8_lossy(&outsider.stdout);
    assert!(!outsider.status.success() && text.contains("members of group ecr-credd"), "outsider: {text}");
    eprintln!(
        "helper get as root: {}\noutsider: {text}",
        String::from_utf8_lossy(&out.stdout).replace(PASSWORD, "<password>")
    );
    eprintln!("daemon in the Debian 11 root:\n{}", daemon.output());
    // The static binary finds the root's CA certificates (for TLS to AWS).
    assert!(!daemon.output().contains("no native root CA certificates found"), "{}", daemon.output());
    drop(daemon);

    // Upgrading from 0.1, whose socket group was docker, keeps docker's users in.
    ok(&mut chroot(&root, None, &["groupadd", "--system", "docker"], &[]), "groupadd docker");
    let upgraded = ok(
        &mut chroot(&root, None, &["/var/lib/dpkg/info/ecr-credd.postinst", "configure", "0.1.0"], &[]),
        "postinst configure 0.1.0",
    );
    let dropin =
        std::fs::read_to_string(root.join("etc/systemd/system/ecr-credd.socket.d/group-from-0.1.conf"))
            .unwrap();
    assert!(dropin.contains("[Socket]\nSocketGroup=docker"), "{dropin}");
    assert!(upgraded.contains("kept the socket's group 'docker'"), "{upgraded}");
    ok(&mut chroot(&root, None, &["groupdel", "docker"], &[]), "groupdel docker");

    // The .rpm's %pre makes the group the same way where no sysusers runs.
    ok(&mut chroot(&root, None, &["groupdel", "ecr-credd"], &[]), "groupdel ecr-credd");
    let pre = std::fs::read_to_string(format!("{ROOT}/packaging/rpm/pre_install.sh")).unwrap();
    ok(&mut chroot(&root, None, &["sh", "-c", &pre, "pre_install", "1"], &[]), "rpm %pre");
    assert!(gid_of(&root, "ecr-credd").is_some(), "the rpm's %pre creates the group");
    ok(&mut chroot(&root, None, &["userdel", "ecr-credd-daemon"], &[]), "userdel");
    let _ = chroot(&root, None, &["groupdel", "ecr-credd-daemon"], &[]).output();
    ok(&mut chroot(&root, None, &["sh", "-c", &pre, "pre_install", "1"], &[]), "rpm %pre again");
    assert!(uid_of(&root, "ecr-credd-daemon").is_some(), "the rpm's %pre creates the user");

    // The .rpm's %post resets the syscall filter for systemd 219 only (it
    // cannot parse the @sets), running systemd or not; %postun removes it.
    let post = std::fs::read_to_string(format!("{ROOT}/packaging/rpm/post_install.sh")).unwrap();
    let postun = std::fs::read_to_string(format!("{ROOT}/packaging/rpm/post_uninstall.sh")).unwrap();
    let dropin = root.join("etc/systemd/system/ecr-credd.service.d/old-systemd.conf");
    std::fs::create_dir_all(root.join("tmp/shim")).unwrap();
    for (version, written) in [("247", false), ("219", true)] {
        let shim = root.join("tmp/shim/systemctl");
        std::fs::write(&shim, format!("#!/bin/sh\necho 'systemd {version} (shim)'\necho '+PAM'\n")).unwrap();
        std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let path = [("PATH", "/tmp/shim:/usr/sbin:/usr/bin:/sbin:/bin".to_owned())];
        ok(&mut chroot(&root, None, &["sh", "-c", &post, "post_install", "1"], &path), "rpm %post");
        assert_eq!(dropin.exists(), written, "systemd {version}");
    }
    let text = std::fs::read_to_string(&dropin).unwrap();
    assert!(text.contains("systemd 219") && text.ends_with("[Service]\nSystemCallFilter=\n"), "{text}");
    ok(&mut chroot(&root, None, &["sh", "-c", &postun, "post_uninstall", "0"], &[]), "rpm %postun");
    assert!(!dropin.exists(), "removed with the package");

    ok(&mut chroot(&root, None, &["dpkg", "--purge", "ecr-credd"], &[]), "dpkg --purge");
    assert!(!root.join("usr/bin/ecr-credd").exists());

    // apt refuses a repository that is not what was signed.
    repo.refuses_tampering();
    // A downloaded file installs with apt, which resolves its dependencies.
    std::fs::copy(dist_file("_amd64.deb"), root.join("tmp/ecr-credd.deb")).unwrap();
    let local = repo.apt(&["install", "-y", "/tmp/ecr-credd.deb"]);
    assert!(local.status.success(), "apt-get install ./deb: {}", output_text(&local));
    ok(&mut chroot(&root, None, &["dpkg", "--purge", "ecr-credd"], &[]), "dpkg --purge");
}

/// dist/repo copied to a root's /tmp/repo, its apt repository trusted through
/// `signed-by` with the release keyring, and no other source.
struct Repo {
    root: PathBuf,
}

impl Repo {
    const SOURCES: &'static str = "etc/apt/sources.list.d/ecr-credd.sources";

    fn add(root: &Path) -> Repo {
        let dest = root.join("tmp/repo");
        let _ = std::fs::remove_dir_all(&dest);
        let cp = Command::new("cp").arg("-a").arg(format!("{ROOT}/dist/repo")).arg(&dest).status().unwrap();
        assert!(cp.success(), "copying the apt repository");
        std::fs::create_dir_all(root.join("usr/share/keyrings")).unwrap();
        std::fs::copy(
            format!("{ROOT}/dist/repo/ecr-credd-archive-keyring.gpg"),
            root.join("usr/share/keyrings/ecr-credd-archive-keyring.gpg"),
        )
        .unwrap();
        let repo = Repo { root: root.to_path_buf() };
        repo.trust("/usr/share/keyrings/ecr-credd-archive-keyring.gpg");
        repo
    }

    /// The sources file, as `dist/repo/ecr-credd.sources` ships it but for file://.
    fn trust(&self, keyring: &str) {
        let shipped = std::fs::read_to_string(format!("{ROOT}/dist/repo/ecr-credd.sources")).unwrap();
        let sources = shipped
            .replace("https://REPLACE_WITH_YOUR_BUCKET/deb", "file:///tmp/repo/deb")
            .replace("/usr/share/keyrings/ecr-credd-archive-keyring.gpg", keyring);
        std::fs::write(self.root.join(Self::SOURCES), sources).unwrap();
    }

    /// `apt-get ARGS` with only this repository (the root's own mirror is unreachable).
    fn apt(&self, args: &[&str]) -> Output {
        let only = ["-o", "Dir::Etc::SourceList=/dev/null", "-o", "APT::Get::List-Cleanup=0"];
        let mut all = vec!["apt-get"];
        all.extend_from_slice(&only);
        all.extend_from_slice(args);
        chroot(&self.root, None, &all, &[("DEBIAN_FRONTEND", "noninteractive".into())]).output().unwrap()
    }

    fn forget(&self) {
        for dir in ["var/lib/apt/lists", "var/cache/apt/archives"] {
            for e in std::fs::read_dir(self.root.join(dir)).unwrap().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.contains("_tmp_repo_") || name.starts_with("ecr-credd") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    fn refuses_tampering(&self) {
        let packages = self.root.join("tmp/repo/deb/dists/stable/main/binary-amd64/Packages");
        let original = std::fs::read(&packages).unwrap();
        let gz = packages.with_extension("gz");
        let original_gz = std::fs::read(&gz).unwrap();
        // A Packages index that is not the one the Release signed.
        self.forget();
        std::fs::write(&packages, String::from_utf8_lossy(&original).replace("Priority:", "Priority: "))
            .unwrap();
        let _ = std::fs::remove_file(&gz);
        let out = self.apt(&["update"]);
        println!("---- apt-get update, tampered Packages ----\n{}", output_text(&out));
        let said = output_text(&out);
        assert!(
            !out.status.success()
                || said.contains("Hash Sum mismatch")
                || said.contains("File has unexpected size"),
            "{said}"
        );
        let install = self.apt(&["install", "-y", "ecr-credd"]);
        assert!(!install.status.success(), "installed from a tampered index: {}", output_text(&install));
        std::fs::write(&packages, &original).unwrap();
        std::fs::write(&gz, &original_gz).unwrap();

        // A .deb that is not the one the index lists.
        self.forget();
        let pool = self.root.join("tmp/repo/deb/pool/main");
        let deb = std::fs::read_dir(&pool)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("_amd64.deb"))
            .unwrap();
        let good = std::fs::read(&deb).unwrap();
        let mut bad = good.clone();
        let at = bad.len() - 200;
        bad[at] ^= 0x55;
        std::fs::write(&deb, &bad).unwrap();
        let updated = self.apt(&["update"]);
        assert!(updated.status.success(), "{}", output_text(&updated));
        let out = self.apt(&["install", "-y", "ecr-credd"]);
        println!("---- apt-get install, tampered .deb ----\n{}", output_text(&out));
        assert!(
            !out.status.success() && output_text(&out).contains("Hash Sum mismatch"),
            "{}",
            output_text(&out)
        );
        std::fs::write(&deb, &good).unwrap();

        // Signed, but by a key the source does not trust.
        self.forget();
        self.trust("/usr/share/keyrings/debian-archive-keyring.gpg");
        let out = self.apt(&["update"]);
        let said = output_text(&out);
        println!("---- apt-get update, another key ----\n{said}");
        assert!(said.contains("NO_PUBKEY") || said.contains("not signed"), "{said}");
        let install = self.apt(&["install", "-y", "ecr-credd"]);
        assert!(
            !install.status.success(),
            "installed from an untrusted repository: {}",
            output_text(&install)
        );
        self.trust("/usr/share/keyrings/ecr-credd-archive-keyring.gpg");
        self.forget();
    }
}

#[test]
fn a_downloaded_deb_installs_with_apt_which_resolves_what_dpkg_i_cannot() {
    require!(Root, Dist, Debootstrap);
    // A minimal Debian 11 without ca-certificates, which the package needs.
    let root = testbed::roots::debian_root("bullseye-min", "bullseye", &[]);
    let _proc = ProcMount::new(&root);
    let apt = |args: &[&str]| {
        let mut all = vec!["apt-get"];
        all.extend_from_slice(args);
        chroot(&root, None, &all, &[("DEBIAN_FRONTEND", "noninteractive".into())]).output().unwrap()
    };
    let _ = apt(&["purge", "-y", "ecr-credd", "ca-certificates", "openssl"]);
    std::fs::copy(dist_file("_amd64.deb"), root.join("tmp/ecr-credd.deb")).unwrap();

    // dpkg -i: the dependency is missing, and the package is left unconfigured.
    let out = chroot(&root, None, &["dpkg", "-i", "/tmp/ecr-credd.deb"], &[]).output().unwrap();
    let said = output_text(&out);
    println!("---- dpkg -i on a minimal Debian 11 ----\n{said}");
    assert!(!out.status.success() && said.contains("depends on ca-certificates"), "{said}");
    let status = ok(
        &mut chroot(&root, None, &["dpkg-query", "-W", "-f", "${Status}", "ecr-credd"], &[]),
        "dpkg-query",
    );
    assert!(status.contains("unpacked") || status.contains("half-configured"), "{status}");
    let _ = chroot(&root, None, &["dpkg", "--purge", "ecr-credd"], &[]).output();

    // apt install ./file resolves it from the distribution and configures the package.
    let updated = apt(&["update"]);
    assert!(updated.status.success(), "apt-get update (Debian's mirror): {}", output_text(&updated));
    let out = apt(&["install", "-y", "/tmp/ecr-credd.deb"]);
    let said = output_text(&out);
    println!("---- apt install ./ecr-credd.deb on a minimal Debian 11 ----\n{said}");
    assert!(out.status.success() && said.contains("ca-certificates"), "{said}");
    let status = ok(
        &mut chroot(&root, None, &["dpkg-query", "-W", "-f", "${Status}", "ecr-credd"], &[]),
        "dpkg-query",
    );
    assert_eq!(status, "install ok installed");
    let _ = apt(&["purge", "-y", "ecr-credd", "ca-certificates", "openssl"]);
}
