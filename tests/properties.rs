//! Property tests over every parser that takes outside input: the socket
//! request parser, the helper's stdin handling, the config parser and the
//! hostname parser. The same targets are fuzzed by `make fuzz`.

use std::path::Path;

use ecr_credd::config;
use ecr_credd_client::helper;
use ecr_credd_client::registry::{normalize_host, parse_ecr_host};
use ecr_credd_client::wire::{self, Request, RequestBody};
use proptest::prelude::*;

const SUFFIXES: &[&str] = &[
    "amazonaws.com",
    "amazonaws.com.cn",
    "amazonaws.eu",
    "on.aws",
    "on.amazonwebservices.com.cn",
    "sc2s.sgov.gov",
    "c2s.ic.gov",
    "cloud.adc-e.uk",
    "csp.hci.ic.gov",
];

fn ecr_host() -> impl Strategy<Value = (String, String, String)> {
    (
        "[0-9]{12}",
        "[a-z]{2}(-[a-z]{2,6}){1,2}-[1-9]",
        prop::sample::select(SUFFIXES),
        prop::sample::select(&["dkr.ecr", "dkr-ecr", "dkr.ecr-fips", "dkr-ecr-fips"][..]),
    )
        .prop_map(|(account, region, suffix, service)| {
            (format!("{account}.{service}.{region}.{suffix}"), account, region)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn request_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = wire::decode_request(&bytes);
        let _ = wire::decode_response(&bytes);
    }

    #[test]
    fn requests_round_trip(host in "\\PC{0,300}") {
        let req = Request::new(RequestBody::Get { host });
        prop_assert_eq!(wire::decode_request(&wire::encode(&req)).unwrap(), req);
    }

    #[test]
    fn helper_answers_any_stdin_by_the_protocol(
        input in prop::collection::vec(any::<u8>(), 0..4096),
        action in prop::sample::select(&["get", "store", "erase", "list", "version", "bogus"][..]),
    ) {
        let mut out = Vec::new();
        let code = helper::run(&[action.to_owned()], &mut &input[..], &mut out, Path::new("/nonexistent/ecr-credd.sock"));
        let text = String::from_utf8(out).expect("the helper writes UTF-8");
        prop_assert!(code == 0 || code == 1);
        if code == 1 {
            // One line, either the exact not-found text or a reason.
            prop_assert!(text.ends_with('\n') && text.trim_end().lines().count() == 1, "{:?}", text);
            prop_assert!(text.trim() == helper::NOT_FOUND || text.starts_with("ecr-credd: ") || text.starts_with("Usage:"));
        }
    }

    #[test]
    fn config_parser_never_panics(text in "\\PC{0,600}") {
        let _ = config::parse(&text, Path::new("c.toml"));
    }

    #[test]
    fn generated_configs_parse_to_what_they_say((host, account, region) in ecr_host(), role in "[a-zA-Z0-9+=,.@_-]{1,64}") {
        let text = format!("[[registry]]\nhost = \"https://{}/\"\nrole_arn = \"arn:aws:iam::{account}:role/{role}\"\n", host.to_uppercase());
        let c = config::parse(&text, Path::new("c.toml")).unwrap();
        prop_assert_eq!(&c.registries[0].host, &host);
        prop_assert_eq!(&c.registries[0].account, &account);
        prop_assert_eq!(&c.registries[0].region, &region);
    }

    #[test]
    fn normalize_is_idempotent(input in "\\PC{0,300}") {
        if let Ok(host) = normalize_host(&input) {
            prop_assert_eq!(normalize_host(&host).unwrap(), host.clone());
            prop_assert!(!host.contains('/') && !host.contains('@'));
        }
    }

    #[test]
    fn every_ecr_form_parses_and_look_alikes_do_not(
        (host, account, region) in ecr_host(),
        port in prop::option::of(1u16..),
        junk in "[a-z]{1,10}",
    ) {
        let with_port = match port { Some(p) => format!("{host}:{p}"), None => host.clone() };
        let parsed = parse_ecr_host(&normalize_host(&format!("https://{with_port}/v2/")).unwrap()).unwrap();
        prop_assert_eq!(parsed.account, account);
        prop_assert_eq!(parsed.region, region);
        let evil_suffix = format!("{host}.{junk}.example");
        let evil_prefix = format!("{junk}.{host}");
        let evil_infix = host.replacen(".dkr", &format!("{junk}.dkr"), 1);
        prop_assert_eq!(parse_ecr_host(&evil_suffix), None);
        prop_assert_eq!(parse_ecr_host(&evil_prefix), None);
        prop_assert_eq!(parse_ecr_host(&evil_infix), None);
    }

    /// The default and empty ports name the same registry as the bare host,
    /// and a `://` after anything but a scheme never hides the real host.
    #[test]
    fn ports_and_schemes_cannot_alias_another_host(
        (host, _, _) in ecr_host(),
        scheme in prop::sample::select(&["", "https://", "http://", "oci+https://"][..]),
        junk in "[a-z0-9.-]{1,20}(/[a-z0-9.]{0,10})?",
        path in prop::sample::select(&["", "/", "/v2/", "/ns/repo:tag"][..]),
    ) {
        for port in ["", ":", ":443"] {
            prop_assert_eq!(normalize_host(&format!("{scheme}{host}{port}{path}")).unwrap(), host.clone());
        }
        let other = normalize_host(&format!("{scheme}{host}:8443{path}")).unwrap();
        prop_assert_ne!(other, host.clone());
        let smuggled = format!("{junk}/x://{host}");
        if let Ok(h) = normalize_host(&smuggled) {
            prop_assert_ne!(parse_ecr_host(&h).map(|e| e.account), parse_ecr_host(&host).map(|e| e.account));
        }
    }
}
