use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use super::cache::{Key, WorkloadCache};
use super::*;
use crate::config::RegistryConfig;
use crate::tokens::{FetchedToken, SystemClock};

const ROLE: &str = "arn:aws:iam::111122223333:role/pull-a";

fn annotated(role: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(crate::config::workload::DEFAULT_ROLE_ANNOTATION.to_owned(), role.to_owned())])
}

fn on(exchange: ExchangeKind) -> WorkloadConfig {
    WorkloadConfig { enabled: true, exchange, ..WorkloadConfig::default() }
}

#[test]
fn a_pod_that_names_a_role_never_gets_the_nodes_credentials() {
    let none = BTreeMap::new();
    let off = WorkloadConfig::default();
    assert_eq!(decide(&off, true, &none), Decision::Node, "off: today's behaviour");
    assert!(
        matches!(decide(&off, true, &annotated(ROLE)), Decision::Refuse(m) if m.contains("enabled = true"))
    );
    let irsa = on(ExchangeKind::Irsa);
    assert_eq!(decide(&irsa, true, &annotated(ROLE)), Decision::Exchange { role_arn: Some(ROLE.into()) });
    assert!(
        matches!(decide(&irsa, false, &annotated(ROLE)), Decision::Refuse(m) if m.contains("no service-account token"))
    );
    assert_eq!(decide(&irsa, true, &none), Decision::Node);
    assert_eq!(decide(&irsa, false, &none), Decision::Node);
    let deny = WorkloadConfig { fallback: Fallback::Deny, ..irsa.clone() };
    assert!(matches!(decide(&deny, true, &none), Decision::Refuse(m) if m.contains("fallback = \"deny\"")));
    assert!(matches!(decide(&deny, false, &none), Decision::Refuse(_)));
    let pods = on(ExchangeKind::PodIdentity);
    assert_eq!(decide(&pods, true, &none), Decision::Exchange { role_arn: None });
    assert_eq!(decide(&pods, false, &none), Decision::Node);
}

#[test]
fn the_allow_list_refuses_naming_its_rule() {
    let config = WorkloadConfig {
        allowed_roles: vec!["arn:aws:iam::111122223333:role/pull-*".into()],
        ..on(ExchangeKind::Irsa)
    };
    assert!(matches!(decide(&config, true, &annotated(ROLE)), Decision::Exchange { .. }));
    let other = "arn:aws:iam::111122223333:role/admin";
    match decide(&config, true, &annotated(other)) {
        Decision::Refuse(m) => assert_eq!(
            m,
            format!(
                "role {other} is not in [workload] allowed_roles (arn:aws:iam::111122223333:role/pull-*)"
            )
        ),
        d => panic!("{d:?}"),
    }
}

fn registry() -> RegistryConfig {
    RegistryConfig::unlisted("111122223333.dkr.ecr.us-east-1.amazonaws.com").unwrap()
}

fn key(token: &str) -> Key {
    Key::new(ExchangeKind::Irsa, Some(ROLE), false, &registry(), &Secret::from(token))
}

fn fetched(life: Duration) -> std::future::Ready<Result<FetchedToken, FetchError>> {
    std::future::ready(Ok(FetchedToken {
        username: "AWS".into(),
        secret: "pw".into(),
        expires_at: SystemTime::now() + life,
    }))
}

#[tokio::test]
async fn one_token_asked_at_once_makes_one_fetch_and_another_token_its_own() {
    let cache = Arc::new(WorkloadCache::new(16));
    let calls = Arc::new(AtomicUsize::new(0));
    let margin = Duration::from_secs(300);
    let mut asks = Vec::new();
    for _ in 0..100 {
        let (cache, calls) = (cache.clone(), calls.clone());
        asks.push(tokio::spawn(async move {
            let fetch = || async {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                fetched(Duration::from_secs(3600)).await
            };
            cache.get(key("jwt-a"), &SystemClock, margin, fetch).await
        }));
    }
    let mut cached = 0;
    for a in asks {
        let (result, was_cached) = a.await.unwrap();
        assert!(result.is_ok());
        cached += usize::from(was_cached);
    }
    assert_eq!((calls.load(Ordering::SeqCst), cached), (1, 99));
    // The same claims in another token are another workload to the daemon.
    let (_, was_cached) =
        cache.get(key("jwt-a2"), &SystemClock, margin, || fetched(Duration::from_secs(3600))).await;
    assert!(!was_cached);
    assert_eq!(cache.take_counts().0, 2);
}

#[tokio::test]
async fn tokens_near_expiry_are_fetched_again_and_failures_stand_briefly() {
    let cache = WorkloadCache::new(16);
    let margin = Duration::from_secs(300);
    let (_, c) = cache.get(key("a"), &SystemClock, margin, || fetched(Duration::from_secs(200))).await;
    assert!(!c);
    let (_, c) = cache.get(key("a"), &SystemClock, margin, || fetched(Duration::from_secs(3600))).await;
    assert!(!c, "a token within the safety margin is not served");
    let denied = || async {
        Err(FetchError::WebIdentity {
            role_arn: ROLE.into(),
            refusal: crate::tokens::Refusal::Denied,
            reason: "no".into(),
        })
    };
    let (r, c) = cache.get(key("b"), &SystemClock, margin, denied).await;
    assert!(r.is_err() && !c);
    let (r, c) = cache.get(key("b"), &SystemClock, margin, || fetched(Duration::from_secs(3600))).await;
    assert!(r.is_err() && c, "the failure stands for a few seconds");
}

#[tokio::test]
async fn the_table_is_bounded_least_recently_used_first() {
    let cache = WorkloadCache::new(3);
    let margin = Duration::from_secs(1);
    for t in ["a", "b", "c"] {
        assert!(cache
            .get(key(t), &SystemClock, margin, || fetched(Duration::from_secs(3600)))
            .await
            .0
            .is_ok());
    }
    // Use "a", then add "d": "b" is the least recently used.
    assert!(cache.get(key("a"), &SystemClock, margin, || fetched(Duration::from_secs(3600))).await.1);
    assert!(cache.get(key("d"), &SystemClock, margin, || fetched(Duration::from_secs(3600))).await.0.is_ok());
    assert_eq!(cache.take_counts(), (3, 1));
    assert!(cache.get(key("a"), &SystemClock, margin, || fetched(Duration::from_secs(3600))).await.1);
    assert!(!cache.get(key("b"), &SystemClock, margin, || fetched(Duration::from_secs(3600))).await.1);
}
