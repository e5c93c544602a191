//! Every fleet: the release's binaries are static on x86_64 and aarch64, its
//! packages need no particular libc, and the artifacts run where the build
//! host's glibc is absent: in a Debian 11 root (glibc 2.31, no `docker`
//! group, names from /etc/hosts and from DNS) and, for aarch64, under qemu.
//! `make test` builds `dist/` first (`make release`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use testbed::*;

/// Unpacks a .deb or .rpm into `dir`.
fn unpack(package: &Path, dir: &Path) {
    let p = package.to_str().unwrap();
    if p.ends_with(".deb") {
        run_ok("dpkg-deb", &["-x", p, dir.to_str().unwrap()]);
    } else {
        let script = format!("rpm2cpio '{p}' | cpio -idm --quiet");
        let out = Command::new("sh").args(["-c", &script]).current_dir(dir).output().unwrap();
        assert!(out.status.success(), "{script}: {}", output_text(&out));
    }
}

/// `None` for a static binary, else the highest GLIBC_ symbol version it needs.
fn glibc_needs(binary: &Path) -> Option<String> {
    let b = binary.to_str().unwrap();
    let program_headers = run_ok("readelf", &["-lW", b]);
    let dynamic = run_ok("readelf", &["-dW", b]);
    if !program_headers.contains("INTERP") && !dynamic.contains("(NEEDED)") {
        return None;
    }
    let versions = run_ok("readelf", &["-VW", b]);
    let mut all: Vec<(u32, u32)> = versions
        .split("GLIBC_2.")
        .skip(1)
        .filter_map(|rest| {
            let v: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            let mut parts = v.split('.').map(|n| n.parse().unwrap_or(0));
            Some((parts.next()?, parts.next().unwrap_or(0)))
        })
        .collect();
    all.sort();
    Some(
        all.last().map_or("no versioned symbols".into(), |(minor, patch)| format!("GLIBC_2.{minor}.{patch}")),
    )
}

#[test]
fn every_shipped_binary_is_static_and_no_package_needs_a_new_libc() {
    require!(Dist, Binutils, PackageTools);
    for (package, arch) in [
        (dist_file("_amd64.deb"), "X86-64"),
        (dist_file("_arm64.deb"), "AArch64"),
        (dist_file(".x86_64.rpm"), "X86-64"),
        (dist_file(".aarch64.rpm"), "AArch64"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        unpack(&package, tmp.path());
        for name in SHIPPED_PROGRAMS {
            let bin = tmp.path().join("usr/bin").join(name);
            let header = run_ok("readelf", &["-hW", bin.to_str().unwrap()]);
            assert!(header.contains(arch), "{} in {}: not {arch}:\n{header}", name, package.display());
            let needs = glibc_needs(&bin);
            eprintln!(
                "{}: {name}: {} bytes, {}",
                package.file_name().unwrap().to_string_lossy(),
                std::fs::metadata(&bin).unwrap().len(),
                needs.as_deref().unwrap_or("static")
            );
            assert_eq!(needs, None, "{name} in {} is not static", package.display());
        }
        let p = package.to_str().unwrap();
        let needs = if p.ends_with(".deb") {
            run_ok("dpkg-deb", &["-f", p, "Depends"])
        } else {
            run_ok("rpm", &["-qpR", p])
        };
        eprintln!("{}: depends: {:?}", package.file_name().unwrap().to_string_lossy(), needs.trim());
        // Static binaries need no libc of any version; the scripts need groupadd,
        // TLS needs the CA certificates.
        assert!(needs.contains("ca-certificates"), "{p} must depend on ca-certificates: {needs}");
        assert!(!needs.contains("libc") && !needs.contains("GLIBC"), "{p} needs a libc: {needs}");
        // Amazon Linux 2's rpm (4.11) reads gzip and xz payloads, not zstd.
        assert!(!needs.contains("PayloadIsZstd"), "{p} needs an rpm newer than AL2's: {needs}");
    }
    let sums = std::fs::read_to_string(Path::new(ROOT).join("dist/SHA256SUMS")).unwrap();
    for suffix in [
        "_amd64.deb",
        "_arm64.deb",
        ".x86_64.rpm",
        ".aarch64.rpm",
        "-x86_64-linux.tar.gz",
        "-aarch64-linux.tar.gz",
        ".oci.tar",
    ] {
        let name = dist_file(suffix).file_name().unwrap().to_string_lossy().into_owned();
        assert!(sums.lines().any(|l| l.ends_with(&format!("  {name}"))), "SHA256SUMS lacks {name}");
    }
    let check = Command::new("sha256sum")
        .args(["--check", "--quiet", "SHA256SUMS"])
        .current_dir(Path::new(ROOT).join("dist"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", output_text(&check));
}

/// The aarch64 daemon and helper, static, under qemu-aarch64-static: a real
/// token from moto via the IMDS double, both reached by name.
#[test]
fn aarch64_daemon_and_helper_serve_a_token_under_qemu() {
    require!(Moto, Dist, Qemu, PackageTools);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pkg");
    std::fs::create_dir_all(&root).unwrap();
    unpack(&dist_file("_arm64.deb"), &root);
    let (moto, imds) = (Moto::start(tmp.path()), Imds::start(tmp.path()));
    let config = Daemon::write_config(tmp.path(), &registry_toml(ALIAS, Some(ROLE)));
    let socket = tmp.path().join("run/ecr-credd.sock");
    let mut cmd = clean_command("qemu-aarch64-static", tmp.path());
    cmd.arg(root.join("usr/bin/ecr-credd"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .env("AWS_ENDPOINT_URL", format!("http://localhost:{}", moto.port))
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", format!("http://localhost:{}", imds.port));
    let daemon = Proc::spawn("ecr-credd (aarch64)", &mut cmd);
    wait_until("the aarch64 daemon's socket", Duration::from_secs(60), || socket.exists());
    let helper = root.join("usr/bin/docker-credential-ecr-credd");
    let helper = helper.to_str().unwrap();
    let get = || {
        let (code, out, _) = run_client("qemu-aarch64-static", &[helper, "get"], &socket, ALIAS);
        (code == 0, out)
    };
    wait_until("a token from the aarch64 daemon", Duration::from_secs(60), || get().0);
    let (_, out) = get();
    eprintln!("aarch64 helper under qemu: {out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Secret"], PASSWORD);
    assert_eq!(v["Username"], "AWS");
    assert_eq!(moto.counts(), (1, 1), "one AssumeRole and one GetAuthorizationToken");
    let log = daemon.output();
    eprintln!("aarch64 daemon log:\n{log}");
    assert!(log.contains("ecr-credd started"), "{log}");
}

#[test]
fn release_names_each_missing_tool_and_its_package() {
    require!(ReleaseToolchain);
    let out = Command::new(format!("{ROOT}/scripts/release.sh"))
        .env("RELEASE_RUSTC", "/nonexistent/rustc")
        .env("CROSS_CC", "no-such-aarch64-gcc")
        .env("DIST", "/nonexistent/dist")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("release: missing tools (make release-tools installs all of them):"), "{err}");
    assert!(err.contains("/nonexistent/rustc: apt-get install rustc-web"), "{err}");
    assert!(err.contains("no-such-aarch64-gcc: apt-get install gcc-aarch64-linux-gnu"), "{err}");
    assert!(!err.contains("cargo-web"), "only what is missing is listed: {err}");
}
