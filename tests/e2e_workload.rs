//! Per-workload pulls (KEP-4412) end to end: the real kubelet provider and
//! daemon, moto's AssumeRoleWithWebIdentity behind the fault proxy (which
//! traces each GetAuthorizationToken to the role whose key signed it), and a
//! double of the EKS Pod Identity Agent.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

use testbed::fault_proxy::{Fault, FaultProxy};
use testbed::*;
use workload::{doctor_pod, expect, jwt, role};

mod workload;

static PROVIDER: LazyLock<String> = LazyLock::new(|| testbed::program("ecr-credd-kubelet-provider"));

/// A CredentialProviderRequest as a KEP-4412 kubelet sends it.
fn request(token: &str, role_arn: Option<&str>) -> String {
    let mut v = serde_json::json!({
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "kind": "CredentialProviderRequest",
        "image": format!("{ALIAS}/team/app:v1"),
    });
    if !token.is_empty() {
        v["serviceAccountToken"] = token.into();
    }
    if let Some(r) = role_arn {
        v["serviceAccountAnnotations"] = serde_json::json!({ "eks.amazonaws.com/ecr-role-arn": r });
    }
    v.to_string()
}

fn provide(socket: &Path, request: &str) -> (i32, String, String) {
    run_client(&PROVIDER, &[], socket, request)
}

/// Which node (here: `role:ARN`) signed each GetAuthorizationToken.
fn ecr_signers(proxy: &FaultProxy) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for c in proxy.calls().iter().filter(|c| c.api == "GetAuthorizationToken") {
        *out.entry(c.node.clone()).or_default() += 1;
    }
    out
}

fn workload_daemon(dir: &Path, proxy: &FaultProxy, imds: &Imds, workload: &str) -> Daemon {
    let env = proxy.aws_env(imds);
    let config = format!("[workload]\nenabled = true\n{workload}\n{}", registry_toml(ALIAS, Some(ROLE)));
    Daemon::builder(dir).config(&config).env(&env).log("trace").start()
}

#[test]
fn two_pods_pull_with_their_own_roles_and_one_token_makes_one_exchange() {
    require!(Moto);
    let tmp = tempfile::tempdir().unwrap();
    let (moto, imds) = (Moto::start(tmp.path()), Imds::start(tmp.path()));
    let proxy = FaultProxy::start(moto.port);
    let health = free_port();
    let allowed =
        format!("allowed_roles = [\"{}\"]\n[health]\nlisten = \"127.0.0.1:{health}\"", role("pod-*"));
    let daemon = workload_daemon(tmp.path(), &proxy, &imds, &allowed);
    // The node's own token first: its first fetch waits up to the start-up
    // spread (10 s) unless asked for, and must not land inside a count below.
    let (code, _, err) = provide(&daemon.socket, &request("", None));
    assert_eq!(code, 0, "{err}");

    let (a, b) = (role("pod-a"), role("pod-b"));
    for (token, role_arn) in [("jwt-of-pod-a", &a), ("jwt-of-pod-b", &b)] {
        let (code, out, err) = provide(&daemon.socket, &request(token, Some(role_arn)));
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["auth"][ALIAS]["password"], PASSWORD);
        println!("pod with {role_arn}: {}", out.replace(PASSWORD, "<token>"));
    }
    assert_eq!(proxy.count("AssumeRoleWithWebIdentity"), 2);
    let signers = ecr_signers(&proxy);
    assert_eq!(signers.get(&format!("role:{a}")), Some(&1), "{signers:?}");
    assert_eq!(signers.get(&format!("role:{b}")), Some(&1), "{signers:?}");

    // One token asked 100 times, 50 at a time (the daemon allows a user 64
    // connections at once): one exchange, one GetAuthorizationToken.
    let c = role("pod-c");
    let (before_sts, before_ecr) =
        (proxy.count("AssumeRoleWithWebIdentity"), proxy.count("GetAuthorizationToken"));
    let asks: Vec<_> = (0..50)
        .map(|_| {
            let (socket, req) = (daemon.socket.clone(), request("jwt-of-pod-c", Some(&c)));
            std::thread::spawn(move || (0..2).filter(|_| provide(&socket, &req).0 == 0).count())
        })
        .collect();
    let ok: usize = asks.into_iter().map(|t| t.join().unwrap()).sum();
    let calls = (
        proxy.count("AssumeRoleWithWebIdentity") - before_sts,
        proxy.count("GetAuthorizationToken") - before_ecr,
    );
    assert_eq!(
        ecr_signers(&proxy).get(&format!("role:{c}")),
        Some(&(calls.1 as usize)),
        "{:?}",
        ecr_signers(&proxy)
    );
    println!("100 requests with one token, 50 at a time: {ok} served; AssumeRoleWithWebIdentity {}, GetAuthorizationToken {}", calls.0, calls.1);
    assert_eq!((ok, calls), (100, (1, 1)));

    // The same role with another token is another workload: not served from the cache.
    let (code, _, err) = provide(&daemon.socket, &request("jwt-of-pod-c-restarted", Some(&c)));
    assert_eq!(code, 0, "{err}");
    assert_eq!(proxy.count("AssumeRoleWithWebIdentity") - before_sts, 2);

    // A role outside the allow-list is refused, naming the rule; no call is made.
    let calls_before = proxy.calls().len();
    let (code, out, refusal) = provide(&daemon.socket, &request("jwt-of-admin", Some(&role("admin"))));
    assert_eq!((code, out.as_str()), (1, ""));
    let named = format!("role {} is not in [workload] allowed_roles", role("admin"));
    assert!(refusal.contains(&named), "{refusal}");
    assert_eq!(proxy.calls().len(), calls_before);

    // No annotation: the node's credentials (fallback = "node"), through its own role.
    let (code, _, err) = provide(&daemon.socket, &request("jwt-of-plain-pod", None));
    assert_eq!(code, 0, "{err}");

    // Neither the service-account tokens nor the registry token reach the
    // log at TRACE, /status, /metrics or an error's text.
    let (_, status) = http(health, "GET", "/status", "");
    let (_, metrics) = http(health, "GET", "/metrics", "");
    assert!(
        metrics.contains("ecr_credd_workload_requests_total{exchange=\"irsa\",outcome=\"exchanged\"}"),
        "{metrics}"
    );
    assert!(!metrics.contains("pod-a") && !metrics.contains("team"), "per-workload labels in\n{metrics}");
    assert!(metrics.contains(&format!("ecr_credd_registry_ready{{registry=\"{ALIAS}\"}} 1")), "{metrics}");
    let texts = [
        ("the log", daemon.proc.output()),
        ("/status", status),
        ("/metrics", metrics),
        ("the refusal", refusal),
    ];
    for (name, text) in &texts {
        for secret in ["jwt-of-pod-a", "jwt-of-pod-c", "jwt-of-admin", "jwt-of-plain-pod", PASSWORD] {
            assert!(!text.contains(secret), "{secret} in {name}");
        }
    }
}

#[test]
fn fallback_deny_refuses_a_pod_without_a_role_and_a_request_without_a_token_is_a_plain_get() {
    require!(Moto);
    let tmp = tempfile::tempdir().unwrap();
    let (moto, imds) = (Moto::start(tmp.path()), Imds::start(tmp.path()));
    let proxy = FaultProxy::start(moto.port);
    let daemon = workload_daemon(tmp.path(), &proxy, &imds, "fallback = \"deny\"");
    let (code, _, err) = provide(&daemon.socket, &request("jwt-of-plain-pod", None));
    assert_eq!(code, 1);
    assert!(
        err.contains("has no eks.amazonaws.com/ecr-role-arn annotation, and [workload] fallback = \"deny\""),
        "{err}"
    );
    // No token and no annotation: the kubelet has no tokenAttributes, and
    // the provider asks as today (docker's helper does the same).
    let (code, _, err) = provide(&daemon.socket, &request("", None));
    assert_eq!(code, 0, "{err}");
    // A role named without a token is refused, never served as the node.
    let (code, _, err) = provide(&daemon.socket, &request("", Some(&role("pod-a"))));
    assert_eq!(code, 1);
    assert!(err.contains("but the kubelet sent no service-account token"), "{err}");
}

#[test]
fn pod_identity_agent_credentials_sign_the_ecr_call_and_its_errors_are_named() {
    require!(Moto);
    let tmp = tempfile::tempdir().unwrap();
    let (moto, imds) = (Moto::start(tmp.path()), Imds::start(tmp.path()));
    let proxy = FaultProxy::start(moto.port);
    let associations = serde_json::json!({ "pod-token-a": { "account": ACCOUNT, "role": "A" } });
    let (_agent, endpoint) = testbed::sources::pod_identity_agent(tmp.path(), &associations);
    let workload = format!("exchange = \"pod-identity\"\npod_identity_endpoint = \"{endpoint}\"");
    let daemon = workload_daemon(tmp.path(), &proxy, &imds, &workload);

    let (code, out, err) = provide(&daemon.socket, &request("pod-token-a", None));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(PASSWORD));
    // Besides the node's own fetch, one GetAuthorizationToken, signed with the association's key.
    let keys: Vec<String> = proxy
        .calls()
        .iter()
        .filter(|c| c.api == "GetAuthorizationToken" && c.key.starts_with("ASIAPOD"))
        .map(|c| c.key.clone())
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with("ASIAPODA"), "{keys:?}");

    for (token, want) in [
        (
            "unknown-token",
            format!("the EKS Pod Identity Agent at {endpoint} denied: HTTP 403: Access Denied."),
        ),
        (
            "throttle-me",
            format!("the EKS Pod Identity Agent at {endpoint} throttled: HTTP 429: Too Many Requests."),
        ),
    ] {
        let (code, _, err) = provide(&daemon.socket, &request(token, None));
        assert_eq!(code, 1);
        assert!(err.contains(&want), "{err}");
        println!("{err}");
    }
}

#[test]
fn role_chaining_assumes_the_registrys_role_as_the_pod() {
    require!(Moto, Registry);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (moto, imds) = (Moto::start(dir), Imds::start(dir));
    let proxy = FaultProxy::start(moto.port);
    // The daemon's own directory: doctor's config goes beside it.
    std::fs::create_dir_all(dir.join("daemon")).unwrap();
    let daemon = workload_daemon(&dir.join("daemon"), &proxy, &imds, "assume_registry_role = true");
    let a = role("pod-a");
    let (code, _, err) = provide(&daemon.socket, &request("jwt-of-pod-a", Some(&a)));
    assert_eq!(code, 0, "{err}");
    // The registry's role assumed with the pod's key, not the node's; the
    // token fetched with the chained session, traced back to the pod.
    let chained: Vec<_> = proxy
        .calls()
        .into_iter()
        .filter(|c| c.api == "AssumeRole" && c.node == format!("role:{a}"))
        .collect();
    assert_eq!(chained.len(), 1, "{:?}", proxy.calls());
    assert_eq!(ecr_signers(&proxy).get(&format!("role:{a}")), Some(&1));

    // doctor walks the same chain, and names a registry role that does not trust the pod's.
    let registry = Registry::start(dir, PASSWORD);
    let env = proxy.aws_env(&imds);
    let config = format!(
        "[workload]\nenabled = true\nassume_registry_role = true\n{}",
        registry_toml(&registry.host(), Some(ROLE))
    );
    let token = jwt("sts.amazonaws.com", 3600);
    let (code, out) = doctor_pod(dir, &config, &env, &token, &["--role", &a], &registry.host());
    println!("---- doctor, role chaining (exit {code}) ----\n{out}");
    assert_eq!(code, 0, "{out}");
    expect(&out, &["ok   trust (sts:AssumeRole into the registry's role)", "ok   registry"]);
    proxy.set_for("AssumeRole", Fault::Deny);
    let (code, out) = doctor_pod(dir, &config, &env, &token, &["--role", &a], &registry.host());
    println!("---- doctor, the registry's role does not trust the pod's (exit {code}) ----\n{out}");
    assert_eq!(code, 1);
    let role_name = ROLE.rsplit('/').next().unwrap();
    expect(
        &out,
        &[
            "FAIL trust (sts:AssumeRole into the registry's role)",
            "the registry's role must trust the pods' role",
            &format!("\"{a}\""),
            &format!("--registry-role {role_name}"),
        ],
    );
}
