//! Rotation, one end-to-end test per base-credential source: credentials the
//! source replaces are used for the next token. The chain's renewal logic
//! (how far ahead, re-reads, fallbacks) is unit-tested on a manual clock in
//! src/aws/chain/tests.rs; these check the real sources behave as modelled.

use std::path::PathBuf;
use std::time::Duration;

use testbed::sources::{container_endpoint, no_imds, sso_home, sso_portal};
use testbed::*;

/// moto minting 16 s tokens (refreshed every few seconds with a 10 s safety
/// margin) and 610 s web-identity sessions (renewed 10 s after they are
/// issued), and a registry.
struct Bed {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    moto: Moto,
    registry: Registry,
}

impl Bed {
    fn start() -> Bed {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().to_path_buf();
        let moto = Moto::start_with(&home, &[("ECR_TOKEN_TTL", "16"), ("WEB_IDENTITY_TTL", "610")]);
        let registry = Registry::start(&home, PASSWORD);
        Bed { _tmp: tmp, home, moto, registry }
    }

    /// A directory of its own for one daemon.
    fn dir(&self, name: &str) -> PathBuf {
        let dir = self.home.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The registry with the base credentials from `source`, no role.
    fn config(&self, source: &str) -> String {
        let registry = registry_toml(&self.registry.host(), None);
        format!("[tokens]\nsafety_margin = 10\n[aws]\ncredentials = \"{source}\"\n\n{registry}")
    }

    /// Waits until the daemon has logged both keys, then for a token fetched
    /// after that, which the helper serves.
    fn rotated(&self, daemon: &Daemon, first: &str, second: &str) {
        wait_until("credentials read twice, rotated", Duration::from_secs(40), || {
            let log = daemon.proc.output();
            log.contains(first) && log.contains(second)
        });
        self.fetched_again(daemon);
    }

    /// Waits for a GetAuthorizationToken after now; the helper is then served.
    fn fetched_again(&self, daemon: &Daemon) {
        let before = self.moto.count("GetAuthorizationToken");
        wait_until("a token fetched after the rotation", Duration::from_secs(20), || {
            self.moto.count("GetAuthorizationToken") > before
        });
        assert_eq!(daemon.helper("get", &self.registry.host()).0, 0);
    }
}

#[test]
fn a_credential_process_is_asked_again_before_its_keys_expire() {
    require!(Moto, Registry);
    let bed = Bed::start();
    // Roles Anywhere's shape: a new key each time, expiring in 2 minutes.
    let dir = bed.dir("process");
    let script = dir.join("creds.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nn=$(($(cat {count} 2>/dev/null || echo 0) + 1)); echo $n > {count}\n\
             printf '{{\"Version\":1,\"AccessKeyId\":\"AKIAPROCESS%07d\",\"SecretAccessKey\":\"s\",\"SessionToken\":\"t\",\"Expiration\":\"%s\"}}' $n \"$(date -u -d '+120 sec' +%Y-%m-%dT%H:%M:%SZ)\"\n",
            count = dir.join("count").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let aws_config = dir.join("aws-config");
    std::fs::write(&aws_config, format!("[profile rotate]\ncredential_process = {}\n", script.display()))
        .unwrap();
    let mut env = no_imds(&bed.moto);
    env.push(("AWS_CONFIG_FILE", aws_config.display().to_string()));
    let daemon = Daemon::builder(&dir)
        .config(&bed.config("profile:rotate"))
        .env(&env)
        .log("info,ecr_credd=debug")
        .start();
    bed.rotated(&daemon, "AKIAPROCESS0000001", "AKIAPROCESS0000002");
}

#[test]
fn the_container_endpoint_is_asked_again_before_its_keys_expire() {
    require!(Moto, Registry);
    let bed = Bed::start();
    let dir = bed.dir("container");
    let (_endpoint, _, env) = container_endpoint(&dir, &bed.moto, 120);
    let daemon =
        Daemon::builder(&dir).config(&bed.config("container")).env(&env).log("info,ecr_credd=debug").start();
    bed.rotated(&daemon, "ASIACONTAINER0000001", "ASIACONTAINER0000002");
}

#[test]
fn static_keys_rotated_in_a_profile_file_are_used_after_a_reload() {
    require!(Moto, Registry);
    let bed = Bed::start();
    // (Without a reload, within 5 minutes: chain::tests covers the re-read.)
    let dir = bed.dir("static");
    let file = dir.join("credentials");
    let keys =
        |n: u32| format!("[keys]\naws_access_key_id = AKIASTATIC{n:010}\naws_secret_access_key = s{n}\n");
    std::fs::write(&file, keys(1)).unwrap();
    let mut env = no_imds(&bed.moto);
    env.push(("AWS_SHARED_CREDENTIALS_FILE", file.display().to_string()));
    let daemon = Daemon::builder(&dir)
        .config(&bed.config("profile:keys"))
        .env(&env)
        .log("info,ecr_credd=debug")
        .start();
    wait_until("the first key in use", Duration::from_secs(20), || {
        daemon.proc.output().contains("AKIASTATIC0000000001")
    });
    std::fs::write(&file, keys(2)).unwrap();
    daemon.proc.signal("HUP");
    bed.rotated(&daemon, "AKIASTATIC0000000001", "AKIASTATIC0000000002");
}

#[test]
fn a_web_identity_session_is_renewed_with_the_rotated_token_file() {
    require!(Moto, Registry);
    let bed = Bed::start();
    // IRSA: the kubelet rotates the projected token; the renewal reads it again.
    let dir = bed.dir("web");
    let token = dir.join("token");
    std::fs::write(&token, "projected-token-1").unwrap();
    let mut env = no_imds(&bed.moto);
    env.push(("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()));
    env.push(("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/irsa-node".into()));
    let daemon = Daemon::builder(&dir).config(&bed.config("web-identity")).env(&env).start();
    wait_until("a web identity session", Duration::from_secs(20), || {
        bed.moto.count("AssumeRoleWithWebIdentity") >= 1
    });
    assert_eq!(bed.moto.last_web_identity_token(), "projected-token-1");
    std::fs::write(&token, "projected-token-2").unwrap();
    wait_until("a session renewed with the rotated token", Duration::from_secs(40), || {
        bed.moto.last_web_identity_token() == "projected-token-2"
    });
    bed.fetched_again(&daemon);
}

#[test]
fn an_sso_profile_asks_the_portal_again_before_its_role_credentials_end() {
    require!(Moto, Registry);
    let bed = Bed::start();
    // Role credentials of 610 s, asked for again with the cached login 10
    // minutes before they end.
    let dir = bed.dir("sso");
    let (_portal, port) = sso_portal(&bed.home, 610);
    let mut env = no_imds(&bed.moto);
    env.extend(sso_home(&dir, port));
    let daemon = Daemon::builder(&dir)
        .config(&bed.config("profile:sso"))
        .env(&env)
        .log("info,ecr_credd=debug")
        .start();
    bed.rotated(&daemon, "ASIASSO0000000000001", "ASIASSO0000000000002");
}
