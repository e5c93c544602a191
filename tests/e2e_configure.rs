//! `ecr-credd configure` as a user runs it, then the real clients: skopeo
//! and podman through the registries.conf.d drop-in (a host the daemon does
//! not serve falls through to the auth file), and the kubelet provider
//! through the written config's matchImages. docker's case is in
//! e2e_docker_cli.rs, beside its engine stub.

use std::path::Path;
use std::process::Output;

use base64::Engine as _;
use testbed::*;

/// `ecr-credd configure ARGS` with `home` as HOME.
fn configure(home: &Path, config: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = clean_command(daemon_bin(), home);
    cmd.arg("configure").args(args);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.output().unwrap()
}

/// skopeo or podman with `home` as HOME, the auth file and the socket.
fn client(program: &str, home: &Path, auth: &Path, socket: &Path, args: &[&str]) -> Output {
    container_client(program, home, auth, socket, args)
}

#[test]
fn configure_containers_routes_our_hosts_to_the_helper_and_others_fall_through() {
    require!(Moto, Registry, Skopeo, Podman);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (moto, imds) = (Moto::start(dir), Imds::start(dir));
    let ours = Registry::start(dir, PASSWORD);
    let theirs = Registry::start(dir, "their-password");
    let daemon = Daemon::builder(dir)
        .config(&registry_toml(&ours.host(), Some(ROLE)))
        .env(&Daemon::aws_env(&moto, &imds))
        .start();
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    // The user's auth file knows only the other registry (as `podman login` writes it).
    let auth = home.join("auth.json");
    let login = base64::engine::general_purpose::STANDARD.encode("AWS:their-password");
    std::fs::write(&auth, format!("{{\"auths\":{{\"{}\":{{\"auth\":\"{login}\"}}}}}}", theirs.host()))
        .unwrap();
    let oci = make_oci_image(dir);
    for (registry, creds) in [(&ours, format!("AWS:{PASSWORD}")), (&theirs, "AWS:their-password".to_owned())]
    {
        let dest = format!("docker://{}/demo:v1", registry.host());
        let out = client(
            "skopeo",
            &home,
            &auth,
            &daemon.socket,
            &["copy", "--dest-tls-verify=false", "--dest-creds", &creds, &oci, &dest],
        );
        assert!(out.status.success(), "seeding {dest}: {}", output_text(&out));
    }
    let inspect = |host: &str| {
        client(
            "skopeo",
            &home,
            &auth,
            &daemon.socket,
            &["inspect", "--tls-verify=false", &format!("docker://{host}/demo:v1")],
        )
    };
    let before = inspect(&ours.host());
    assert!(!before.status.success(), "our registry answered without the helper: {}", output_text(&before));

    let out = configure(&home, None, &["containers", "--user", "--dry-run"]);
    println!("---- configure containers --user --dry-run ----\n{}", output_text(&out));
    assert!(
        out.status.success()
            && output_text(&out).contains("+credential-helpers = [\"ecr-credd\", \"containers-auth.json\"]")
    );
    let out = configure(&home, None, &["containers", "--user"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let drop_in = home.join(".config/containers/registries.conf.d/50-ecr-credd.conf");
    assert!(drop_in.exists(), "{}", output_text(&out));
    let again = configure(&home, None, &["containers", "--user"]);
    assert!(output_text(&again).contains("already in place"), "{}", output_text(&again));

    // Ours through the helper; theirs through the auth file, after the helper said "not found".
    let out = inspect(&ours.host());
    assert!(out.status.success(), "skopeo, our registry: {}", output_text(&out));
    let out = inspect(&theirs.host());
    assert!(out.status.success(), "skopeo, their registry: {}", output_text(&out));
    for registry in [&ours, &theirs] {
        let image = format!("{}/demo:v1", registry.host());
        let out = client("podman", &home, &auth, &daemon.socket, &["pull", "--tls-verify=false", &image]);
        assert!(out.status.success(), "podman pull {image}: {}", output_text(&out));
    }

    let out = configure(&home, None, &["containers", "--user", "--remove"]);
    assert!(out.status.success() && !drop_in.exists(), "{}", output_text(&out));
    assert!(!inspect(&ours.host()).status.success(), "the helper still answered after --remove");
}

/// Whether the kubelet would ask the provider for `image` under `pattern`
/// (k8s.io/kubelet's rules: as many domain labels, `*` one label, the port
/// equal, the path a prefix).
fn kubelet_matches(pattern: &str, image: &str) -> bool {
    let split = |s: &str| {
        let (host, path) = s.split_once('/').unwrap_or((s, ""));
        let (name, port) = host.rsplit_once(':').map_or((host, ""), |(n, p)| (n, p));
        (name.to_owned(), port.to_owned(), path.to_owned())
    };
    let (pn, pp, ppath) = split(pattern);
    let (iname, iport, ipath) = split(image);
    let (pl, il): (Vec<&str>, Vec<&str>) = (pn.split('.').collect(), iname.split('.').collect());
    pl.len() == il.len()
        && pl.iter().zip(&il).all(|(p, i)| *p == "*" || p == i)
        && (pp.is_empty() || pp == iport)
        && ipath.starts_with(&ppath)
}

#[test]
fn configure_kubelet_writes_match_images_for_exactly_the_configured_registries() {
    require!(Moto);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (moto, imds) = (Moto::start(dir), Imds::start(dir));
    let config = registry_toml(ALIAS, Some(ROLE));
    let daemon = Daemon::builder(dir).config(&config).env(&Daemon::aws_env(&moto, &imds)).start();
    let config_path = dir.join("config.toml");
    let output = dir.join("kubelet/ecr-credd-provider.yaml");
    std::fs::create_dir_all(output.parent().unwrap()).unwrap();
    let out = configure(dir, Some(&config_path), &["kubelet", "--output", output.to_str().unwrap()]);
    let said = output_text(&out);
    println!("---- configure kubelet ----\n{said}");
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("--image-credential-provider-config=") && said.contains("kind: NodeConfig"),
        "{said}"
    );
    let written = std::fs::read_to_string(&output).unwrap();
    let images: Vec<String> = written
        .lines()
        .skip_while(|l| !l.contains("matchImages:"))
        .skip(1)
        .take_while(|l| l.trim_start().starts_with("- "))
        .map(|l| l.trim_start().trim_start_matches("- ").trim_matches('"').to_owned())
        .collect();
    // The configured registry, then (serve_unlisted_ecr is on by default) every ECR host.
    assert_eq!(images[0], ALIAS, "{written}");
    assert!(images[1..].iter().all(|p| p.contains(".dkr.ecr") || p.contains(".dkr-ecr")), "{written}");
    let matched = |image: &str| images.iter().any(|p| kubelet_matches(p, image));
    assert!(matched(&format!("{ALIAS}/team/app:v1")));
    assert!(matched("111122223333.dkr.ecr.eu-west-1.amazonaws.com/app:v1"));
    assert!(!matched("127.0.0.1:5999/app:v1"), "another port matched");
    assert!(!matched("docker.io/library/busybox:1"));
    // What the kubelet would then run: the provider, which gets the token.
    let request = format!(
        "{{\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"kind\":\"CredentialProviderRequest\",\"image\":\"{ALIAS}/team/app:v1\"}}"
    );
    let (code, answer, err) =
        run_client(&program("ecr-credd-kubelet-provider"), &[], &daemon.socket, &request);
    assert_eq!(code, 0, "{err}");
    assert!(answer.contains(PASSWORD), "{answer}");
    let again = configure(dir, Some(&config_path), &["kubelet", "--output", output.to_str().unwrap()]);
    assert!(output_text(&again).contains("unchanged"), "{}", output_text(&again));
    let env = Daemon::aws_env(&moto, &imds);
    let doctor_kubelet = || {
        let args =
            ["--socket", daemon.socket.to_str().unwrap(), "--kubelet-config", output.to_str().unwrap()];
        doctor(dir, &config_path, &args, &env).1
    };
    let out = doctor_kubelet();
    assert!(out.contains(&format!("ok   kubelet config [{ALIAS}]")), "{out}");

    // Someone else's file is not overwritten; doctor names the fix, which works.
    std::fs::write(
        &output,
        "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders: []\n",
    )
    .unwrap();
    let refused = configure(dir, Some(&config_path), &["kubelet", "--output", output.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(output_text(&refused).contains("not written by ecr-credd; left unchanged (--force replaces it)"));
    let out = doctor_kubelet();
    println!("---- doctor, a kubelet config without our provider ----\n{out}");
    let fix = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("run: ecr-credd "))
        .find(|f| f.starts_with("configure kubelet --output"))
        .unwrap_or_else(|| panic!("no configure kubelet fix in\n{out}"));
    assert!(out.contains("FAIL kubelet config"), "{out}");
    let fix = fix.split(" (it replaces").next().unwrap();
    let ran = clean_command(daemon_bin(), dir)
        .args(fix.split_whitespace())
        .arg("--config")
        .arg(&config_path)
        .output()
        .unwrap();
    assert!(ran.status.success(), "{fix}: {}", output_text(&ran));
    assert!(doctor_kubelet().contains(&format!("ok   kubelet config [{ALIAS}]")));
}
