//! The socket protocol against its snapshots in `golden/`: every message byte
//! for byte, and messages recorded from a newer peer against today's decoder
//! (packages replace the daemon and the helpers at different moments).

use super::*;
use crate::golden::assert_golden;
use crate::secret::Secret;

fn golden<T: Serialize>(name: &str, msg: &T) {
    assert_golden(name, &encode(msg));
}

/// Messages recorded from a newer peer, against today's decoder.
#[test]
fn newer_peers_messages_decode_to_the_catch_alls() {
    let r = decode_response(
        br#"{"v":1,"type":"error","kind":"throttled","message":"ECR is throttling; retry in 3s"}"#,
    )
    .unwrap();
    let message = "ECR is throttling; retry in 3s".to_owned();
    assert_eq!(r.body, ResponseBody::Error { kind: ErrorKind::Other, message });
    let r = decode_response(br#"{"v":1,"type":"credentials_v2","token":{"parts":[1]}}"#).unwrap();
    assert_eq!(r.body, ResponseBody::Unknown);
    let q = decode_request(br#"{"v":1,"op":"rotate","host":"x"}"#).unwrap();
    assert_eq!(q.body, RequestBody::Unsupported);
    // New fields in known messages are ignored.
    let q = decode_request(br#"{"v":1,"op":"get","host":"h","trace_id":"abc"}"#).unwrap();
    assert_eq!(q.body, RequestBody::Get { host: "h".into() });
    let r = decode_response(br#"{"v":1,"type":"hosts","hosts":["a"],"generated_at":1}"#).unwrap();
    assert_eq!(r.body, ResponseBody::Hosts { hosts: vec!["a".into()] });
}

#[test]
fn requests() {
    let get = Request::new(RequestBody::Get { host: "https://127.0.0.1:5000".into() });
    golden("request-get.jsonl", &get);
    golden("request-list.jsonl", &Request::new(RequestBody::List));
    golden("request-status.jsonl", &Request::new(RequestBody::Status));
    let workload = Request::new(RequestBody::GetWorkload {
        host: "127.0.0.1:5000".into(),
        service_account_token: Secret::from("eyJhbGciOiJSUzI1NiJ9.e30.sig"),
        service_account_annotations: std::collections::BTreeMap::from([(
            "eks.amazonaws.com/ecr-role-arn".to_owned(),
            "arn:aws:iam::111122223333:role/pull".to_owned(),
        )]),
    });
    golden("request-get_workload.jsonl", &workload);
    assert_eq!(decode_request(&encode(&workload)).unwrap(), workload);
    for msg in [get, Request::new(RequestBody::List)] {
        assert_eq!(decode_request(&encode(&msg)).unwrap(), msg);
    }
}

#[test]
fn responses() {
    let creds = Response::new(ResponseBody::Credentials {
        host: "127.0.0.1:5000".into(),
        username: "AWS".into(),
        secret: Secret::from("pw"),
        expires_at: 1_800_000_000,
    });
    golden("response-credentials.jsonl", &creds);
    let hosts =
        Response::new(ResponseBody::Hosts { hosts: vec!["a.example".into(), "b.example:5000".into()] });
    golden("response-hosts.jsonl", &hosts);
    for (kind, name) in [
        (ErrorKind::NotFound, "not_found"),
        (ErrorKind::Unavailable, "unavailable"),
        (ErrorKind::BadRequest, "bad_request"),
        (ErrorKind::Forbidden, "forbidden"),
    ] {
        let err = Response::error(kind, "why");
        golden(&format!("response-error-{name}.jsonl"), &err);
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
    golden("response-status.jsonl", &status);
    for msg in [creds, hosts, status] {
        assert_eq!(decode_response(&encode(&msg)).unwrap(), msg);
    }
}

#[test]
fn tolerates_unknown_fields_and_rejects_other_versions() {
    let req = decode_request(br#"{"v":1,"op":"list","future":true}"#).unwrap();
    assert_eq!(req.body, RequestBody::List);
    assert!(matches!(decode_request(br#"{"v":2,"op":"list"}"#), Err(WireError::Version { got: 2 })));
    assert!(matches!(decode_request(b"garbage"), Err(WireError::Malformed(_))));
    // An op from a newer client is not malformed: the daemon says it is unsupported.
    assert_eq!(decode_request(br#"{"v":1,"op":"launch"}"#).unwrap().body, RequestBody::Unsupported);
    assert!(matches!(decode_request(br#"{"v":1,"op":"get"}"#), Err(WireError::Malformed(_))));
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
