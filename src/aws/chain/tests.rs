//! The chain under a hung base source and a stalled STS: each wait is
//! bounded, says which source hung, and holds up no other role.

use std::sync::atomic::AtomicU32;

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// Answers with keys that last `lifetime` on `clock` (static keys when
/// `None`), fails when `fail` is set, never answers when `hang` is, and
/// answers after 5 s when `slow` is.
#[derive(Clone)]
struct FakeProvider {
    calls: Arc<AtomicU32>,
    hang: Arc<AtomicBool>,
    slow: Arc<AtomicBool>,
    fail: Arc<AtomicBool>,
    lifetime: Option<Duration>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for FakeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakeProvider")
    }
}

impl ProvideCredentials for FakeProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let (hang, fail) = (self.hang.load(Ordering::SeqCst), self.fail.load(Ordering::SeqCst));
        let slow = self.slow.load(Ordering::SeqCst);
        let expiry = self.lifetime.map(|l| self.clock.wall() + l);
        future::ProvideCredentials::new(async move {
            if hang {
                std::future::pending::<()>().await;
            }
            if slow {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            if fail {
                return Err(CredentialsError::provider_error("the fake source is down"));
            }
            let key = if n == 1 { "AKIDBASE" } else { "AKIDBASE2" };
            Ok(Credentials::new(key, "base-secret", Some("t".into()), expiry, "fake"))
        })
    }
}

fn chain(provider: &FakeProvider, sdk: SdkConfig) -> CredentialChain {
    let settings =
        AwsSettings { credentials: CredentialSource::Profile("x".into()), ..AwsSettings::default() };
    let p = provider.clone();
    let build = Box::new(move || vec![Provider::new(ProviderKind::Profile, "profile x", p.clone())]);
    CredentialChain::with_providers(sdk, settings, Arc::default(), build, provider.clock.clone())
}

fn provider(hang: bool) -> FakeProvider {
    FakeProvider {
        calls: Arc::default(),
        hang: Arc::new(AtomicBool::new(hang)),
        slow: Arc::default(),
        fail: Arc::default(),
        lifetime: Some(Duration::from_secs(7200)),
        clock: Arc::new(SystemClock),
    }
}

/// Wall time that moves with tokio's paused clock.
struct ManualClock {
    start: Instant,
    start_wall: SystemTime,
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> SystemTime {
        self.start_wall + (Instant::now() - self.start)
    }
}

/// A provider on a manual clock, whose keys last `lifetime` (static: `None`).
fn on_manual_clock(lifetime: Option<Duration>) -> FakeProvider {
    let clock = Arc::new(ManualClock {
        start: Instant::now(),
        start_wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    });
    FakeProvider { lifetime, clock, ..provider(false) }
}

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test(start_paused = true)]
async fn expiring_credentials_are_renewed_10_minutes_ahead() {
    let p = on_manual_clock(Some(30 * MINUTE));
    let c = chain(&p, sdk("http://127.0.0.1:9").await);
    assert_eq!(c.base_credentials().await.unwrap().access_key_id(), "AKIDBASE");
    tokio::time::sleep(19 * MINUTE).await;
    assert_eq!(c.base_credentials().await.unwrap().access_key_id(), "AKIDBASE", "11 minutes left: kept");
    assert_eq!(p.calls.load(Ordering::SeqCst), 1);
    tokio::time::sleep(2 * MINUTE).await;
    assert_eq!(c.base_credentials().await.unwrap().access_key_id(), "AKIDBASE2", "9 minutes left: renewed");
    assert_eq!(p.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_late_answer_that_has_expired_since_is_not_used() {
    // Keys that last 6 s, given 5 s after the ask: the ask outlives its
    // deadline, and they have expired by the time the next fetch comes.
    let p = on_manual_clock(Some(Duration::from_secs(6)));
    p.slow.store(true, Ordering::SeqCst);
    let c = chain(&p, sdk("http://127.0.0.1:9").await);
    assert!(c.base_credentials().await.is_err(), "the first ask outlives its deadline");
    p.slow.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let got = c.base_credentials().await.unwrap();
    assert_eq!(got.access_key_id(), "AKIDBASE2", "the expired late answer was used");
    assert!(got.expiry().is_some_and(|e| e > p.clock.wall()));
    assert_eq!(p.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_late_answer_still_valid_is_used_without_asking_again() {
    let p = on_manual_clock(Some(30 * MINUTE));
    p.slow.store(true, Ordering::SeqCst);
    let c = chain(&p, sdk("http://127.0.0.1:9").await);
    assert!(c.base_credentials().await.is_err());
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(c.base_credentials().await.unwrap().access_key_id(), "AKIDBASE");
    assert_eq!(p.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn static_keys_are_read_again_every_5_minutes_and_after_a_reload() {
    let p = on_manual_clock(None);
    let c = chain(&p, sdk("http://127.0.0.1:9").await);
    c.base_credentials().await.unwrap();
    tokio::time::sleep(MINUTE * 4 + MINUTE / 2).await;
    c.base_credentials().await.unwrap();
    assert_eq!(p.calls.load(Ordering::SeqCst), 1, "within 5 minutes: not read again");
    tokio::time::sleep(MINUTE).await;
    assert_eq!(c.base_credentials().await.unwrap().access_key_id(), "AKIDBASE2");
    assert_eq!(p.calls.load(Ordering::SeqCst), 2, "after 5 minutes: read again");
    c.reread_base();
    c.base_credentials().await.unwrap();
    assert_eq!(p.calls.load(Ordering::SeqCst), 3, "a reload reads them at once");
}

#[tokio::test(start_paused = true)]
async fn a_failed_renewal_keeps_valid_credentials_until_they_expire() {
    let p = on_manual_clock(Some(30 * MINUTE));
    let c = chain(&p, sdk("http://127.0.0.1:9").await);
    c.base_credentials().await.unwrap();
    p.fail.store(true, Ordering::SeqCst);
    // Due for renewal, the source down: the still-valid keys are used.
    tokio::time::sleep(25 * MINUTE).await;
    assert_eq!(c.base_credentials().await.unwrap().access_key_id(), "AKIDBASE");
    assert_eq!(p.calls.load(Ordering::SeqCst), 2, "renewal was tried");
    // Expired: an error naming the source, never expired keys.
    tokio::time::sleep(6 * MINUTE).await;
    let err = c.base_credentials().await.unwrap_err().to_string();
    assert!(err.contains("no base credentials from profile:x: profile x: an error occurred while loading credentials: the fake source is down"), "{err}");
    // Back: renewed.
    p.fail.store(false, Ordering::SeqCst);
    assert!(c.base_credentials().await.unwrap().access_key_id().starts_with("AKIDBASE"));
    assert_eq!(p.calls.load(Ordering::SeqCst), 4);
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
                if text.contains("denied") {
                    let body = "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>no</Message></Error></ErrorResponse>";
                    let head = format!(
                        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(format!("{head}{body}").as_bytes()).await;
                    return;
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
    let err = c.base_credentials().await.unwrap_err().to_string();
    let took = started.elapsed();
    assert!(took >= BASE_DEADLINE && took < BASE_DEADLINE + Duration::from_secs(1), "{took:?}");
    assert!(err.contains("no base credentials from profile:x: profile x: no answer within 4s"), "{err}");
    // The next fetch waits on the ask still running instead of starting a
    // second one: a hung credential_process leaves one child, not one per try.
    assert!(c.base_credentials().await.is_err());
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

#[tokio::test]
async fn a_denied_role_costs_one_call_for_all_its_registries_until_a_reload() {
    let (sts, calls) = sts_double().await;
    let c = chain(&provider(false), sdk(&sts).await);
    for i in 1..=3 {
        let err = c.for_registry(&registry(&format!(":{i}"), Some("denied"))).await.unwrap_err();
        assert!(err.to_string().contains("role/denied denied"), "{err}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "three registries on one denied role: one AssumeRole");
    c.reread_base();
    assert!(c.for_registry(&registry(":1", Some("denied"))).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 2, "a reload asks again");
}
