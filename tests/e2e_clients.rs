//! skopeo, podman and buildah push and pull through the helper against a real
//! registry, with tokens from IMDS double -> moto STS -> moto ECR.

use std::path::Path;

use testbed::*;

fn registry_config(registry: &Registry) -> String {
    registry_toml(&registry.host(), Some(ROLE))
}

#[test]
fn skopeo_podman_and_buildah_push_and_pull_through_the_helper() {
    require!(Moto, Registry, Skopeo, Podman, Buildah);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let (moto, imds) = (Moto::start(home), Imds::start(home));
    let registry = Registry::start(home, PASSWORD);
    let daemon =
        Daemon::builder(home).config(&registry_config(&registry)).env(&Daemon::aws_env(&moto, &imds)).start();

    let oci = make_oci_image(home);
    let image = home.join("image");
    let host = registry.host();

    // Only credHelpers routes the host to us: no static credentials anywhere.
    let auth = helper_auth_file(home, &[&host]);
    let push_as = |auth: &Path, tag: &str| {
        skopeo_copy(home, auth, &daemon.socket, &oci, &format!("docker://{host}/demo:{tag}"))
    };
    let push = push_as(&auth, "v1");
    assert!(push.status.success(), "skopeo push failed: {}", output_text(&push));

    let pulled = home.join("pulled");
    let pull = skopeo_copy(
        home,
        &auth,
        &daemon.socket,
        &format!("docker://{host}/demo:v1"),
        &format!("oci:{}:v1", pulled.display()),
    );
    assert!(pull.status.success(), "skopeo pull failed: {}", output_text(&pull));
    let original = std::fs::read_dir(image.join("blobs/sha256")).unwrap().count();
    let copied = std::fs::read_dir(pulled.join("blobs/sha256")).unwrap().count();
    assert_eq!(original, copied, "pulled image has every blob");

    let storage = home.join("podman");
    let (root, runroot) = (storage.join("root"), storage.join("run"));
    let podman = container_client(
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
    assert!(podman.status.success(), "podman pull failed: {}", output_text(&podman));

    // buildah pulls, then pushes under a new tag: both ways through the helper.
    let storage = home.join("buildah");
    let (root, runroot) = (storage.join("root"), storage.join("run"));
    let buildah = |args: &[&str]| {
        let mut all = vec!["--root", root.to_str().unwrap(), "--runroot", runroot.to_str().unwrap()];
        all.extend_from_slice(&["--storage-driver", "vfs"]);
        all.extend_from_slice(args);
        container_client("buildah", home, &auth, &daemon.socket, &all)
    };
    let source = format!("{host}/demo:v1");
    let pull = buildah(&["pull", "--tls-verify=false", &source]);
    assert!(pull.status.success(), "buildah pull failed: {}", output_text(&pull));
    let target = format!("docker://{host}/demo:from-buildah");
    let push = buildah(&["push", "--tls-verify=false", &source, &target]);
    assert!(push.status.success(), "buildah push failed: {}", output_text(&push));
    let (status, tags) = {
        let out = container_client(
            "skopeo",
            home,
            &auth,
            &daemon.socket,
            &["list-tags", "--tls-verify=false", &format!("docker://{host}/demo")],
        );
        (out.status.success(), output_text(&out))
    };
    assert!(status && tags.contains("from-buildah"), "the buildah push landed: {tags}");

    // Without the helper the same push is refused: the registry really checks.
    let bare = home.join("bare.json");
    std::fs::write(&bare, "{}").unwrap();
    let push = push_as(&bare, "v2");
    assert!(!push.status.success(), "push without credentials must fail");
    assert!(
        output_text(&push).contains("authentication required") || output_text(&push).contains("unauthorized"),
        "{}",
        output_text(&push)
    );

    // With a password the token does not match, the helper's answer is refused.
    registry.set_password("some-other-password");
    wait_until("the registry to reject the token", std::time::Duration::from_secs(10), || {
        http(registry.port, "GET", "/v2/", "").0 == 401
    });
    let push = push_as(&auth, "v3");
    assert!(!push.status.success(), "push with a wrong token must fail: {}", output_text(&push));

    assert_eq!(moto.counts(), (1, 1), "one AssumeRole and one GetAuthorizationToken for everything");
}
