//! The programs that ask the daemon: our helper and provider, and the real
//! container clients (skopeo, podman, buildah) routed to them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::paths::{helper_bin, python, script};
use crate::process::{clean_command, output_with_stdin, said, Said};

/// Runs `docker-credential-ecr-credd ACTION` with `stdin`; (code, stdout, stderr).
pub fn run_helper(socket: &Path, action: &str, stdin: &str) -> Said {
    run_client(helper_bin(), &[action], socket, stdin)
}

/// Runs a socket client (helper, kubelet provider) with `stdin`; (code, stdout, stderr).
pub fn run_client(program: &str, args: &[&str], socket: &Path, stdin: &str) -> Said {
    let mut cmd = clean_command(program, Path::new("/nonexistent"));
    said(&output_with_stdin(cmd.args(args).env("ECR_CREDD_SOCKET", socket), stdin))
}

/// An auth file (`REGISTRY_AUTH_FILE`) in `home` whose `credHelpers` route
/// each of `hosts` to the helper, and nothing else.
pub fn helper_auth_file(home: &Path, hosts: &[&str]) -> PathBuf {
    let routes: Vec<String> = hosts.iter().map(|h| format!("\"{h}\":\"ecr-credd\"")).collect();
    let auth = home.join("auth.json");
    std::fs::write(&auth, format!("{{\"credHelpers\":{{{}}}}}", routes.join(","))).unwrap();
    auth
}

/// `skopeo copy FROM TO` through the helper; TLS verification is off for the
/// side that is a (loopback, plain HTTP) registry.
pub fn skopeo_copy(home: &Path, auth: &Path, socket: &Path, from: &str, to: &str) -> Output {
    let flag =
        if from.starts_with("docker://") { "--src-tls-verify=false" } else { "--dest-tls-verify=false" };
    container_client("skopeo", home, auth, socket, &["copy", flag, from, to])
}

/// Runs a container client (skopeo, podman, buildah) with only the auth file and socket it is given.
pub fn container_client(program: &str, home: &Path, auth: &Path, socket: &Path, args: &[&str]) -> Output {
    clean_command(program, home)
        .env("REGISTRY_AUTH_FILE", auth)
        .env("ECR_CREDD_SOCKET", socket)
        .args(args)
        .output()
        .unwrap()
}

/// A small OCI image layout at `home/image`; returns its `oci:` reference.
pub fn make_oci_image(home: &Path) -> String {
    let image = home.join("image");
    let made = clean_command(python(), home).arg(script("make_oci.py")).arg(&image).status().unwrap();
    assert!(made.success(), "make_oci.py failed");
    format!("oci:{}:latest", image.display())
}

/// Runs the helper's `get HOST` as `uid`:`gid` with no supplementary groups,
/// from a copy in `dir` (which must be reachable by that user).
pub fn helper_as(dir: &Path, socket: &Path, uid: u32, gid: u32, host: &str) -> (i32, String) {
    use std::os::unix::fs::PermissionsExt;
    let copy = dir.join("helper-copy");
    if !copy.exists() {
        std::fs::copy(helper_bin(), &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut cmd = Command::new("setpriv");
    cmd.args([&format!("--reuid={uid}"), &format!("--regid={gid}"), "--clear-groups", "--"])
        .arg(&copy)
        .arg("get")
        .env_clear()
        .env("ECR_CREDD_SOCKET", socket);
    let out = output_with_stdin(&mut cmd, host);
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}
