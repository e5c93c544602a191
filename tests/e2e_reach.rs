//! Beyond one registry: two accounts in different regions with their own
//! roles, ECR Public, and AWS reached only through an HTTPS proxy.

use testbed::tls_proxy::TlsProxy;
use testbed::*;

const ACCOUNT_A: &str = "111111111111";
const ACCOUNT_B: &str = "222222222222";

/// The secret served for `host`; the get must succeed.
fn secret_of(daemon: &Daemon, host: &str) -> String {
    daemon.secret(host).unwrap_or_else(|| panic!("get {host}: {:?}", daemon.helper("get", host)))
}

#[test]
fn two_accounts_and_ecr_public_each_get_their_own_token() {
    require!(Moto, Registry, Skopeo);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let (moto, imds) = (Moto::start(home), Imds::start(home));
    let a = Registry::start(home, &format!("{ACCOUNT_A}-auth-token"));
    let b = Registry::start(home, &format!("{ACCOUNT_B}-auth-token"));
    let public = Registry::start(home, "public-auth-token");
    let config = format!(
        "\
         [[registry]]\nhost = \"{}\"\nregistry_id = \"{ACCOUNT_A}\"\nregion = \"us-west-2\"\nrole_arn = \"arn:aws:iam::{ACCOUNT_A}:role/pull-a\"\n\
         [[registry]]\nhost = \"{}\"\nregistry_id = \"{ACCOUNT_B}\"\nregion = \"eu-west-1\"\nrole_arn = \"arn:aws:iam::{ACCOUNT_B}:role/pull-b\"\n\
         [[registry]]\nhost = \"{}\"\npublic = true\n",
        a.host(),
        b.host(),
        public.host()
    );
    let daemon = Daemon::builder(home).config(&config).env(&Daemon::aws_env(&moto, &imds)).start();

    assert_eq!(secret_of(&daemon, &a.host()), format!("{ACCOUNT_A}-auth-token"));
    assert_eq!(secret_of(&daemon, &b.host()), format!("{ACCOUNT_B}-auth-token"));
    assert_eq!(secret_of(&daemon, &public.host()), "public-auth-token");

    // Each registry accepts only its own account's password, so a push that
    // succeeds proves the right token reached the right registry.
    let oci = make_oci_image(home);
    let auth = helper_auth_file(home, &[&a.host(), &b.host(), &public.host()]);
    for registry in [&a, &b, &public] {
        let dest = format!("docker://{}/demo:v1", registry.host());
        let push = skopeo_copy(home, &auth, &daemon.socket, &oci, &dest);
        assert!(push.status.success(), "push to {} failed: {}", registry.host(), output_text(&push));
    }

    assert_eq!(moto.count("AssumeRole"), 2, "one AssumeRole per role");
    assert_eq!(moto.count("GetAuthorizationToken"), 2, "one token per private registry");
    assert_eq!(moto.count("GetAuthorizationTokenPublic"), 1, "one ECR Public token");
    // ECR Public is opt-in: the real public host is not served unless listed.
    let (code, out, _) = daemon.helper("get", "public.ecr.aws");
    assert_eq!((code, out.trim()), (1, "credentials not found in native keychain"));
}

#[test]
fn aws_calls_go_through_the_https_proxy_and_imds_does_not() {
    require!(Moto, Registry);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let (moto, imds) = (Moto::start(home), Imds::start(home));
    let proxy = TlsProxy::start(home, &moto);
    let public = Registry::start(home, "public-auth-token");
    let public_host = public.host();
    let public_host = public_host.as_str();
    let registries = format!(
        "{}[[registry]]\nhost = \"{public_host}\"\npublic = true\n",
        registry_toml(ALIAS, Some(ROLE))
    );
    // No AWS_ENDPOINT_URL: the daemon asks for the real AWS hostnames, and
    // only the proxy knows where they are. HTTP_PROXY too, which IMDS ignores.
    let env = vec![
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint()),
        ("HTTPS_PROXY", proxy.url()),
        ("HTTP_PROXY", proxy.url()),
        ("SSL_CERT_FILE", proxy.ca.display().to_string()),
    ];
    let daemon = Daemon::builder(home).config(&registries).env(&env).start();
    assert_eq!(secret_of(&daemon, "127.0.0.1:5000"), PASSWORD);
    assert_eq!(secret_of(&daemon, public_host), "public-auth-token");

    let stats = proxy.stats();
    let tunnels = |host: &str| stats[host].as_u64().unwrap_or(0);
    assert!(tunnels("sts.us-east-1.amazonaws.com") + tunnels("sts.amazonaws.com") >= 1, "{stats}");
    assert!(tunnels("api.ecr.us-east-1.amazonaws.com") >= 1, "{stats}");
    assert!(tunnels("api.ecr-public.us-east-1.amazonaws.com") >= 1, "{stats}");
    assert_eq!(stats["plain"], 0, "IMDS must not go through the proxy: {stats}");
    assert!(imds.calls() >= 2, "IMDS was asked directly");
    assert_eq!(moto.count("GetAuthorizationToken"), 1);
    let log = daemon.proc.output();
    assert!(log.contains("STS and ECR calls go through the proxy"), "{log}");
    drop(daemon);

    // The config key works without the environment, and credentials in the
    // proxy URL never reach the log.
    let with_key =
        format!("[aws]\nhttps_proxy = \"http://user:s3cret@127.0.0.1:{}\"\n\n{registries}", proxy.port);
    let env = vec![
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint()),
        ("SSL_CERT_FILE", proxy.ca.display().to_string()),
    ];
    let dir = home.join("second");
    std::fs::create_dir_all(&dir).unwrap();
    let daemon = Daemon::builder(&dir).config(&with_key).env(&env).log("debug").start();
    assert_eq!(secret_of(&daemon, "127.0.0.1:5000"), PASSWORD);
    assert_eq!(moto.count("GetAuthorizationToken"), 2);
    let log = daemon.proc.output();
    assert!(log.contains("***@127.0.0.1"), "{log}");
    assert!(!log.contains("s3cret"), "the proxy password leaked into the log");

    // doctor takes the same path: proxy from the config, ECR Public's API,
    // then the registry itself with the token.
    let config = Daemon::write_config(&dir, &with_key);
    let out = clean_command(daemon_bin(), &dir)
        .args(["doctor", "--config"])
        .arg(&config)
        .envs(env)
        .output()
        .unwrap();
    let report = output_text(&out);
    assert!(report.contains(&format!("ok   ecr-public:GetAuthorizationToken [{public_host}]")), "{report}");
    assert!(report.contains("ok   ecr:GetAuthorizationToken [127.0.0.1:5000]"), "{report}");
    assert!(!report.contains("s3cret"), "{report}");
    drop(daemon);

    // NO_PROXY wins for the hosts it names: STS is then tried directly (a DNS
    // failure here, said so), and the proxy sees no new tunnel.
    let tunnels = |s: &serde_json::Value| -> u64 {
        s.as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.ends_with(".amazonaws.com"))
            .map(|(_, v)| v.as_u64().unwrap())
            .sum()
    };
    let before = tunnels(&proxy.stats());
    let env = vec![
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint()),
        ("HTTPS_PROXY", proxy.url()),
        ("NO_PROXY", ".amazonaws.com".into()),
        ("SSL_CERT_FILE", proxy.ca.display().to_string()),
    ];
    let dir = home.join("third");
    std::fs::create_dir_all(&dir).unwrap();
    let daemon = Daemon::builder(&dir).config(&registries).env(&env).start();
    let (code, out, _) = daemon.helper("get", "127.0.0.1:5000");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("sts:AssumeRole on") && out.contains("dns error"), "{out}");
    assert_eq!(tunnels(&proxy.stats()), before, "NO_PROXY hosts must not be tunnelled");
}

/// The hosts a proxy saw tunnels to (its stats, less the counters).
fn tunnelled(proxy: &TlsProxy) -> std::collections::BTreeSet<String> {
    let stats = proxy.stats();
    let map = stats.as_object().unwrap();
    map.iter()
        .filter(|(k, v)| !k.starts_with("plain") && v.as_u64().unwrap_or(0) > 0)
        .map(|(k, _)| k.clone())
        .collect()
}

#[test]
fn endpoints_are_fips_dual_stack_and_sts_in_the_instances_region() {
    require!(Moto);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let moto = Moto::start(home);
    // The instance runs in eu-west-1; its registries are elsewhere.
    let imds = Imds::start_with(home, &[("IMDS_REGION", "eu-west-1")]);
    let run = |dir: &str, config: &str| {
        let dir = home.join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let proxy = TlsProxy::start(&dir, &moto);
        let env = vec![
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint()),
            ("HTTPS_PROXY", proxy.url()),
            ("SSL_CERT_FILE", proxy.ca.display().to_string()),
        ];
        let daemon = Daemon::builder(&dir).config(config).env(&env).start();
        (daemon, proxy)
    };
    let fips_host = format!("{ACCOUNT}.dkr.ecr-fips.us-east-1.amazonaws.com");
    let dual_host = format!("{ACCOUNT}.dkr-ecr.us-west-2.on.aws");
    let plain_host = format!("{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com");
    let config = format!(
        "[[registry]]\nhost = \"{fips_host}\"\nrole_arn = \"{ROLE}\"\n\
         [[registry]]\nhost = \"{dual_host}\"\n\
         [[registry]]\nhost = \"{plain_host}\"\nrole_arn = \"{ROLE}-2\"\nsts_region = \"us-west-2\"\n"
    );
    let (daemon, proxy) = run("hosts", &config);
    for host in [&fips_host, &dual_host, &plain_host] {
        assert_eq!(secret_of(&daemon, host), PASSWORD, "{host}");
    }
    let seen = tunnelled(&proxy);
    eprintln!("tunnels for a FIPS, a dual-stack and a plain host: {seen:?}");
    for want in [
        "sts-fips.eu-west-1.amazonaws.com", // the FIPS host's AssumeRole, in the instance's region
        "api.ecr-fips.us-east-1.amazonaws.com", // its GetAuthorizationToken
        "ecr.us-west-2.api.aws",            // the dual-stack host's
        "sts.us-west-2.amazonaws.com",      // sts_region for the plain host's role
        "api.ecr.us-east-1.amazonaws.com",  // and its token
    ] {
        assert!(seen.contains(want), "{want} not contacted: {seen:?}");
    }
    // Nothing else, but the one identity lookup for /status (instance region).
    let allowed = [
        "sts-fips.eu-west-1.amazonaws.com",
        "api.ecr-fips.us-east-1.amazonaws.com",
        "ecr.us-west-2.api.aws",
        "sts.us-west-2.amazonaws.com",
        "api.ecr.us-east-1.amazonaws.com",
        "sts.eu-west-1.amazonaws.com",
    ];
    assert!(seen.iter().all(|h| allowed.contains(&h.as_str())), "unexpected endpoints: {seen:?}");
    drop(daemon);

    // [aws] use_fips: every STS and ECR call goes to a FIPS endpoint.
    let config =
        format!("[aws]\nuse_fips = true\n\n[[registry]]\nhost = \"{plain_host}\"\nrole_arn = \"{ROLE}\"\n");
    let (daemon, proxy) = run("use-fips", &config);
    assert_eq!(secret_of(&daemon, &plain_host), PASSWORD);
    let seen = tunnelled(&proxy);
    eprintln!("tunnels with use_fips: {seen:?}");
    assert!(
        seen.contains("sts-fips.eu-west-1.amazonaws.com")
            && seen.contains("api.ecr-fips.us-east-1.amazonaws.com"),
        "{seen:?}"
    );
    assert!(seen.iter().all(|h| h.contains("-fips.")), "a non-FIPS endpoint was contacted: {seen:?}");
}
