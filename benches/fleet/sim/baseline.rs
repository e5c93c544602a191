//! A model of the policy the fleet work started from (ecr-credd at
//! 80c226f), for fleets too large to run it for real: its code is not in
//! this checkout, so its rules are written out here, each as 80c226f's
//! source has it, and the model is checked against the real 80c226f runs
//! (FLEET.md's calibration table) before its large fleets are believed.
//!
//! - Each registry entry fetches on its own: at boot, at once; after its
//!   k-th failure again after a wait uniform in [1 s, min(300 s, 2^(k−1) s)].
//! - A `get` is served a token it holds; while a failure's wait runs it is
//!   told that failure; otherwise it joins (or starts) the entry's fetch
//!   and waits up to 5 s for it.
//! - A fetch is AssumeRole (one at a time per node, its credentials kept for
//!   their hour, a failure not remembered: every entry on the role calls
//!   again) and then a GetAuthorizationToken of the entry's own.
//! - GetCallerIdentity at boot is left out: the proxy's buckets do not meter it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{lock, Answer, SimAws};

/// Where one entry stands.
struct EntryState {
    token: bool,
    failures: u32,
    next_attempt: Instant,
    /// Bumped by every finished fetch, as 80c226f's single flight has it.
    generation: u64,
}

/// One registry entry: its state, its single-flight lock, and the wake-up
/// its refresher waits on when a fetch moves its next try.
struct Entry {
    state: Mutex<EntryState>,
    fetch_lock: Arc<tokio::sync::Mutex<()>>,
    rescheduled: Notify,
}

/// One node running 80c226f's policy.
pub(crate) struct Node {
    key: String,
    aws: Arc<SimAws>,
    /// Until when the role's credentials are good; the lock is held across
    /// the AssumeRole, as 80c226f's chain holds its roles' lock.
    role: tokio::sync::Mutex<Option<Instant>>,
    entries: Vec<Entry>,
}

/// 80c226f's backoff: full jitter from the 1 s base up to a doubling cap.
fn backoff(failures: u32) -> Duration {
    let cap = (1u64 << failures.saturating_sub(1).min(20)).min(300) as f64;
    Duration::from_secs_f64(rand::thread_rng().gen_range(1.0..=cap.max(1.0)))
}

impl Node {
    /// A node with `registries` entries, each starting its refresher now.
    pub(crate) fn start(key: String, aws: Arc<SimAws>, registries: usize) -> Arc<Node> {
        let now = Instant::now();
        let entries = (0..registries)
            .map(|_| Entry {
                state: Mutex::new(EntryState { token: false, failures: 0, next_attempt: now, generation: 0 }),
                fetch_lock: Arc::new(tokio::sync::Mutex::new(())),
                rescheduled: Notify::new(),
            })
            .collect();
        let node = Arc::new(Node { key, aws, role: tokio::sync::Mutex::new(None), entries });
        for e in 0..registries {
            tokio::spawn(node.clone().refresher(e));
        }
        node
    }

    /// Sleeps until the entry's next try and fetches, until it has a token
    /// (its next refresh, hours later, is past any run's end).
    async fn refresher(self: Arc<Self>, e: usize) {
        loop {
            let (token, next) = {
                let st = lock(&self.entries[e].state);
                (st.token, st.next_attempt)
            };
            if token {
                return;
            }
            if Instant::now() < next {
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    _ = self.entries[e].rescheduled.notified() => {}
                }
                continue;
            }
            let _ = self.clone().fetch(e).await;
        }
    }

    /// A client's `get` for the node's first registry.
    pub(crate) async fn get(self: &Arc<Self>) -> bool {
        {
            let st = lock(&self.entries[0].state);
            if st.token {
                return true;
            }
            if st.failures > 0 && Instant::now() < st.next_attempt {
                return false;
            }
        }
        matches!(tokio::time::timeout(Duration::from_secs(5), self.clone().fetch(0)).await, Ok(true))
    }

    /// One fetch for entry `e`, shared by whoever asks while it runs; it
    /// runs in a task of its own so a `get` giving up does not cancel it.
    async fn fetch(self: Arc<Self>, e: usize) -> bool {
        let generation = lock(&self.entries[e].state).generation;
        let guard = self.entries[e].fetch_lock.clone().lock_owned().await;
        {
            let st = lock(&self.entries[e].state);
            if st.generation != generation {
                return st.token;
            }
        }
        let task = tokio::spawn(async move {
            let ok = self.assume().await
                && self.aws.call("GetAuthorizationToken", &self.key).await == Answer::Answered;
            let entry = &self.entries[e];
            let mut st = lock(&entry.state);
            st.generation += 1;
            if ok {
                st.token = true;
                st.failures = 0;
            } else {
                st.failures += 1;
                st.next_attempt = Instant::now() + backoff(st.failures);
            }
            drop(guard);
            entry.rescheduled.notify_one();
            ok
        });
        task.await.unwrap_or(false)
    }

    /// The role's credentials, assuming the role unless they are fresh.
    async fn assume(&self) -> bool {
        let mut until = self.role.lock().await;
        let now = Instant::now();
        if until.is_some_and(|t| t > now + Duration::from_secs(300)) {
            return true;
        }
        let ok = self.aws.call("AssumeRole", &self.key).await == Answer::Answered && !self.aws.denied;
        if ok {
            *until = Some(Instant::now() + Duration::from_secs(3600));
        }
        ok
    }
}
