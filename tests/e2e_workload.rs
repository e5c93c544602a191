//! Per-workload pulls (KEP-4412) end to end: the real kubelet provider and
//! daemon, moto's AssumeRoleWithWebIdentity behind the fault proxy (which
//! traces each GetAuthorizationToken to the role whose key signed it), and a
//! double of the EKS Pod Identity Agent.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

use testbed::fault_proxy::{Fault, FaultProxy};
use testbed::*;

static PROVIDER: LazyLock<String> = LazyLock::new(|| testbed::program("ecr-credd-kubelet-provider"));

fn role(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{name}")
}

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
    let env =
        vec![("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint()), ("AWS_ENDPOINT_URL", proxy.endpoint())];
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

/// A service-account token as the API server issues it (unsigned here:
/// neither moto nor the agent double checks the signature).
fn jwt(aud: &str, exp_from_now: i64) -> String {
    use base64::Engine;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let claims = serde_json::json!({
        "iss": "https://oidc.eks.us-east-1.amazonaws.com/id/TESTCLUSTER",
        "sub": "system:serviceaccount:team-a:app",
        "aud": [aud],
        "exp": now + exp_from_now,
    });
    let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    format!("{}.{}.c2ln", b64(r#"{"alg":"RS256","kid":"k1"}"#), b64(&claims.to_string()))
}

/// `doctor --service-account-token` with `token` for `host`: (exit code, output).
fn doctor_pod(
    dir: &Path,
    config: &str,
    env: &[(&str, String)],
    token: &str,
    args: &[&str],
    host: &str,
) -> (i32, String) {
    let file = dir.join("sa-token");
    std::fs::write(&file, token).unwrap();
    let path = Daemon::write_config(dir, config);
    let mut all = vec!["--service-account-token", file.to_str().unwrap()];
    all.extend_from_slice(args);
    all.push(host);
    let (code, out) = doctor(dir, &path, &all, env);
    assert!(!out.contains(token) && !out.contains(PASSWORD), "doctor printed a secret:\n{out}");
    (code, out)
}

fn expect(out: &str, lines: &[&str]) {
    for line in lines {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
}

#[test]
fn doctor_walks_a_pods_exchange_and_names_the_failing_step() {
    require!(Moto, Registry);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (moto, imds) = (Moto::start(dir), Imds::start(dir));
    let proxy = FaultProxy::start(moto.port);
    let registry = Registry::start(dir, PASSWORD);
    let host = registry.host();
    let env =
        vec![("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint()), ("AWS_ENDPOINT_URL", proxy.endpoint())];
    let irsa = format!(
        "[workload]\nenabled = true\nallowed_roles = [\"{}\"]\n{}",
        role("pod-*"),
        registry_toml(&host, Some(ROLE))
    );
    let token = jwt("sts.amazonaws.com", 3600);
    let pod_a = role("pod-a");
    let run = |config: &str, token: &str, args: &[&str], what: &str| {
        let (code, out) = doctor_pod(dir, config, &env, token, args, &host);
        println!("---- doctor --service-account-token, {what} (exit {code}) ----\n{out}");
        (code, out)
    };

    let (code, out) = run(&irsa, &token, &["--role", &pod_a], "IRSA, a working setup");
    assert_eq!(code, 0, "{out}");
    expect(
        &out,
        &[
            "ok   workload config",
            "ok   service-account token: sub system:serviceaccount:team-a:app",
            "ok   audience: sts.amazonaws.com",
            "ok   workload role",
            "ok   trust (sts:AssumeRoleWithWebIdentity)",
            "ok   permission (ecr:GetAuthorizationToken)",
            "ok   registry",
        ],
    );

    let (code, out) =
        run(&irsa, &jwt("vault", 3600), &["--role", &pod_a], "the kubelet asked for another audience");
    assert_eq!(code, 1);
    expect(
        &out,
        &[
            "FAIL audience: the token is for [\"vault\"], not sts.amazonaws.com",
            "serviceAccountTokenAudience: sts.amazonaws.com",
        ],
    );

    let (code, out) = run(&irsa, &jwt("sts.amazonaws.com", -120), &["--role", &pod_a], "an expired token");
    assert_eq!(code, 1);
    expect(
        &out,
        &[
            "FAIL service-account token",
            "expired 2 min ago",
            "kubectl create token app --namespace team-a --audience sts.amazonaws.com",
        ],
    );

    let (code, out) = run(&irsa, &token, &["--role", &role("admin")], "a role outside the allow-list");
    assert_eq!(code, 1);
    let refused = format!("FAIL allow-list: role {} is not in [workload] allowed_roles", role("admin"));
    expect(&out, &[&refused]);

    proxy.set_for("AssumeRoleWithWebIdentity", Fault::Deny);
    let (code, out) = run(&irsa, &token, &["--role", &pod_a], "the role does not trust the service account");
    assert_eq!(code, 1);
    expect(&out, &[
        "FAIL trust (sts:AssumeRoleWithWebIdentity)",
        "does not trust system:serviceaccount:team-a:app from oidc.eks.us-east-1.amazonaws.com/id/TESTCLUSTER",
        "\"oidc.eks.us-east-1.amazonaws.com/id/TESTCLUSTER:sub\": \"system:serviceaccount:team-a:app\"",
        "ecr-credd policy --workload irsa --registry-account",
    ]);

    proxy.set_for(
        "AssumeRoleWithWebIdentity",
        Fault::StsError("InvalidIdentityToken", "Incorrect token audience"),
    );
    let (code, out) = run(&irsa, &token, &["--role", &pod_a], "STS refuses the audience");
    assert_eq!(code, 1);
    expect(&out, &["FAIL audience", "InvalidIdentityToken: Incorrect token audience", "client ID"]);

    proxy.set_for("AssumeRoleWithWebIdentity", Fault::None);
    proxy.set_for("GetAuthorizationToken", Fault::Deny);
    let (code, out) = run(&irsa, &token, &["--role", &pod_a], "the role may not fetch a token");
    assert_eq!(code, 1);
    expect(
        &out,
        &[
            "ok   trust (sts:AssumeRoleWithWebIdentity)",
            "FAIL permission (ecr:GetAuthorizationToken)",
            "\"ecr:GetAuthorizationToken\"",
        ],
    );
    proxy.set_for("GetAuthorizationToken", Fault::None);

    // EKS Pod Identity: the agent double knows one token.
    let pod_token = jwt("pods.eks.amazonaws.com", 3600);
    let (_agent, endpoint) = testbed::sources::pod_identity_agent(
        dir,
        &serde_json::json!({ &pod_token: { "account": ACCOUNT, "role": "A" } }),
    );
    let pod_identity = |endpoint: &str| {
        format!("[workload]\nenabled = true\nexchange = \"pod-identity\"\npod_identity_endpoint = \"{endpoint}\"\n{}", registry_toml(&host, Some(ROLE)))
    };
    let (code, out) = run(&pod_identity(&endpoint), &pod_token, &[], "Pod Identity, a working setup");
    assert_eq!(code, 0, "{out}");
    expect(
        &out,
        &["ok   audience: pods.eks.amazonaws.com", "ok   agent (EKS Pod Identity)", "ok   registry"],
    );

    let other = jwt("pods.eks.amazonaws.com", 3500);
    let (code, out) =
        run(&pod_identity(&endpoint), &other, &["--role", &pod_a], "no association for the service account");
    assert_eq!(code, 1);
    expect(&out, &["FAIL trust (EKS Pod Identity association)", "HTTP 403: Access Denied.", "aws eks create-pod-identity-association --cluster-name CLUSTER --namespace team-a --service-account app"]);

    // The agent's IPv6 address, with ::1 standing in for [fd00:ec2::23].
    let (_agent_v6, endpoint_v6) = testbed::sources::pod_identity_agent_on(
        dir,
        &serde_json::json!({ &pod_token: { "account": ACCOUNT, "role": "B" } }),
        "::1",
    );
    let (code, out) = run(&pod_identity(&endpoint_v6), &pod_token, &[], "Pod Identity over IPv6");
    assert_eq!(code, 0, "{out}");
    expect(&out, &["ok   agent (EKS Pod Identity)"]);

    let dead = format!("http://127.0.0.1:{}/v1/credentials", free_port());
    let (code, out) = run(&pod_identity(&dead), &pod_token, &[], "the agent is not running");
    assert_eq!(code, 1);
    expect(&out, &["FAIL agent (EKS Pod Identity)", "unreachable", "eks-pod-identity-agent"]);

    let (code, out) = run(&pod_identity(&endpoint), &token, &[], "an IRSA token sent to the agent");
    assert_eq!(code, 1);
    expect(&out, &["FAIL audience: the token is for [\"sts.amazonaws.com\"], not pods.eks.amazonaws.com"]);
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
    let env =
        vec![("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint()), ("AWS_ENDPOINT_URL", proxy.endpoint())];
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
