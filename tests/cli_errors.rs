//! What a person sees when something is wrong, pinned byte for byte: each
//! cause said once (see "Errors" in the crate docs).

use std::process::Command;

use testbed::*;

/// (exit code, stdout, stderr) of `program args`.
fn run_clean(program: &str, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut cmd = clean_command(program, std::path::Path::new("/nonexistent"));
    let out = output_with_stdin(cmd.args(args), stdin);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_errors_say_each_cause_once() {
    require!(Root);
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.toml");
    let path = missing.display().to_string();
    assert_eq!(
        run_clean(daemon_bin(), &["check-config", "--config", &path], ""),
        (
            1,
            String::new(),
            format!("ecr-credd: cannot read config {path}: No such file or directory (os error 2)\n")
        )
    );

    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "[aws]\nuse_fips = \"yes\"\n").unwrap();
    let path = bad.display().to_string();
    assert_eq!(
        run_clean(daemon_bin(), &["check-config", "--config", &path], ""),
        (
            1,
            String::new(),
            format!("ecr-credd: {path}:2:12: invalid type: string \"yes\", expected a boolean\n")
        )
    );

    // Unreadable: as nobody, a file only root may read.
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let secret = tmp.path().join("root-only.toml");
    std::fs::write(&secret, "").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let path = secret.display().to_string();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            daemon_bin(),
            "check-config",
            "--config",
            &path,
        ])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned()),
        (Some(1), format!("ecr-credd: cannot read config {path}: Permission denied (os error 13)\n"))
    );
}

#[test]
fn the_helper_with_the_daemon_down_says_so_once() {
    let (code, out, err) =
        run_client(helper_bin(), &["get"], std::path::Path::new("/nonexistent/s.sock"), ECR_HOST);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            1,
            "ecr-credd: cannot reach the ecr-credd daemon at /nonexistent/s.sock (No such file or directory (os error 2)); \
             start it with 'systemctl start ecr-credd.socket ecr-credd.service', or set ECR_CREDD_SOCKET to its socket\n",
            ""
        )
    );
}
