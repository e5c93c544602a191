//! Emulated AWS: moto (STS, ECR, IAM) behind our launcher, and our IMDSv2 double.

use std::path::Path;

use crate::http::{http, http_with};
use crate::paths::{python, script};
use crate::process::{clean_command, free_port, wait_port, Proc};

/// The account moto's token for a loopback registry is minted for.
pub const ACCOUNT: &str = "210987654321";
/// The password moto mints for [`ACCOUNT`].
pub const PASSWORD: &str = "210987654321-auth-token";
/// The role in [`ACCOUNT`] most tests assume.
pub const ROLE: &str = "arn:aws:iam::210987654321:role/ecr-pull";
/// The IMDS double's instance account; an unlisted ECR host in it.
pub const ECR_HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

/// moto with the launcher's fixes, and its call counter.
pub struct Moto {
    /// Its API port.
    pub port: u16,
    stats_port: u16,
    _proc: Proc,
}

impl Moto {
    /// moto with the launcher's defaults.
    pub fn start(home: &Path) -> Moto {
        Moto::start_with(home, &[])
    }

    /// With launcher settings such as ECR_TOKEN_TTL or ECR_ROTATE_PASSWORD.
    pub fn start_with(home: &Path, env: &[(&str, &str)]) -> Moto {
        let (port, stats_port) = (free_port(), free_port());
        let mut cmd = clean_command(python(), home);
        cmd.arg(script("moto_launcher.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("STATS_PORT", stats_port.to_string())
            .envs(env.iter().copied());
        let proc = Proc::spawn("moto", &mut cmd);
        wait_port(port, "moto");
        wait_port(stats_port, "moto stats");
        Moto { port, stats_port, _proc: proc }
    }

    fn stats(&self) -> serde_json::Value {
        let (_, body) = http(self.stats_port, "GET", "/", "");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("moto stats {body:?}: {e}"))
    }

    /// (AssumeRole, GetAuthorizationToken) calls so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.count("AssumeRole"), self.count("GetAuthorizationToken"))
    }

    /// Calls of one kind so far (AssumeRole, GetAuthorizationToken, GetAuthorizationTokenPublic, GetCallerIdentity).
    pub fn count(&self, call: &str) -> u64 {
        self.stats()[call].as_u64().unwrap_or_else(|| panic!("moto counts no {call}"))
    }

    /// The web identity token the last AssumeRoleWithWebIdentity carried.
    pub fn last_web_identity_token(&self) -> String {
        self.stats()["LastWebIdentityToken"].as_str().unwrap_or_default().to_owned()
    }

    /// Its base URL, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self._proc.pid()
    }
}

/// Our IMDSv2 double.
pub struct Imds {
    /// Its port.
    pub port: u16,
    _proc: Proc,
}

impl Imds {
    /// The double with its default instance credentials.
    pub fn start(home: &Path) -> Imds {
        Imds::start_with(home, &[])
    }

    /// With settings such as IMDS_EXPIRY_SECONDS.
    pub fn start_with(home: &Path, env: &[(&str, &str)]) -> Imds {
        let port = free_port();
        let mut cmd = clean_command(python(), home);
        cmd.arg(script("imds_double.py")).arg(port.to_string()).envs(env.iter().copied());
        let proc = Proc::spawn("imds", &mut cmd);
        wait_port(port, "imds double");
        Imds { port, _proc: proc }
    }

    /// Its base URL, for `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// POST /_control/NAME with BODY (fail on|off, delay SECONDS, rotate).
    pub fn control(&self, name: &str, body: &str) {
        assert_eq!(http(self.port, "POST", &format!("/_control/{name}"), body).0, 200);
    }

    /// IMDS calls answered so far.
    pub fn calls(&self) -> u64 {
        let (_, body) = http(self.port, "GET", "/_control/stats", "");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["calls"].as_u64().unwrap()
    }

    /// The current (SecretAccessKey, Token), read the way the SDK reads them.
    pub fn secrets(&self) -> (String, String) {
        let ttl = [("X-aws-ec2-metadata-token-ttl-seconds", "60")];
        let (_, token) = http_with(self.port, "PUT", "/latest/api/token", &ttl, "");
        let session = [("X-aws-ec2-metadata-token", token.as_str())];
        let path = "/latest/meta-data/iam/security-credentials/ecr-credd-instance";
        let (_, body) = http_with(self.port, "GET", path, &session, "");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        (v["SecretAccessKey"].as_str().unwrap().into(), v["Token"].as_str().unwrap().into())
    }
}

/// moto with IAM enforced, an instance role allowed only `allow`, and a
/// registry role with no permissions; IMDS serves the instance role's session.
/// Returns the registry role's ARN too.
pub fn iam_bed(dir: &Path, allow: &str) -> (Moto, Imds, String) {
    let moto = Moto::start(dir);
    let out = clean_command(python(), dir)
        .arg(script("moto_iam.py"))
        .arg(moto.endpoint())
        .arg(allow)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let keys: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = |k: &str| keys[k].as_str().unwrap().to_owned();
    let (akid, secret, token) = (key("AccessKeyId"), key("SecretAccessKey"), key("Token"));
    let imds = Imds::start_with(
        dir,
        &[("IMDS_ACCESS_KEY_ID", &akid), ("IMDS_SECRET_ACCESS_KEY", &secret), ("IMDS_TOKEN", &token)],
    );
    assert_eq!(http(moto.port, "POST", "/moto-api/reset-auth", "0").0, 200);
    (moto, imds, key("RoleArn"))
}
