//! Golden tests of the socket protocol: every message byte for byte, and
//! messages recorded from a newer peer against today's decoder (packages
//! replace the daemon and the helpers at different moments).

use ecr_credd_client::secret::Secret;
use ecr_credd_client::wire::*;
use serde::Serialize;

fn golden<T: Serialize>(msg: &T, want: &str) {
    assert_eq!(String::from_utf8(encode(msg).to_vec()).unwrap(), want);
}

/// Messages recorded from a newer peer, against today's decoder.
#[test]
fn newer_peers_messages_decode_to_the_catch_alls() {
    let r = decode_response(
        b"{\"v\":1,\"type\":\"error\",\"kind\":\"throttled\",\"message\":\"ECR is throttling; retry in 3s\"}\n",
    )
    .unwrap();
    let message = "ECR is throttling; retry in 3s".to_owned();
    assert_eq!(r.body, ResponseBody::Error { kind: ErrorKind::Other, message });
    let r = decode_response(b"{\"v\":1,\"type\":\"credentials_v2\",\"token\":{\"parts\":[1]}}\n").unwrap();
    assert_eq!(r.body, ResponseBody::Unknown);
    let q = decode_request(b"{\"v\":1,\"op\":\"rotate\",\"host\":\"x\"}\n").unwrap();
    assert_eq!(q.body, RequestBody::Unsupported);
    // New fields in known messages are ignored.
    let q = decode_request(b"{\"v\":1,\"op\":\"get\",\"host\":\"h\",\"trace_id\":\"abc\"}").unwrap();
    assert_eq!(q.body, RequestBody::Get { host: "h".into() });
    let r = decode_response(b"{\"v\":1,\"type\":\"hosts\",\"hosts\":[\"a\"],\"generated_at\":1}").unwrap();
    assert_eq!(r.body, ResponseBody::Hosts { hosts: vec!["a".into()] });
}

#[test]
fn golden_requests() {
    let get = Request::new(RequestBody::Get { host: "https://127.0.0.1:5000".into() });
    golden(&get, "{\"v\":1,\"op\":\"get\",\"host\":\"https://127.0.0.1:5000\"}\n");
    golden(&Request::new(RequestBody::List), "{\"v\":1,\"op\":\"list\"}\n");
    golden(&Request::new(RequestBody::Status), "{\"v\":1,\"op\":\"status\"}\n");
    for msg in [get, Request::new(RequestBody::List)] {
        assert_eq!(decode_request(&encode(&msg)).unwrap(), msg);
    }
}

#[test]
fn golden_responses() {
    let creds = Response::new(ResponseBody::Credentials {
        host: "127.0.0.1:5000".into(),
        username: "AWS".into(),
        secret: Secret::from("pw"),
        expires_at: 1_800_000_000,
    });
    golden(
        &creds,
        "{\"v\":1,\"type\":\"credentials\",\"host\":\"127.0.0.1:5000\",\"username\":\"AWS\",\"secret\":\"pw\",\"expires_at\":1800000000}\n",
    );
    let hosts =
        Response::new(ResponseBody::Hosts { hosts: vec!["a.example".into(), "b.example:5000".into()] });
    golden(&hosts, "{\"v\":1,\"type\":\"hosts\",\"hosts\":[\"a.example\",\"b.example:5000\"]}\n");
    let cases = [
        (ErrorKind::NotFound, "not_found"),
        (ErrorKind::Unavailable, "unavailable"),
        (ErrorKind::BadRequest, "bad_request"),
        (ErrorKind::Forbidden, "forbidden"),
    ];
    for (kind, name) in cases {
        let err = Response::error(kind, "why");
        golden(&err, &format!("{{\"v\":1,\"type\":\"error\",\"kind\":\"{name}\",\"message\":\"why\"}}\n"));
        assert_eq!(decode_response(&encode(&err)).unwrap(), err);
    }
    let status = Response::new(ResponseBody::Status {
        ready: false,
        credential_source: None,
        registries: vec![RegistryStatus {
            host: "127.0.0.1:5000".into(),
            account: "210987654321".into(),
            region: "us-east-1".into(),
            role_arn: Some("arn:aws:iam::210987654321:role/r".into()),
            configured: true,
            ready: false,
            expires_at: None,
            last_refresh: Some(1_800_000_000),
            next_refresh: Some(1_800_000_030),
            consecutive_failures: 2,
            last_error: Some("why".into()),
        }],
    });
    golden(
        &status,
        concat!(
            "{\"v\":1,\"type\":\"status\",\"ready\":false,\"registries\":[{\"host\":\"127.0.0.1:5000\",",
            "\"account\":\"210987654321\",\"region\":\"us-east-1\",\"role_arn\":\"arn:aws:iam::210987654321:role/r\",",
            "\"configured\":true,\"ready\":false,\"expires_at\":null,\"last_refresh\":1800000000,",
            "\"next_refresh\":1800000030,\"consecutive_failures\":2,\"last_error\":\"why\"}]}\n"
        ),
    );
    for msg in [creds, hosts, status] {
        assert_eq!(decode_response(&encode(&msg)).unwrap(), msg);
    }
}

#[test]
fn tolerates_unknown_fields_and_rejects_other_versions() {
    let req = decode_request(b"{\"v\":1,\"op\":\"list\",\"future\":true}").unwrap();
    assert_eq!(req.body, RequestBody::List);
    assert!(matches!(decode_request(b"{\"v\":2,\"op\":\"list\"}"), Err(WireError::Version { got: 2 })));
    assert!(matches!(decode_request(b"garbage"), Err(WireError::Malformed(_))));
    // An op from a newer client is not malformed: the daemon says it is unsupported.
    assert_eq!(decode_request(b"{\"v\":1,\"op\":\"launch\"}").unwrap().body, RequestBody::Unsupported);
    assert!(matches!(decode_request(b"{\"v\":1,\"op\":\"get\"}"), Err(WireError::Malformed(_))));
}

#[test]
fn debug_never_shows_the_secret() {
    let creds = Response::new(ResponseBody::Credentials {
        host: "h".into(),
        username: "AWS".into(),
        secret: Secret::from("s3cr3t-value"),
        expires_at: 0,
    });
    assert!(!format!("{creds:?}").contains("s3cr3t-value"));
}
