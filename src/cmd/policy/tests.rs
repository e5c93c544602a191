use super::*;
use crate::config::workload::ExchangeKind;

fn setup(access: Access) -> Setup {
    Setup {
        registry_account: "111122223333".into(),
        instance_account: "444455556666".into(),
        role_name: "ecr-access-from-b".into(),
        instance_role: Some("web-nodes".into()),
        repositories: vec!["team/app".into(), "base".into()],
        access,
        external_id: Some("fleet-7".into()),
        partition: "aws".into(),
        ..Setup::default()
    }
}

/// The basic rules of the IAM policy grammar.
fn check_grammar(d: &PolicyDocument, resource_policy: bool) {
    let v: serde_json::Value = serde_json::to_value(d).unwrap();
    assert_eq!(v["Version"], "2012-10-17");
    let statements = v["Statement"].as_array().unwrap();
    assert!(!statements.is_empty());
    for s in statements {
        assert!(s["Effect"] == "Allow" || s["Effect"] == "Deny");
        assert!(s["Sid"].as_str().unwrap().bytes().all(|b| b.is_ascii_alphanumeric()));
        for a in s["Action"].as_array().unwrap() {
            let (service, action) = a.as_str().unwrap().split_once(':').unwrap();
            assert!(["ecr", "sts"].contains(&service) && action.bytes().all(|b| b.is_ascii_alphabetic()));
        }
        if resource_policy {
            assert!(
                s.get("Resource").is_none(),
                "resource and trust policies name principals, not resources"
            );
            for p in s["Principal"]["AWS"].as_array().unwrap() {
                assert!(p.as_str().unwrap().starts_with("arn:aws:iam::"));
            }
        } else {
            assert!(s.get("Principal").is_none(), "identity policies have no principal");
            for r in s["Resource"].as_array().unwrap() {
                let r = r.as_str().unwrap();
                assert!(r == "*" || r.starts_with("arn:aws:"), "{r}");
            }
        }
    }
}

#[test]
fn documents_are_least_privilege_and_parse_back() {
    let docs = setup(Access::Pull).documents().unwrap();
    let text = serde_json::to_string(&docs).unwrap();
    let back: Documents = serde_json::from_str(&text).unwrap();
    assert_eq!(back, docs);
    check_grammar(&docs.role_permissions_policy, false);
    check_grammar(&docs.instance_role_policy, false);
    check_grammar(&docs.role_trust_policy, true);
    check_grammar(&docs.repository_policy, true);

    let perms = &docs.role_permissions_policy.statement;
    assert_eq!(perms[0].action, vec!["ecr:GetAuthorizationToken"]);
    assert_eq!(perms[0].resource.as_deref(), Some(&["*".to_owned()][..]));
    assert_eq!(
        perms[1].resource.as_deref().unwrap(),
        ["arn:aws:ecr:*:111122223333:repository/team/app", "arn:aws:ecr:*:111122223333:repository/base"]
    );
    assert!(!perms[1].action.iter().any(|a| a == "ecr:PutImage"), "pull grants no push");

    let trust = &docs.role_trust_policy.statement[0];
    assert_eq!(trust.principal.as_ref().unwrap().aws, ["arn:aws:iam::444455556666:role/web-nodes"]);
    assert_eq!(trust.condition.as_ref().unwrap()["StringEquals"]["sts:ExternalId"], "fleet-7");

    let instance = &docs.instance_role_policy.statement[0];
    assert_eq!(instance.action, ["sts:AssumeRole"]);
    assert_eq!(instance.resource.as_deref().unwrap(), ["arn:aws:iam::111122223333:role/ecr-access-from-b"]);
}

#[test]
fn push_adds_exactly_the_push_actions_and_root_trust_without_instance_role() {
    let mut s = setup(Access::Push);
    s.instance_role = None;
    s.external_id = None;
    s.repositories.clear();
    let docs = s.documents().unwrap();
    let actions = &docs.repository_policy.statement[0].action;
    assert_eq!(actions.len(), PULL_ACTIONS.len() + PUSH_ACTIONS.len());
    assert!(actions.iter().any(|a| a == "ecr:PutImage"));
    let trust = &docs.role_trust_policy.statement[0];
    assert_eq!(trust.principal.as_ref().unwrap().aws, ["arn:aws:iam::444455556666:root"]);
    assert!(trust.condition.is_none());
    assert_eq!(
        docs.role_permissions_policy.statement[1].resource.as_deref().unwrap(),
        ["arn:aws:ecr:*:111122223333:repository/*"]
    );
    assert!(render_text(&s, &docs).contains("# 4. Account 444455556666: policy on the instance role"));
}

#[test]
fn bad_input_is_named() {
    let mut s = setup(Access::Pull);
    s.registry_account = "1234".into();
    assert_eq!(
        s.documents().unwrap_err().to_string(),
        "--registry-account: \"1234\" is not a 12-digit account id"
    );
    let mut s = setup(Access::Pull);
    s.repositories = vec!["bad repo".into()];
    assert!(s.documents().unwrap_err().to_string().starts_with("--repository:"));
}

#[test]
fn terraform_and_cloudformation_embed_the_same_documents() {
    let s = setup(Access::Push);
    let docs = s.documents().unwrap();
    let tf = render(&s, &docs, Format::Terraform);
    for needle in [
        "resource \"aws_iam_role\" \"ecr_access_from_b\"",
        "assume_role_policy = jsonencode({",
        "resource \"aws_ecr_repository_policy\" \"team_app\"",
        "repository = \"team/app\"",
        "role   = \"web-nodes\"",
        "\"sts:ExternalId\": \"fleet-7\"",
    ] {
        assert!(tf.contains(needle), "missing {needle:?} in\n{tf}");
    }
    let cfn = render(&s, &docs, Format::Cloudformation);
    let parts: Vec<&str> = cfn.split("# ---- stack in account ").skip(1).collect();
    assert_eq!(parts.len(), 2);
    for part in parts {
        let json = part.split_once('\n').unwrap().1;
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["AWSTemplateFormatVersion"], "2010-09-09");
        let res = v["Resources"].as_object().unwrap().values().next().unwrap();
        assert!(res["Type"] == "AWS::IAM::Role" || res["Type"] == "AWS::IAM::Policy");
    }
    let json: Documents = serde_json::from_str(&render(&s, &docs, Format::Json)).unwrap();
    assert_eq!(json, docs);
}

#[test]
fn ecr_public_adds_its_two_token_actions_to_the_role() {
    let mut s = setup(Access::Pull);
    let plain = s.documents().unwrap();
    s.ecr_public = true;
    let docs = s.documents().unwrap();
    let added: Vec<_> = docs
        .role_permissions_policy
        .statement
        .iter()
        .skip(plain.role_permissions_policy.statement.len())
        .collect();
    assert_eq!(added.len(), 1);
    assert_eq!(added[0].action, ["ecr-public:GetAuthorizationToken", "sts:GetServiceBearerToken"]);
    assert_eq!(added[0].resource.as_deref(), Some(&["*".to_owned()][..]));
    assert_eq!(docs.role_trust_policy, plain.role_trust_policy);
}

const OIDC: &str = "arn:aws:iam::444455556666:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC";

fn workload(kind: ExchangeKind, registry_role: Option<&str>) -> Setup {
    Setup {
        role_name: "team-a-pull".into(),
        instance_role: None,
        external_id: None,
        workload: Some(kind),
        oidc_provider: Some(OIDC.into()),
        namespace: Some("team-a".into()),
        service_account: Some("app".into()),
        registry_role: registry_role.map(Into::into),
        ..setup(Access::Pull)
    }
}

#[test]
fn a_workload_pulls_as_its_own_role_directly_or_by_chaining() {
    let pod_role = "arn:aws:iam::444455556666:role/team-a-pull";
    let docs = workload(ExchangeKind::Irsa, None).workload_documents(ExchangeKind::Irsa).unwrap();
    check_grammar(&docs.workload_role_permissions_policy, false);
    check_grammar(&docs.repository_policy, true);
    let trust = &docs.workload_role_trust_policy.statement[0];
    assert_eq!(trust.action, ["sts:AssumeRoleWithWebIdentity"]);
    let cond = &trust.condition.as_ref().unwrap()["StringEquals"];
    assert_eq!(cond["oidc.eks.eu-west-1.amazonaws.com/id/ABC:sub"], "system:serviceaccount:team-a:app");
    assert_eq!(cond["oidc.eks.eu-west-1.amazonaws.com/id/ABC:aud"], IRSA_AUDIENCE);
    assert_eq!(docs.repository_policy.statement[0].principal.as_ref().unwrap().aws, [pod_role]);
    assert_eq!(docs.service_account_annotations["eks.amazonaws.com/ecr-role-arn"], pod_role);
    assert!(docs.registry_role_trust_policy.is_none());
    assert!(
        docs.daemon_config.contains(&format!("allowed_roles = [\"{pod_role}\"]")),
        "{}",
        docs.daemon_config
    );

    // Chained: the pod's role may only assume A's role, which trusts it and pulls.
    let s = workload(ExchangeKind::PodIdentity, Some("ecr-from-pods"));
    let docs = s.workload_documents(ExchangeKind::PodIdentity).unwrap();
    let registry_role = "arn:aws:iam::111122223333:role/ecr-from-pods";
    let perms = &docs.workload_role_permissions_policy.statement;
    assert_eq!(perms.len(), 1);
    assert_eq!(perms[0].action, ["sts:AssumeRole", "sts:TagSession"]);
    assert_eq!(perms[0].resource.as_deref().unwrap(), [registry_role]);
    let trust = &docs.registry_role_trust_policy.as_ref().unwrap().statement[0];
    assert_eq!(trust.principal.as_ref().unwrap().aws, [pod_role]);
    assert_eq!(docs.repository_policy.statement[0].principal.as_ref().unwrap().aws, [registry_role]);
    let pod_trust = &docs.workload_role_trust_policy.statement[0];
    assert_eq!(pod_trust.principal.as_ref().unwrap().service, [POD_IDENTITY_AUDIENCE]);
    assert_eq!(
        pod_trust.condition.as_ref().unwrap()["StringEquals"]["aws:RequestTag/kubernetes-namespace"],
        "team-a"
    );
    assert!(docs.daemon_config.contains("assume_registry_role = true"));
    assert!(docs.service_account_annotations.is_empty(), "Pod Identity needs no annotation");
    let text = print(&s, Format::Text).unwrap();
    assert!(text.contains("aws eks create-pod-identity-association --cluster-name CLUSTER --namespace team-a --service-account app --role-arn arn:aws:iam::444455556666:role/team-a-pull"), "{text}");
    let back: WorkloadDocuments = serde_json::from_str(&print(&s, Format::Json).unwrap()).unwrap();
    assert_eq!(back, docs);
}

#[test]
fn a_workload_setup_that_cannot_work_is_refused_naming_the_flag() {
    let err = |s: Setup| s.workload_documents(s.workload.unwrap()).unwrap_err().to_string();
    let mut s = workload(ExchangeKind::Irsa, None);
    s.oidc_provider =
        Some("arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC".into());
    assert_eq!(
        err(s),
        "--oidc-provider: \"arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC\" is not in --instance-account, the account of the pod's role"
    );
    let mut s = workload(ExchangeKind::Irsa, None);
    s.oidc_provider = None;
    assert!(err(s).starts_with("--oidc-provider is required with --workload irsa"));
    let mut s = workload(ExchangeKind::PodIdentity, None);
    s.audience = Some("sts.amazonaws.com".into());
    assert!(err(s).contains("the only audience the Pod Identity Agent accepts"));
    let mut s = workload(ExchangeKind::PodIdentity, None);
    s.service_account = None;
    s.namespace = None;
    assert!(err(s).starts_with("--service-account is required with --workload"));
    let mut s = workload(ExchangeKind::Irsa, None);
    s.namespace = Some("Team_A".into());
    assert_eq!(err(s), "--namespace: \"Team_A\" is not a valid name");
    let mut s = workload(ExchangeKind::Irsa, Some("bad role"));
    s.audience = Some("custom-aud".into());
    assert_eq!(err(s), "--registry-role: \"bad role\" is not a valid name");
}
