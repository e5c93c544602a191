//! Where things are: the checkout, the programs under test, the Python that
//! runs the doubles, and release artifacts.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

/// The workspace root (the checkout).
pub const ROOT: &str = env!("ECR_CREDD_WORKSPACE_ROOT");

static BIN_DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    // A test or bench runs from target/PROFILE/deps/; cargo builds the
    // workspace's programs one directory up before running it.
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default()
});

static DAEMON: LazyLock<String> = LazyLock::new(|| program("ecr-credd"));
static HELPER: LazyLock<String> = LazyLock::new(|| program("docker-credential-ecr-credd"));
static KUBELET_PROVIDER: LazyLock<String> = LazyLock::new(|| program("ecr-credd-kubelet-provider"));

/// Every program a release ships, as packaged under /usr/bin.
pub const SHIPPED_PROGRAMS: [&str; 3] =
    ["ecr-credd", "docker-credential-ecr-credd", "ecr-credd-kubelet-provider"];

/// A program of the workspace, from the target directory the test was built in.
pub fn program(name: &str) -> String {
    let path = BIN_DIR.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace (cargo test --workspace, as make test does)",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

/// `ecr-credd`, as built for this test.
pub fn daemon_bin() -> &'static str {
    &DAEMON
}

/// `docker-credential-ecr-credd`, as built for this test.
pub fn helper_bin() -> &'static str {
    &HELPER
}

/// `ecr-credd-kubelet-provider`, as built for this test.
pub fn kubelet_provider_bin() -> &'static str {
    &KUBELET_PROVIDER
}

/// The interpreter for every Python double: the test bed's venv (moto and
/// the linters live there), built from Debian's python3 by `make deps`.
pub fn python() -> String {
    venv_tool("python")
}

/// A program of the test bed's venv (`python`, `cfn-lint`, `kubernetes-validate`).
pub fn venv_tool(name: &str) -> String {
    format!("{ROOT}/.venv/bin/{name}")
}

/// Debian's promtool, as `make deps` extracts it.
pub fn promtool() -> String {
    format!("{ROOT}/.tools/prometheus/usr/bin/promtool")
}

/// A script of `testbed/`.
pub fn script(name: &str) -> String {
    format!("{ROOT}/testbed/{name}")
}

/// The one release artifact in dist/ whose name ends with `suffix`.
pub fn dist_file(suffix: &str) -> PathBuf {
    let dir = Path::new(ROOT).join("dist");
    let all: Vec<PathBuf> =
        std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    let found: Vec<PathBuf> = all.into_iter().filter(|p| p.to_string_lossy().ends_with(suffix)).collect();
    assert_eq!(found.len(), 1, "one *{suffix} in {} expected (run `make release`): {found:?}", dir.display());
    found[0].clone()
}
