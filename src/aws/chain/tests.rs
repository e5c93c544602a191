//! The chain under a hung base source and a stalled STS: each wait is
//! bounded, says which source hung, and holds up no other role.

use std::sync::atomic::AtomicU32;

use aws_credential_types::provider::{future, ProvideCredentials};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// Answers with keys that last `for_secs`, or never when `hang` is set.
#[derive(Debug, Clone)]
struct FakeProvider {
    calls: Arc<AtomicU32>,
    hang: Arc<AtomicBool>,
}

impl ProvideCredentials for FakeProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let hang = self.hang.load(Ordering::SeqCst);
        future::ProvideCredentials::new(async move {
            if hang {
                std::future::pending::<()>().await;
            }
            let expiry = SystemTime::now() + Duration::from_secs(7200);
            Ok(Credentials::new("AKIDBASE", "base-secret", Some("t".into()), Some(expiry), "fake"))
        })
    }
}

fn chain(provider: &FakeProvider, sdk: SdkConfig) -> CredentialChain {
    let settings =
        AwsSettings { credentials: CredentialSource::Profile("x".into()), ..AwsSettings::default() };
    let p = provider.clone();
    let build = Box::new(move || vec![("profile x".to_owned(), SharedCredentialsProvider::new(p.clone()))]);
    CredentialChain::with_providers(sdk, settings, Arc::default(), build)
}

fn provider(hang: bool) -> FakeProvider {
    FakeProvider { calls: Arc::default(), hang: Arc::new(AtomicBool::new(hang)) }
}

fn registry(host: &str, role: Option<&str>) -> RegistryConfig {
    RegistryConfig {
        role_arn: role.map(|r| format!("arn:aws:iam::210987654321:role/{r}")),
        sts_region: Some("us-east-1".into()),
        ..RegistryConfig::unlisted(&format!("210987654321.dkr.ecr.us-east-1.amazonaws.com{host}")).unwrap()
    }
}

/// An STS double on loopback: AssumeRole answers at once, except for roles
/// whose name contains "stalled", which get no answer at all.
async fn sts_double() -> (String, Arc<AtomicU32>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let calls = counted.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !String::from_utf8_lossy(&request).contains("Version=") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request).into_owned();
                if !text.contains("Action=AssumeRole") {
                    let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
                    return;
                }
                calls.fetch_add(1, Ordering::SeqCst);
                if text.contains("stalled") {
                    std::future::pending::<()>().await;
                }
                let expiry = aws_smithy_types::DateTime::from(SystemTime::now() + Duration::from_secs(3600))
                    .fmt(aws_smithy_types::date_time::Format::DateTime)
                    .unwrap();
                let body = format!(
                    "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult>\
                     <Credentials><AccessKeyId>ASIAROLE</AccessKeyId><SecretAccessKey>role-secret</SecretAccessKey>\
                     <SessionToken>role-token</SessionToken><Expiration>{expiry}</Expiration></Credentials>\
                     <AssumedRoleUser><Arn>arn:aws:sts::210987654321:assumed-role/ok/s</Arn>\
                     <AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser></AssumeRoleResult>\
                     <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></AssumeRoleResponse>"
                );
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(format!("{head}{body}").as_bytes()).await;
            });
        }
    });
    (url, calls)
}

async fn sdk(endpoint: &str) -> SdkConfig {
    crate::aws::ecr::sdk_config(None).await.unwrap().to_builder().endpoint_url(endpoint).build()
}

#[tokio::test]
async fn a_hung_source_fails_within_its_deadline_and_is_asked_once() {
    let p = provider(true);
    let c = chain(&p, sdk("http://127.0.0.1:9").await);
    let started = Instant::now();
    let err = c.instance().await.unwrap_err().to_string();
    let took = started.elapsed();
    assert!(took >= BASE_DEADLINE && took < BASE_DEADLINE + Duration::from_secs(1), "{took:?}");
    assert!(err.contains("no base credentials from profile:x: profile x: no answer within 4s"), "{err}");
    // The next fetch waits on the ask still running instead of starting a
    // second one: a hung credential_process leaves one child, not one per try.
    assert!(c.instance().await.is_err());
    assert_eq!(p.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn cached_credentials_are_served_while_the_source_hangs() {
    let (sts, _) = sts_double().await;
    let p = provider(false);
    let c = chain(&p, sdk(&sts).await);
    let (plain, with_role) = (registry(":1", None), registry(":2", Some("ok")));
    assert!(c.for_registry(&plain).await.is_ok());
    assert_eq!(c.for_registry(&with_role).await.unwrap().access_key_id(), "ASIAROLE");
    // The source hangs and must be asked again (as after a reload).
    p.hang.store(true, Ordering::SeqCst);
    c.reread_base();
    let started = Instant::now();
    let role = c.for_registry(&with_role).await.unwrap();
    assert_eq!(role.access_key_id(), "ASIAROLE");
    assert!(started.elapsed() < Duration::from_millis(100), "the cached role waited for the base source");
    // The base credentials have not expired: used after the bounded ask.
    assert_eq!(c.for_registry(&plain).await.unwrap().access_key_id(), "AKIDBASE");
    assert!(started.elapsed() < BASE_DEADLINE + Duration::from_secs(1));
}

#[tokio::test]
async fn a_stalled_role_holds_up_no_other_role() {
    let (sts, calls) = sts_double().await;
    let c = Arc::new(chain(&provider(false), sdk(&sts).await));
    let stalled = registry(":1", Some("stalled"));
    let (c2, r2) = (c.clone(), stalled.clone());
    let hung = tokio::spawn(async move { c2.for_registry(&r2).await });
    // Let the stalled AssumeRole reach the double before the other role asks.
    wait_for(|| calls.load(Ordering::SeqCst) == 1).await;
    let started = Instant::now();
    for (i, name) in ["ok", "ok", "other"].iter().enumerate() {
        let r = registry(&format!(":{}", i + 2), Some(name));
        assert_eq!(c.for_registry(&r).await.unwrap().access_key_id(), "ASIAROLE");
    }
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    assert_eq!(calls.load(Ordering::SeqCst), 3, "the two registries on role ok shared one AssumeRole");
    let waiting = c.waiting_on(&stalled.host).unwrap_or_default();
    assert!(
        waiting.starts_with("sts:AssumeRole on arn:aws:iam::210987654321:role/stalled in us-east-1"),
        "{waiting}"
    );
    let err = hung.await.unwrap().unwrap_err().to_string();
    assert!(err.contains("role/stalled failed: timed out waiting for AWS"), "{err}");
}

async fn wait_for(done: impl Fn() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out");
}
