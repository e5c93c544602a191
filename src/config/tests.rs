use super::*;

const EXAMPLE: &str = r#"
[server]
socket = "/run/ecr-credd/ecr-credd.sock"
[health]
listen = "127.0.0.1:9466"
[[registry]]
host = "111122223333.dkr.ecr.eu-west-1.amazonaws.com"
role_arn = "arn:aws:iam::111122223333:role/ecr-access-from-b"
[[registry]]
host = "127.0.0.1:5000"
registry_id = "210987654321"
region = "us-east-1"
role_arn = "arn:aws:iam::210987654321:role/ecr-pull"
external_id = "optional"
"#;

fn parse_err(text: &str) -> (usize, String) {
    match parse(text, Path::new("c.toml")) {
        Err(ConfigError::Invalid { line, message, path, .. }) => {
            assert_eq!(path, Path::new("c.toml"));
            (line, message)
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

/// The config the packages install, as shipped.
const SHIPPED: &str = include_str!("../../packaging/config.toml");

#[test]
fn the_shipped_config_parses_as_installed() {
    let c = parse(SHIPPED, Path::new("/etc/ecr-credd/config.toml")).unwrap();
    assert_eq!(c.socket, PathBuf::from("/run/ecr-credd/ecr-credd.sock"));
    assert_eq!(c.health_listen, Some("127.0.0.1:9466".parse().unwrap()));
    assert!(c.serve_unlisted_ecr);
    assert!(c.registries.is_empty());
}

#[test]
fn every_commented_example_in_the_shipped_config_parses() {
    // Uncommenting each example line (a table header or `key = value`)
    // must give a valid config: a user does exactly that.
    let is_example = |l: &str| {
        l.strip_prefix("# ").is_some_and(|rest| {
            rest.starts_with('[') || rest.split_once(" = ").is_some_and(|(k, _)| !k.contains(' '))
        })
    };
    let text: String =
        SHIPPED.lines().map(|l| if is_example(l) { &l[2..] } else { l }).map(|l| format!("{l}\n")).collect();
    let c = parse(&text, Path::new("config.toml")).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let hosts: Vec<&str> = c.registries.iter().map(|r| r.host.as_str()).collect();
    assert_eq!(
        hosts,
        ["111122223333.dkr.ecr.eu-west-1.amazonaws.com", "registry.internal.example", "public.ecr.aws"]
    );
    assert_eq!(c.registries[1].external_id.as_deref(), Some("optional"));
    assert_eq!(c.https_proxy.as_deref(), Some("http://proxy.internal:3128"));
}

#[test]
fn parses_the_documented_example() {
    let c = parse(EXAMPLE, Path::new("c.toml")).unwrap();
    assert_eq!(c.socket, PathBuf::from("/run/ecr-credd/ecr-credd.sock"));
    assert_eq!(c.health_listen, Some("127.0.0.1:9466".parse().unwrap()));
    assert!(c.serve_unlisted_ecr);
    assert_eq!(c.registries.len(), 2);
    let a = &c.registries[0];
    assert_eq!((a.account.as_str(), a.region.as_str()), ("111122223333", "eu-west-1"));
    assert_eq!(a.session_name, "ecr-credd");
    let b = &c.registries[1];
    assert_eq!(b.host, "127.0.0.1:5000");
    assert_eq!((b.account.as_str(), b.region.as_str()), ("210987654321", "us-east-1"));
    assert_eq!(b.external_id.as_deref(), Some("optional"));
}

#[test]
fn empty_config_uses_defaults() {
    let c = parse("", Path::new("c.toml")).unwrap();
    assert_eq!(c.socket, PathBuf::from(DEFAULT_SOCKET_PATH));
    assert_eq!(c.socket_group, SocketGroup::Default);
    assert_eq!(c.socket_group.name(), "ecr-credd");
    assert!(c.registries.is_empty());
}

#[test]
fn hosts_are_normalised() {
    let c = parse(
        "[[registry]]\nhost = \"HTTPS://111122223333.DKR.ECR.eu-west-1.amazonaws.com/\"\n",
        Path::new("c.toml"),
    )
    .unwrap();
    assert_eq!(c.registries[0].host, "111122223333.dkr.ecr.eu-west-1.amazonaws.com");
}

#[test]
fn errors_name_line_and_key() {
    let cases: &[(&str, usize, &str)] = &[
        ("[server]\nsockett = \"/x\"\n", 2, "unknown field `sockett`"),
        ("[[registry]]\nhost = \"a.example\"\nregion = \"us-east-1\"\n", 2, "registry[0].registry_id: required"),
        ("[[registry]]\nhost = \"a.example\"\nregistry_id = \"123\"\n", 3, "registry[0].registry_id: \"123\" is not a 12-digit"),
        ("[[registry]]\nhost = \"a.example\"\nregistry_id = \"111122223333\"\n", 2, "registry[0].region: required"),
        (
            "[[registry]]\nhost = \"111122223333.dkr.ecr.eu-west-1.amazonaws.com\"\nregion = \"us-east-1\"\n",
            3,
            "registry[0].region: \"us-east-1\" contradicts",
        ),
        (
            "[[registry]]\nhost = \"111122223333.dkr.ecr.eu-west-1.amazonaws.com\"\n\nrole_arn = \"arn:aws:iam::1:user/x\"\n",
            4,
            "registry[0].role_arn: \"arn:aws:iam::1:user/x\" is not an IAM role ARN",
        ),
        (
            "[[registry]]\nhost = \"111122223333.dkr.ecr.eu-west-1.amazonaws.com\"\nsession_name = \"a b\"\n",
            3,
            "registry[0].session_name",
        ),
        (
            "[[registry]]\nhost = \"111122223333.dkr.ecr.eu-west-1.amazonaws.com\"\n[[registry]]\nhost = \"111122223333.dkr.ecr.eu-west-1.amazonaws.com/\"\n",
            4,
            "registry[1].host: \"111122223333.dkr.ecr.eu-west-1.amazonaws.com\" is listed twice",
        ),
        ("[[registry]]\nhost = \"bad host\"\n", 2, "registry[0].host: invalid registry host"),
        ("[health]\nlisten = \"nope\"\n", 2, "invalid socket address"),
        ("[health]\nlisten = \"0.0.0.0:9466\"\n", 2, "health.listen: 0.0.0.0:9466 is not a loopback address"),
        // A comment that mentions the key does not move the error's position.
        ("# listen here\n[health]\n\nlisten = \"0.0.0.0:9466\"\n", 4, "is not a loopback address"),
        ("serve_unlisted_ecr = \"yes\"\n", 1, "invalid type"),
        ("[tokens]\nsafety_margin = 5\n", 2, "tokens.safety_margin: 5 is outside 10..=3600 seconds"),
        ("[[registry]]\nrole_arn = \"x\"\n", 1, "missing field `host`"),
        ("[server\n", 1, ""),
        (
            "[[registry]]\nhost = \"111122223333.dkr.ecr.eu-west-1.amazonaws.com\"\nexternal_id = \"abc\"\n",
            3,
            "registry[0].external_id: only makes sense with role_arn",
        ),
        ("[aws]\nsts_region = \"mars\"\n", 2, "aws.sts_region: \"mars\" is not an AWS region name"),
        (
            "[[registry]]\nhost = \"111122223333.dkr.ecr.eu-west-1.amazonaws.com\"\nsts_region = \"EU\"\n",
            3,
            "registry[0].sts_region: \"EU\" is not an AWS region name",
        ),
        ("[aws]\nuse_fips = \"yes\"\n", 2, "invalid type"),
    ];
    for (text, line, needle) in cases {
        let (got_line, msg) = parse_err(text);
        assert_eq!(got_line, *line, "line for {text:?}: {msg}");
        assert!(msg.contains(needle), "message for {text:?} was {msg:?}, wanted {needle:?}");
    }
}

#[test]
fn display_has_file_line_and_column() {
    let err = parse("[server]\nsockett = 1\n", Path::new("/etc/ecr-credd/config.toml")).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("/etc/ecr-credd/config.toml:2:1: "), "{text}");
}

#[test]
fn missing_file_names_the_path() {
    let err = load(Path::new("/nonexistent/ecr-credd.toml")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ecr-credd.toml"), "{err}");
}

#[test]
fn config_others_may_change_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    load_trusted(&path).unwrap();
    for mode in [0o666, 0o664, 0o620] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = load_trusted(&path).unwrap_err().to_string();
        assert!(err.contains(&format!("mode {mode:04o}")) && err.contains("c.toml"), "{err}");
        assert!(err.contains("chmod go-w"), "{err}");
    }
    // Owned by another user: refused even at 0644; root's and our own are fine.
    let p = Path::new("/etc/ecr-credd/config.toml");
    let err = check_trusted(p, 1000, 0o100644, 0).unwrap_err().to_string();
    assert!(err.contains("owner uid 1000") && err.contains("chown root"), "{err}");
    check_trusted(p, 0, 0o100644, 999).unwrap();
    check_trusted(p, 999, 0o100600, 999).unwrap();
}

#[test]
fn ecr_public_is_opt_in_and_fixed_to_us_east_1() {
    let text =
        "[[registry]]\nhost = \"public.ecr.aws\"\n[[registry]]\nhost = \"127.0.0.1:5002\"\npublic = true\n";
    let c = parse(text, Path::new("c.toml")).unwrap();
    for r in &c.registries {
        assert!(r.public, "{}", r.host);
        assert_eq!((r.account.as_str(), r.region.as_str()), (PUBLIC_ACCOUNT, "us-east-1"));
    }
    let (line, msg) = parse_err("[[registry]]\nhost = \"public.ecr.aws\"\nregion = \"eu-west-1\"\n");
    assert_eq!(line, 3);
    assert!(msg.contains("only in us-east-1"), "{msg}");
    let (line, msg) =
        parse_err("[[registry]]\nhost = \"ecr-public.aws.com\"\nregistry_id = \"111122223333\"\n");
    assert_eq!(line, 3);
    assert!(msg.contains("has no registry id"), "{msg}");
    let (line, msg) = parse_err("[[registry]]\nhost = \"public.ecr.aws\"\npublic = false\n");
    assert_eq!(line, 3);
    assert!(msg.contains("is ECR Public"), "{msg}");
    // An unlisted public host is not served: anonymous pulls work without us.
    let c = parse("", Path::new("c.toml")).unwrap();
    assert!(c.registries.is_empty() && RegistryConfig::unlisted("public.ecr.aws").is_none());
}

#[test]
fn proxy_keys() {
    let c =
        parse("[aws]\nhttps_proxy = \"http://proxy:3128\"\nno_proxy = \".internal\"\n", Path::new("c.toml"))
            .unwrap();
    assert_eq!(c.https_proxy.as_deref(), Some("http://proxy:3128"));
    assert_eq!(c.no_proxy.as_deref(), Some(".internal"));
    for secret in ["http://u:pa/ss@proxy:3128", "http://u:pa ss@proxy:3128", "u:pass@proxy:3128"] {
        let (_, msg) = parse_err(&format!("[aws]\nhttps_proxy = \"{secret}\"\n"));
        assert!(
            msg.contains("***@")
                && !msg.contains("pa/ss")
                && !msg.contains("pa ss")
                && !msg.contains("pass@"),
            "{msg}"
        );
    }
    for bad in ["proxy:3128", "socks5://p:1", "http://", "http://p:1/path"] {
        let (line, msg) = parse_err(&format!("[aws]\nhttps_proxy = \"{bad}\"\n"));
        assert_eq!(line, 2, "{bad}");
        assert!(msg.starts_with("aws.https_proxy:"), "{msg}");
    }
}

#[test]
fn fips_dual_stack_and_sts_region() {
    let text = "[aws]\nuse_fips = true\nsts_region = \"eu-central-1\"\n\
        [[registry]]\nhost = \"111122223333.dkr.ecr-fips.us-gov-west-1.amazonaws.com\"\n\
        [[registry]]\nhost = \"111122223333.dkr-ecr.us-west-2.on.aws\"\nsts_region = \"us-west-2\"\n";
    let c = parse(text, Path::new("c.toml")).unwrap();
    assert!(c.use_fips);
    assert_eq!(c.sts_region.as_deref(), Some("eu-central-1"));
    let (fips, dual) = (&c.registries[0], &c.registries[1]);
    assert!(fips.fips && !fips.dual_stack && fips.sts_region.is_none());
    assert!(!dual.fips && dual.dual_stack);
    assert_eq!(dual.sts_region.as_deref(), Some("us-west-2"));
}
