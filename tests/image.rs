//! The OCI image from `make release`: a multi-arch index (amd64 + arm64) run
//! in a real engine, a private dockerd started here, the way the DaemonSet
//! runs it: the init container installs the host programs and the socket
//! directory, the daemon runs as a non-root user on the host network, and
//! the helper and kubelet provider it installed get a token on the host
//! through the mounted socket directory. The Kubernetes manifests validate
//! offline against the Kubernetes schemas.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testbed::engine::Dockerd;
use testbed::*;

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo").args(args).output().unwrap();
    assert!(out.status.success(), "skopeo {args:?}: {}", output_text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The image index's platforms, and each one's compressed size, read from
/// the unpacked OCI archive.
fn platforms(image: &Path, dir: &Path) -> Vec<(String, u64)> {
    let layout = dir.join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    let untar = Command::new("tar").arg("-xf").arg(image).arg("-C").arg(&layout).output().unwrap();
    assert!(untar.status.success(), "{}", output_text(&untar));
    let json = |path: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
            .unwrap()
    };
    let blob = |digest: &serde_json::Value| layout.join("blobs/sha256").join(&digest.as_str().unwrap()[7..]);
    let mut index = json(layout.join("index.json"));
    // The archive's index points at the image index, which lists the platforms.
    if index["manifests"][0]["mediaType"] == "application/vnd.oci.image.index.v1+json" {
        index = json(blob(&index["manifests"][0]["digest"]));
    }
    let manifests = index["manifests"].as_array().expect("an image index");
    manifests
        .iter()
        .map(|m| {
            let arch = m["platform"]["architecture"].as_str().unwrap_or("?").to_owned();
            let manifest = json(blob(&m["digest"]));
            let layers = manifest["layers"].as_array().expect("layers");
            (arch, layers.iter().map(|l| l["size"].as_u64().unwrap_or(0)).sum())
        })
        .collect()
}

#[test]
fn image_runs_in_a_real_engine_and_serves_the_host_through_the_socket_dir() {
    require!(Moto, Skopeo, Docker, Dist);
    let tmp = tempfile::tempdir().unwrap();
    open_to_all(tmp.path());
    let image = dist_file(".oci.tar");
    let archive = format!("oci-archive:{}", image.display());
    let platforms = platforms(&image, tmp.path());
    eprintln!("image index {}: {platforms:?}", image.display());
    let archs: Vec<&str> = platforms.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(archs, ["amd64", "arm64"]);

    // dockerd 20.10 loads docker archives; skopeo picks the amd64 image.
    let engine = tmp.path().join("engine");
    std::fs::create_dir_all(&engine).unwrap();
    let docker = Dockerd::start(&engine);
    let loadable = tmp.path().join("amd64.tar");
    skopeo(&[
        "copy",
        "--quiet",
        "--override-arch",
        "amd64",
        &archive,
        &format!("docker-archive:{}:ecr-credd:test", loadable.display()),
    ]);
    docker.ok(&["load", "-i", loadable.to_str().unwrap()]);
    let user = docker.ok(&["inspect", "--format", "{{.Config.User}}", "ecr-credd:test"]);
    assert_eq!(user.trim(), "64872:64872", "the image runs as a non-root user of its own");

    // The init container, as the DaemonSet runs it: the two host directories
    // it writes, and no capability but CHOWN.
    let host_bin = tmp.path().join("host/bin");
    let socket_dir = tmp.path().join("host/run/ecr-credd");
    std::fs::create_dir_all(&host_bin).unwrap();
    std::fs::create_dir_all(&socket_dir).unwrap();
    let mount = |host: &PathBuf, inside: &str| format!("{}:{inside}", host.display());
    let installed = docker.ok(&[
        "run",
        "--rm",
        "--user",
        "0:0",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CHOWN",
        "-v",
        &mount(&host_bin, "/host/bin"),
        "-v",
        &mount(&socket_dir, "/host/run/ecr-credd"),
        "ecr-credd:test",
        "install-host",
        "--bin-dir",
        "/host/bin",
        "--socket-dir",
        "/host/run/ecr-credd",
        "--owner",
        "64872:64872",
    ]);
    eprintln!("init container:\n{installed}");
    let meta = std::fs::metadata(&socket_dir).unwrap();
    assert_eq!(
        (std::os::unix::fs::MetadataExt::uid(&meta), meta.permissions().mode() & 0o777),
        (64872, 0o755)
    );

    // The daemon, as the DaemonSet runs it: host network, config mounted.
    let (moto, imds) = (Moto::start(tmp.path()), Imds::start(tmp.path()));
    let etc = tmp.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let health = free_port();
    std::fs::write(
        etc.join("config.toml"),
        format!(
            "[server]\nsocket = \"/run/ecr-credd/ecr-credd.sock\"\n[health]\nlisten = \"127.0.0.1:{health}\"\n\
             [[registry]]\nhost = \"127.0.0.1:5000\"\nregistry_id = \"{ACCOUNT}\"\nregion = \"us-east-1\"\nrole_arn = \"{ROLE}\"\n"
        ),
    )
    .unwrap();
    docker.ok(&[
        "run",
        "-d",
        "--name",
        "ecr-credd",
        "--network",
        "host",
        "--read-only",
        "--cap-drop",
        "ALL",
        "-v",
        &mount(&socket_dir, "/run/ecr-credd"),
        "-v",
        &format!("{}:/etc/ecr-credd:ro", etc.display()),
        "-e",
        &format!("AWS_ENDPOINT_URL={}", moto.endpoint()),
        "-e",
        &format!("AWS_EC2_METADATA_SERVICE_ENDPOINT={}", imds.endpoint()),
        "ecr-credd:test",
    ]);
    let socket = socket_dir.join("ecr-credd.sock");
    let logs = || output_text(&docker.docker(&["logs", "ecr-credd"]));
    wait_until("the container's socket", Duration::from_secs(30), || socket.exists());
    let helper = host_bin.join("docker-credential-ecr-credd");
    wait_until("a token through the socket directory", Duration::from_secs(30), || {
        run_client(helper.to_str().unwrap(), &["get"], &socket, "127.0.0.1:5000").0 == 0
    });
    let (_, out, _) = run_client(helper.to_str().unwrap(), &["get"], &socket, "127.0.0.1:5000");
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{}", logs()));
    assert_eq!(v["Secret"], PASSWORD);

    let provider = host_bin.join("ecr-credd-kubelet-provider");
    let request = r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"127.0.0.1:5000/app:v1"}"#;
    let (code, out, err) = run_client(provider.to_str().unwrap(), &[], &socket, request);
    assert_eq!(code, 0, "{out}{err}");

    // Another pod with the socket directory mounted, as distroless's nonroot
    // (the uid the image used to share): refused.
    let mut other = docker.command();
    other.args(["run", "--rm", "-i", "--network", "host", "--user", "65532:65532", "-v"]);
    other.arg(mount(&socket_dir, "/run/ecr-credd"));
    other.args(["--entrypoint", "/usr/bin/docker-credential-ecr-credd", "ecr-credd:test", "get"]);
    let refused = output_with_stdin(&mut other, "127.0.0.1:5000");
    let said = output_text(&refused);
    eprintln!("another pod as uid 65532: {}", said.trim());
    assert!(!refused.status.success() && !said.contains(PASSWORD), "{said}");
    assert!(said.contains("uid 65532 is not allowed") || said.contains("permission denied"), "{said}");
    assert!(out.contains(PASSWORD) && out.contains("\"cacheKeyType\":\"Registry\""), "{out}");
    assert_eq!(http(health, "GET", "/readyz", "").0, 200, "readiness probe");
    let log = logs();
    assert!(log.contains("ecr-credd started"), "{log}");
    eprintln!("container log:\n{log}");
}

#[test]
fn kubernetes_manifests_validate_offline_against_the_schemas() {
    require!(Linters);
    let validate = venv_tool("kubernetes-validate");
    let manifest = format!("{ROOT}/examples/kubernetes/daemonset.yaml");
    let run = |path: &str| Command::new(&validate).args(["--strict", "-k", "1.30.0", path]).output().unwrap();
    let out = run(&manifest);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    for kind in ["namespace/ecr-credd", "configmap/ecr-credd-config", "daemonset/ecr-credd"] {
        assert!(text.contains(&format!("passed for resource {kind}")), "{text}");
    }
    // The validator does reject a broken manifest.
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("broken.yaml");
    let yaml = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&broken, yaml.replace("hostNetwork: true", "hostNetwork: yes-please")).unwrap();
    assert!(!run(broken.to_str().unwrap()).status.success(), "a broken manifest passed");

    // What the DaemonSet relies on.
    for needle in [
        "hostNetwork: true",
        "path: /healthz",
        "path: /readyz",
        "path: /run/ecr-credd",
        "install-host",
        "runAsNonRoot: true",
        "runAsUser: 64872",
        "seccompProfile: { type: RuntimeDefault }",
        "add: [\"CHOWN\"]",
        "limits:",
        "requests:",
    ] {
        assert!(yaml.contains(needle), "daemonset.yaml lacks {needle}");
    }
    // No more than it needs: no host /run, no capabilities to override access.
    for needle in ["path: /run,", "DAC_OVERRIDE", "FOWNER", "runAsUser: 65532", "runAsUser: 65534"] {
        assert!(!yaml.contains(needle), "daemonset.yaml has {needle}");
    }
}
