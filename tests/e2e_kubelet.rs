//! The kubelet credential provider driven as the kubelet drives it, against
//! the daemon and moto.

use std::sync::LazyLock;

use testbed::*;

static PROVIDER: LazyLock<String> = LazyLock::new(|| testbed::program("ecr-credd-kubelet-provider"));

fn provide(socket: &std::path::Path, request: &str) -> (i32, String, String) {
    run_client(&PROVIDER, &[], socket, request)
}

fn request(image: &str) -> String {
    format!("{{\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"kind\":\"CredentialProviderRequest\",\"image\":\"{image}\"}}")
}

#[test]
fn kubelet_provider_answers_from_the_daemon() {
    require!(Moto);
    let Stack { dir: _tmp, moto, imds: _imds, daemon } =
        Stack::serving(&registry_toml(ALIAS, Some(ROLE)), ALIAS);

    let (code, out, err) = provide(&daemon.socket, &request(&format!("{ALIAS}/team/app:v1")));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["apiVersion"], "credentialprovider.kubelet.k8s.io/v1");
    assert_eq!(v["kind"], "CredentialProviderResponse");
    assert_eq!(v["cacheKeyType"], "Registry");
    assert_eq!(v["auth"][ALIAS]["username"], "AWS");
    assert_eq!(v["auth"][ALIAS]["password"], PASSWORD);
    let secs: u64 = v["cacheDuration"].as_str().unwrap().trim_end_matches('s').parse().unwrap();
    assert!(
        (12 * 3600 - 600..=12 * 3600 - 300).contains(&secs),
        "cacheDuration {secs}s: lifetime minus the margin"
    );

    // An unlisted ECR image is served too; Docker Hub is refused on stderr.
    let (code, out, _) = provide(&daemon.socket, &request(&format!("{ECR_HOST}/app@sha256:00")));
    assert_eq!(code, 0);
    assert!(out.contains("123456789012-auth-token"));
    let (code, out, err) = provide(&daemon.socket, &request("nginx:latest"));
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err, "ecr-credd-kubelet-provider: docker.io (from image \"nginx:latest\") is not a registry ecr-credd serves\n");
    assert_eq!(moto.counts(), (1, 2));
}
