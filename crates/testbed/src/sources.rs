//! Base-credential sources other than IMDS, as doubles: the container
//! credentials endpoint (EKS Pod Identity's shape) and an SSO portal with a
//! cached `aws sso login`.

use std::path::Path;
use std::process::Command;

use crate::aws::{Moto, ACCOUNT};
use crate::paths::{python, script};
use crate::process::{clean_command, free_port, wait_port, Proc};

/// The environment of a daemon whose IMDS is a dead port, so a token can
/// only have come from the source under test.
pub fn no_imds(moto: &Moto) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", format!("http://127.0.0.1:{}", free_port())),
        ("AWS_ENDPOINT_URL", moto.endpoint()),
    ]
}

/// The container credentials double in `dir`, answering the token it writes
/// to a file with credentials that expire after `expiry` seconds; the
/// process, its port and the environment that points at it.
pub fn container_endpoint(dir: &Path, moto: &Moto, expiry: u32) -> (Proc, u16, Vec<(&'static str, String)>) {
    std::fs::create_dir_all(dir).unwrap();
    let port = free_port();
    let mut cmd = clean_command(python(), dir);
    cmd.arg(script("container_creds.py"))
        .arg(port.to_string())
        .arg("pod-identity-token")
        .env("EXPIRY_SECONDS", expiry.to_string());
    let endpoint = Proc::spawn("container credentials", &mut cmd);
    wait_port(port, "container credentials double");
    let token_file = dir.join("eks-pod-identity-token");
    std::fs::write(&token_file, "pod-identity-token").unwrap();
    let mut env = no_imds(moto);
    env.push(("AWS_CONTAINER_CREDENTIALS_FULL_URI", format!("http://127.0.0.1:{port}/creds")));
    env.push(("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token_file.display().to_string()));
    (endpoint, port, env)
}

/// An SSO profile `sso` after `aws sso login`: the login's cached token in
/// `dir`, and the portal (a double on `portal_port`) that turns it into role
/// credentials; the environment that points at both.
pub fn sso_home(dir: &Path, portal_port: u16) -> Vec<(&'static str, String)> {
    let start_url = "https://example.awsapps.com/start";
    let out =
        Command::new("sh").args(["-c", &format!("printf %s '{start_url}' | sha1sum")]).output().unwrap();
    let hash = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_owned();
    let cache = dir.join(".aws/sso/cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(
        cache.join(format!("{hash}.json")),
        format!("{{\"accessToken\":\"sso-access-token\",\"expiresAt\":\"2099-01-01T00:00:00Z\",\"region\":\"us-east-1\",\"startUrl\":\"{start_url}\"}}"),
    )
    .unwrap();
    let config = dir.join("aws-config");
    std::fs::write(
        &config,
        format!(
            "[profile sso]\nsso_start_url = {start_url}\nsso_region = us-east-1\nsso_account_id = {ACCOUNT}\nsso_role_name = ecr-pull\n"
        ),
    )
    .unwrap();
    vec![
        ("AWS_CONFIG_FILE", config.display().to_string()),
        ("AWS_ENDPOINT_URL_SSO", format!("http://127.0.0.1:{portal_port}")),
    ]
}

/// The SSO portal double, whose role credentials expire after `expiry` seconds.
pub fn sso_portal(home: &Path, expiry: u32) -> (Proc, u16) {
    let port = free_port();
    let mut cmd = clean_command(python(), home);
    cmd.arg(script("sso_portal.py"))
        .arg(port.to_string())
        .arg("sso-access-token")
        .env("EXPIRY_SECONDS", expiry.to_string());
    let portal = Proc::spawn("SSO portal", &mut cmd);
    wait_port(port, "SSO portal double");
    (portal, port)
}

/// The EKS Pod Identity Agent double in `dir` on 127.0.0.1, knowing the
/// service-account tokens in `associations` (token → `{"account", "role"}`);
/// the process and the agent's credentials URL.
pub fn pod_identity_agent(dir: &Path, associations: &serde_json::Value) -> (Proc, String) {
    pod_identity_agent_on(dir, associations, "127.0.0.1")
}

/// The same double on `address` (`::1` for the agent's IPv6 address).
pub fn pod_identity_agent_on(dir: &Path, associations: &serde_json::Value, address: &str) -> (Proc, String) {
    let port = free_port();
    let mut cmd = clean_command(python(), dir);
    cmd.arg(script("pod_identity_agent.py")).arg(port.to_string()).arg(associations.to_string()).arg(address);
    let agent = Proc::spawn("pod identity agent", &mut cmd);
    let host = if address.contains(':') { format!("[{address}]") } else { address.to_owned() };
    let url = format!("http://{host}:{port}/v1/credentials");
    crate::process::wait_until(
        &format!("the agent double at {url}"),
        std::time::Duration::from_secs(10),
        || std::net::TcpStream::connect(format!("{host}:{port}")).is_ok(),
    );
    (agent, url)
}
