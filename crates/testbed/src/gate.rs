//! What an end-to-end test needs, checked before it starts anything.
//!
//! Plain `cargo test` on a machine without the test bed runs the unit tests
//! and skips each end-to-end test with the reason. `make test` sets
//! `ECR_CREDD_TESTBED=required`, so there a missing piece fails the test
//! instead: CI never passes by skipping.

use std::io::Write;
use std::path::Path;

use crate::paths::{venv_tool, ROOT};

/// One thing a test needs from the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// moto and the Python doubles in the venv (`make deps`).
    Moto,
    /// Debian's docker-registry and htpasswd.
    Registry,
    /// skopeo.
    Skopeo,
    /// podman.
    Podman,
    /// buildah.
    Buildah,
    /// dockerd and the docker CLI.
    Docker,
    /// Running as root (setpriv to other users, chroots, mounts).
    Root,
    /// systemd's tools (systemd-analyze, systemd-run).
    Systemd,
    /// The release artifacts in dist/ (`make release`).
    Dist,
    /// debootstrap, to build Debian roots.
    Debootstrap,
    /// qemu-aarch64-static, to run the arm64 binaries.
    Qemu,
    /// nm and readelf (binutils), to inspect the binaries.
    Binutils,
    /// rpm, rpm2cpio, cpio and lintian, to inspect the packages.
    PackageTools,
    /// gpg, apt-ftparchive, createrepo_c and rpmsign, which scripts/repo.sh signs with.
    RepoTools,
    /// cfn-lint and kubernetes-validate in the venv.
    Linters,
    /// Debian's rustc-web cargo, which scripts/release.sh builds with.
    ReleaseToolchain,
    /// Debian's promtool, extracted under .tools/ (`make deps`).
    Promtool,
}

impl Need {
    /// Why it is missing, or `None` when it is there.
    fn missing(self) -> Option<String> {
        let tools: &[&str] = match self {
            Need::Moto => return file_missing(&venv_tool("python"), "the venv (make deps)"),
            Need::ReleaseToolchain => {
                return file_missing("/usr/bin/cargo", "rustc-web's cargo (make release-tools)")
            }
            Need::Linters => {
                return ["python", "cfn-lint", "kubernetes-validate"]
                    .into_iter()
                    .find_map(|t| file_missing(&venv_tool(t), "the venv's linters (make deps)"))
            }
            Need::Promtool => {
                return file_missing(&crate::paths::promtool(), "Debian's promtool (make deps)")
            }
            Need::Dist => return file_missing(&format!("{ROOT}/dist/SHA256SUMS"), "dist/ (make release)"),
            Need::Root => return (!is_root()).then(|| "root (it switches users and mounts)".to_owned()),
            Need::Registry => &["docker-registry", "htpasswd"],
            Need::Skopeo => &["skopeo"],
            Need::Podman => &["podman"],
            Need::Buildah => &["buildah"],
            Need::Docker => &["dockerd", "docker"],
            Need::Systemd => &["systemd-analyze", "systemd-run"],
            Need::Debootstrap => &["debootstrap"],
            Need::Qemu => &["qemu-aarch64-static"],
            Need::Binutils => &["nm", "readelf"],
            Need::PackageTools => &["rpm", "rpm2cpio", "cpio", "lintian", "dpkg-deb"],
            Need::RepoTools => &["gpg", "gpgv", "apt-ftparchive", "createrepo_c", "rpmsign"],
        };
        let absent: Vec<&str> = tools.iter().copied().filter(|t| !on_path(t)).collect();
        (!absent.is_empty()).then(|| format!("{} on PATH (make deps installs it)", absent.join(", ")))
    }
}

fn file_missing(path: &str, what: &str) -> Option<String> {
    (!Path::new(path).exists()).then(|| format!("{what}: {path} is missing"))
}

fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|d| d.join(program).is_file())
}

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|u| u.split_whitespace().next()) == Some("0")
}

/// True when everything in `needs` is there. Otherwise the test should
/// return at once: this says which test skipped and why, or fails it when
/// `ECR_CREDD_TESTBED=required` (as under `make test`).
pub fn met(needs: &[Need]) -> bool {
    let missing: Vec<String> =
        needs.iter().filter_map(|n| n.missing().map(|why| format!("{n:?}: {why}"))).collect();
    if missing.is_empty() {
        return true;
    }
    let test = std::thread::current().name().unwrap_or("this test").to_owned();
    let reasons = missing.join("; ");
    assert!(
        std::env::var("ECR_CREDD_TESTBED").as_deref() != Ok("required"),
        "{test} needs what is missing, and ECR_CREDD_TESTBED=required: {reasons}"
    );
    // Straight to stderr: libtest hides what a passing test prints, and a
    // skip must be seen.
    let _ = writeln!(std::io::stderr(), "skipped {test}: needs {reasons}");
    false
}

/// Returns from the calling test, with the reason printed, unless the machine
/// has everything named (see [`met`]): `require!(Moto, Registry);`.
#[macro_export]
macro_rules! require {
    ($($need:ident),+ $(,)?) => {
        if !$crate::gate::met(&[$($crate::gate::Need::$need),+]) {
            return;
        }
    };
}
