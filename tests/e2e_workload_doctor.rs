//! `doctor --service-account-token` end to end: each step of a pod's
//! exchange (IRSA against moto behind the fault proxy, EKS Pod Identity
//! against a double of the agent) passes on a working setup and, broken one
//! way at a time, fails at that step with its fix.

use testbed::fault_proxy::{Fault, FaultProxy};
use testbed::*;
use workload::{doctor_pod, expect, jwt, role};

mod workload;

#[test]
fn doctor_walks_a_pods_exchange_and_names_the_failing_step() {
    require!(Moto, Registry);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (moto, imds) = (Moto::start(dir), Imds::start(dir));
    let proxy = FaultProxy::start(moto.port);
    let registry = Registry::start(dir, PASSWORD);
    let host = registry.host();
    let env = proxy.aws_env(&imds);
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
