//! skopeo and podman push and pull through the helper against a real
//! registry, with tokens from IMDS double -> moto STS -> moto ECR.

mod support;

use std::path::Path;
use std::process::Output;

use support::*;

fn registry_config(registry: &Registry) -> String {
    format!(
        "[[registry]]\nhost = \"{}\"\nregistry_id = \"{ACCOUNT}\"\nregion = \"us-east-1\"\nrole_arn = \"{ROLE}\"\n",
        registry.host()
    )
}

/// Runs a container client with only the auth file and socket it is given.
fn client(program: &str, home: &Path, auth: &Path, socket: &Path, args: &[&str]) -> Output {
    clean_command(program, home)
        .env("REGISTRY_AUTH_FILE", auth)
        .env("ECR_CREDD_SOCKET", socket)
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn skopeo_and_podman_push_and_pull_through_the_helper() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let (moto, imds) = (Moto::start(home), Imds::start(home));
    let registry = Registry::start(home, PASSWORD);
    let daemon = Daemon::start(home, &registry_config(&registry), &Daemon::aws_env(&moto, &imds), "info");

    let image = home.join("image");
    let made = clean_command("python3", home)
        .arg(format!("{ROOT}/testbed/make_oci.py"))
        .arg(&image)
        .status()
        .unwrap();
    assert!(made.success());
    let oci = format!("oci:{}:latest", image.display());
    let host = registry.host();

    // Only credHelpers routes the host to us: no static credentials anywhere.
    let auth = home.join("auth.json");
    std::fs::write(&auth, format!("{{\"credHelpers\":{{\"{host}\":\"ecr-credd\"}}}}")).unwrap();
    let push_as = |auth: &Path, tag: &str| {
        let dest = format!("docker://{host}/demo:{tag}");
        client("skopeo", home, auth, &daemon.socket, &["copy", "--dest-tls-verify=false", &oci, &dest])
    };
    let push = push_as(&auth, "v1");
    assert!(push.status.success(), "skopeo push failed: {}", text(&push));

    let pulled = home.join("pulled");
    let pull = client(
        "skopeo",
        home,
        &auth,
        &daemon.socket,
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{host}/demo:v1"),
            &format!("oci:{}:v1", pulled.display()),
        ],
    );
    assert!(pull.status.success(), "skopeo pull failed: {}", text(&pull));
    let original = std::fs::read_dir(image.join("blobs/sha256")).unwrap().count();
    let copied = std::fs::read_dir(pulled.join("blobs/sha256")).unwrap().count();
    assert_eq!(original, copied, "pulled image has every blob");

    let storage = home.join("podman");
    let (root, runroot) = (storage.join("root"), storage.join("run"));
    let podman = client(
        "podman",
        home,
        &auth,
        &daemon.socket,
        &[
            "--root",
            root.to_str().unwrap(),
            "--runroot",
            runroot.to_str().unwrap(),
            "--storage-driver",
            "vfs",
            "--events-backend",
            "file",
            "--cgroup-manager",
            "cgroupfs",
            "pull",
            "--tls-verify=false",
            &format!("{host}/demo:v1"),
        ],
    );
    assert!(podman.status.success(), "podman pull failed: {}", text(&podman));

    // Without the helper the same push is refused: the registry really checks.
    let bare = home.join("bare.json");
    std::fs::write(&bare, "{}").unwrap();
    let push = push_as(&bare, "v2");
    assert!(!push.status.success(), "push without credentials must fail");
    assert!(
        text(&push).contains("authentication required") || text(&push).contains("unauthorized"),
        "{}",
        text(&push)
    );

    // With a password the token does not match, the helper's answer is refused.
    registry.set_password("some-other-password");
    wait_until("the registry to reject the token", std::time::Duration::from_secs(10), || {
        http(registry.port, "GET", "/v2/", "").0 == 401
    });
    let push = push_as(&auth, "v3");
    assert!(!push.status.success(), "push with a wrong token must fail: {}", text(&push));

    assert_eq!(moto.counts(), (1, 1), "one AssumeRole and one GetAuthorizationToken for everything");
}
