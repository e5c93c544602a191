//! What a failed step means for the setup, and the fix, with the exact
//! policy documents to compare against.

use crate::cmd::policy::{PolicyDocument, Setup, PULL_ACTIONS, PUSH_ACTIONS};
use crate::tokens::Refusal;

/// The fix when `service` did not deny the call: nothing in IAM to change.
pub(super) fn not_denied(refusal: Refusal, service: &str) -> Option<String> {
    match refusal {
        Refusal::Denied => None,
        Refusal::Throttled => {
            Some("not a permission problem: AWS is throttling this account's calls; retry in a minute".into())
        }
        Refusal::Overloaded | Refusal::Failed => Some(format!(
            "not a permission problem: check outbound HTTPS to {service} (proxy, VPC endpoint) and retry"
        )),
    }
}

/// A document as doctor prints it.
pub(super) fn json(d: &PolicyDocument) -> String {
    serde_json::to_string_pretty(d).unwrap_or_default()
}

/// The fix for a failed AssumeRole, by how AWS refused it. A denial is
/// step 4 (the instance role's permission) or step 2 (the trust policy); AWS
/// does not say which, so both documents are shown.
pub(super) fn assume_role_fix(refusal: Refusal, setup: &Setup, has_external_id: bool) -> String {
    if let Some(fix) = not_denied(refusal, "STS") {
        return fix;
    }
    let Ok(docs) = setup.documents() else {
        return "AWS refused: check setup steps 2 and 4".into();
    };
    let mut fix = format!(
        "AWS refused. Either setup step 4: the instance role in account {b} lacks sts:AssumeRole on the role; \
         attach this policy to the instance role:\n{}\n\
         or setup step 2: the role's trust policy in account {a} does not trust account {b} or this instance role; \
         it should read:\n{}",
        json(&docs.instance_role_policy),
        json(&docs.role_trust_policy),
        a = setup.registry_account,
        b = setup.instance_account,
    );
    if !has_external_id {
        fix += "\nIf that trust policy requires sts:ExternalId, set external_id for this registry in the config.";
    }
    fix
}

/// The fix for a failed GetAuthorizationToken.
pub(super) fn get_token_fix(refusal: Refusal, setup: &Setup) -> String {
    if let Some(fix) = not_denied(refusal, "ECR") {
        return fix;
    }
    match setup.documents() {
        Ok(docs) => format!(
            "setup step 1: the role's permissions policy must allow ecr:GetAuthorizationToken on \"*\"; for example:\n{}",
            json(&docs.role_permissions_policy)
        ),
        Err(_) => "setup step 1: allow ecr:GetAuthorizationToken on \"*\" in the role's permissions policy".into(),
    }
}

/// The fix when the registry refuses the token.
pub(super) fn repository_fix(setup: &Setup) -> String {
    let docs = setup.documents().ok();
    format!(
        "setup step 3: the repository policy must allow the role. Pull needs {}; push also needs {}. For example:\n{}",
        PULL_ACTIONS.join(", "),
        PUSH_ACTIONS.join(", "),
        docs.map(|d| json(&d.repository_policy)).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> Setup {
        Setup {
            registry_account: "111122223333".into(),
            instance_account: "444455556666".into(),
            role_name: "ecr-pull".into(),
            instance_role: Some("nodes".into()),
            partition: "aws".into(),
            ..Setup::default()
        }
    }

    // moto does not evaluate cross-account trust policies, so the trust-policy
    // case (step 2) and the missing external id are covered here.
    #[test]
    fn a_denial_names_steps_4_and_2_with_both_documents() {
        let cause = Refusal::Denied;
        let fix = assume_role_fix(cause, &setup(), false);
        assert!(fix.contains("setup step 4") && fix.contains("setup step 2"), "{fix}");
        assert!(
            fix.contains("\"Resource\": [\n        \"arn:aws:iam::111122223333:role/ecr-pull\""),
            "{fix}"
        );
        assert!(fix.contains("arn:aws:iam::444455556666:role/nodes"), "{fix}");
        assert!(fix.contains("set external_id"), "{fix}");
        assert!(!assume_role_fix(cause, &setup(), true).contains("set external_id"));
    }

    #[test]
    fn other_failures_are_not_blamed_on_iam() {
        for refusal in [Refusal::Failed, Refusal::Throttled] {
            assert!(assume_role_fix(refusal, &setup(), false).starts_with("not a permission problem"));
            assert!(get_token_fix(refusal, &setup()).starts_with("not a permission problem"));
        }
        assert!(assume_role_fix(Refusal::Throttled, &setup(), false).contains("throttling"));
        assert!(get_token_fix(Refusal::Denied, &setup()).contains("ecr:GetAuthorizationToken"));
        assert!(
            repository_fix(&setup()).contains("ecr:BatchGetImage")
                && repository_fix(&setup()).contains("ecr:PutImage")
        );
    }
}
