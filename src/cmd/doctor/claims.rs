//! What a service-account token says about itself, read without verifying
//! it (the API server signed it; STS or the agent checks the signature).
//! Only the claims doctor reports: never the token.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde::Deserialize;

/// The claims doctor reports and checks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(super) struct Claims {
    /// The issuer: the cluster's OIDC issuer URL.
    #[serde(default)]
    pub(super) iss: String,
    /// `system:serviceaccount:NAMESPACE:NAME`.
    #[serde(default)]
    pub(super) sub: String,
    /// The audiences the token was requested for.
    #[serde(default, deserialize_with = "one_or_many")]
    pub(super) aud: Vec<String>,
    /// Expiry, in seconds since the epoch.
    #[serde(default)]
    pub(super) exp: Option<u64>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(a) => vec![a],
        OneOrMany::Many(a) => a,
    })
}

impl Claims {
    /// The claims of the JWT `token`, or why it is not one.
    pub(super) fn of(token: &str) -> Result<Claims, String> {
        let mut parts = token.split('.');
        let (Some(_), Some(payload), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("not a JWT (three dot-separated base64url parts)".into());
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|e| format!("the JWT's payload is not base64url: {e}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("the JWT's payload is not its claims JSON: {e}"))
    }

    /// The service account as (namespace, name), from `sub`.
    pub(super) fn service_account(&self) -> Option<(String, String)> {
        let rest = self.sub.strip_prefix("system:serviceaccount:")?;
        let (ns, name) = rest.split_once(':')?;
        (!ns.is_empty() && !name.is_empty()).then(|| (ns.to_owned(), name.to_owned()))
    }

    /// Seconds until expiry; negative once expired; `None` without `exp`.
    pub(super) fn expires_in(&self, now: SystemTime) -> Option<i64> {
        let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
        let exp = self.exp?;
        Some(i64::try_from(exp).ok()? - i64::try_from(now).ok()?)
    }

    /// The IAM OIDC provider's name for the issuer (the URL without `https://`).
    pub(super) fn provider_name(&self) -> &str {
        self.iss.strip_prefix("https://").unwrap_or(&self.iss).trim_end_matches('/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b64(r#"{"alg":"RS256"}"#), b64(claims))
    }

    #[test]
    fn reads_the_claims_a_kubelet_token_carries() {
        let c = Claims::of(&jwt(
            r#"{"iss":"https://oidc.eks.eu-west-1.amazonaws.com/id/ABC","sub":"system:serviceaccount:team-a:app","aud":["sts.amazonaws.com"],"exp":1000}"#,
        ))
        .unwrap();
        assert_eq!(c.aud, ["sts.amazonaws.com"]);
        assert_eq!(c.service_account(), Some(("team-a".into(), "app".into())));
        assert_eq!(c.provider_name(), "oidc.eks.eu-west-1.amazonaws.com/id/ABC");
        assert_eq!(c.expires_in(UNIX_EPOCH + std::time::Duration::from_secs(1600)), Some(-600));
        // A single audience may be a string.
        assert_eq!(
            Claims::of(&jwt(r#"{"aud":"pods.eks.amazonaws.com"}"#)).unwrap().aud,
            ["pods.eks.amazonaws.com"]
        );
    }

    #[test]
    fn what_is_not_a_token_is_named() {
        assert_eq!(
            Claims::of("jwt-of-pod-a").unwrap_err(),
            "not a JWT (three dot-separated base64url parts)"
        );
        assert!(Claims::of("a.!!!.c").unwrap_err().starts_with("the JWT's payload is not base64url"));
        assert!(Claims::of(&jwt("[1]")).unwrap_err().starts_with("the JWT's payload is not its claims JSON"));
        assert_eq!(Claims::of(&jwt(r#"{"sub":"admin"}"#)).unwrap().service_account(), None);
    }
}
