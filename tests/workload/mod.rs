//! What the per-workload tests share: the roles pods name, their
//! service-account tokens, and `doctor --service-account-token`.

use std::path::Path;

use testbed::{doctor, Daemon, ACCOUNT, PASSWORD};

/// The ARN of role `name` in the test account.
pub(crate) fn role(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{name}")
}

/// A service-account token as the API server issues it (unsigned here:
/// neither moto nor the agent double checks the signature).
pub(crate) fn jwt(aud: &str, exp_from_now: i64) -> String {
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
pub(crate) fn doctor_pod(
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

/// Fails the test unless `out` has every one of `lines`.
pub(crate) fn expect(out: &str, lines: &[&str]) {
    for line in lines {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
}
