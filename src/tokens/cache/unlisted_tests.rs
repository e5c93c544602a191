//! Hosts that are not configured: served when they are ECR's, bounded in
//! number, dropped when idle, one entry whatever the port.

use std::sync::atomic::Ordering;

use super::tests::{answering, harness, registry, settle, ManualClock, HOST};
use super::*;

fn unlisted(account: &str) -> String {
    format!("{account}.dkr.ecr.eu-west-1.amazonaws.com")
}

#[tokio::test(start_paused = true)]
async fn default_and_empty_ports_are_the_configured_entry() {
    let clock = ManualClock::new();
    let (source, calls) = answering(&clock);
    let ecr = registry(&unlisted("210987654321"));
    let cache = TokenCache::new(
        std::slice::from_ref(&ecr),
        true,
        source,
        clock,
        RefreshPolicy::default().without_startup_spread(),
        Arc::default(),
    );
    cache.start();
    settle().await;
    for form in
        [format!("{}:443", ecr.host), format!("{}:", ecr.host), format!("https://{}:443/v2/", ecr.host)]
    {
        let creds = cache.get(&form).await.unwrap();
        assert_eq!(creds.host, ecr.host, "{form}");
    }
    assert_eq!(cache.status().len(), 1, "no unlisted entry (with instance credentials) for {}:443", ecr.host);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn made_up_unlisted_hosts_neither_fill_the_table_nor_retry_forever() {
    let clock = ManualClock::new();
    let (source, calls) = answering(&clock);
    let policy = RefreshPolicy { max_unlisted: 8, ..RefreshPolicy::default().without_startup_spread() };
    let cache = TokenCache::new(&[], true, source, clock, policy, Arc::default());
    for i in 0..8 {
        assert!(cache.get(&unlisted(&format!("99000000000{i}"))).await.is_err());
    }
    // The table is full of hosts that never got a token: a real one still gets in.
    let real = cache.get(&unlisted("111122223333")).await.unwrap();
    assert_eq!(real.secret.expose(), "pw-9");
    // The made-up ones are not retried in the background.
    let before = calls.load(Ordering::SeqCst);
    cache.get(&unlisted("990000000099")).await.unwrap_err();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let after = calls.load(Ordering::SeqCst);
    assert!(after <= before + 2, "{} background fetches for a made-up host in an hour", after - before);
    assert!(cache.stalled().is_empty(), "a stopped unlisted refresher does not stop the watchdog");
}

#[tokio::test(start_paused = true)]
async fn idle_unlisted_hosts_are_dropped() {
    let h = harness(Duration::ZERO);
    h.cache.start();
    settle().await;
    let host = unlisted("111122223333");
    h.cache.get(&host).await.unwrap();
    assert_eq!(h.cache.status().len(), 2);
    // Refreshed while in use ...
    tokio::time::sleep(Duration::from_secs(5 * 3600)).await;
    h.cache.get(&host).await.unwrap();
    // ... dropped once nobody asked for it in 6 h.
    tokio::time::sleep(Duration::from_secs(13 * 3600)).await;
    let hosts: Vec<String> = h.cache.status().into_iter().map(|s| s.host).collect();
    assert_eq!(hosts, [HOST], "the idle unlisted host is gone");
    // Asked again, it comes back.
    h.cache.get(&host).await.unwrap();
    assert_eq!(h.cache.status().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn port_variants_are_one_entry_and_evicted_hosts_leave_no_series() {
    let clock = ManualClock::new();
    let (source, calls) = answering(&clock);
    let policy = RefreshPolicy { max_unlisted: 16, ..RefreshPolicy::default().without_startup_spread() };
    let cache = TokenCache::new(&[], true, source, clock, policy, Arc::default());
    // 300 ports of one real host: one entry, one fetch, so the table has room.
    for port in 1..=300 {
        assert!(cache.get(&format!("{}:{port}", unlisted("111122223333"))).await.is_ok());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(cache.get(&unlisted("444455556666")).await.is_ok(), "a new unlisted host is served");
    // 2,000 made-up hosts come and go: the series of the evicted ones go too.
    let lines = || cache.metrics().encode().lines().count();
    let start = lines();
    for i in 0..2000 {
        let _ = cache.get(&unlisted(&format!("99{i:010}"))).await;
    }
    let grown = lines() - start;
    assert!(grown <= 16 * 2 + 8, "/metrics grew by {grown} lines for 2,000 evicted hosts");
}
