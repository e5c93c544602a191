//! Connection slots per peer uid: no single user, nor all users but root
//! together, can hold every slot of the socket, so root (the kubelet,
//! dockerd's pulls run as root) always finds one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Most connections one non-root uid may hold at once.
pub(super) const PER_UID: usize = 64;

/// Slots kept for root whatever everyone else holds.
pub(super) const ROOT_RESERVE: usize = 32;

/// Counts connections by uid; see the module docs.
#[derive(Debug)]
pub(super) struct UidSlots {
    /// All connections but root's may hold this many at once.
    others_max: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    by_uid: HashMap<u32, usize>,
    others: usize,
}

/// One held slot, given back when dropped.
#[derive(Debug)]
pub(super) struct Slot {
    slots: Arc<UidSlots>,
    uid: u32,
}

impl UidSlots {
    /// Slots for a socket serving at most `total` connections.
    pub(super) fn new(total: usize) -> Arc<Self> {
        Arc::new(UidSlots { others_max: total.saturating_sub(ROOT_RESERVE), held: Mutex::default() })
    }

    /// A slot for `uid`, or `None` when it (or everyone but root) holds too many.
    pub(super) fn take(self: &Arc<Self>, uid: u32) -> Option<Slot> {
        if uid == 0 {
            return Some(Slot { slots: self.clone(), uid });
        }
        let mut held = crate::sync::lock(&self.held);
        let mine = held.by_uid.get(&uid).copied().unwrap_or(0);
        if mine >= PER_UID || held.others >= self.others_max {
            return None;
        }
        held.by_uid.insert(uid, mine + 1);
        held.others += 1;
        Some(Slot { slots: self.clone(), uid })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.uid == 0 {
            return;
        }
        let mut held = crate::sync::lock(&self.slots.held);
        held.others = held.others.saturating_sub(1);
        if let Some(n) = held.by_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                held.by_uid.remove(&self.uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_uid_is_capped_and_root_always_gets_in() {
        let slots = UidSlots::new(100);
        let alice: Vec<Slot> = (0..PER_UID).filter_map(|_| slots.take(1000)).collect();
        assert_eq!(alice.len(), PER_UID);
        assert!(slots.take(1000).is_none(), "alice's cap");
        // Others together stop short of the total, leaving root's reserve.
        let bob: Vec<Slot> = (0..PER_UID).filter_map(|_| slots.take(1001)).collect();
        assert_eq!(alice.len() + bob.len(), 100 - ROOT_RESERVE);
        assert!(slots.take(1002).is_none());
        assert!(slots.take(0).is_some(), "root is never refused");
        drop(alice);
        assert!(slots.take(1000).is_some(), "slots come back when connections close");
    }
}
