//! Last-used times noted in memory, for key stores that write them behind.
//!
//! The auth layer records a key's use on the requests it lets through (at
//! most once a minute per key). A store that wrote each one at once would
//! add a write to a request now and then; a store that writes behind notes
//! the use here instead, shows it in its own reads at once, and writes the
//! batch from a background task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use super::KeyRecord;

/// Uses noted and not yet written: the newest per key id.
#[derive(Debug, Default)]
pub struct PendingUses {
    pending: Mutex<HashMap<String, SystemTime>>,
}

impl PendingUses {
    fn pending(&self) -> MutexGuard<'_, HashMap<String, SystemTime>> {
        // Every change is one step: a poisoned lock is used as is.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes a use; never moves a key's time backwards.
    pub fn note(&self, key_id: &str, at: SystemTime) {
        let mut pending = self.pending();
        match pending.get_mut(key_id) {
            Some(last) => *last = (*last).max(at),
            None => {
                pending.insert(key_id.to_owned(), at);
            }
        }
    }

    /// The record with its pending use, if that is later than its own.
    pub fn apply(&self, record: Arc<KeyRecord>) -> Arc<KeyRecord> {
        let Some(&at) = self.pending().get(record.id()) else {
            return record;
        };
        if record.last_used_at.is_some_and(|stored| stored >= at) {
            return record;
        }
        let mut updated = KeyRecord::clone(&record);
        updated.last_used_at = Some(at);
        Arc::new(updated)
    }

    /// What is pending now, to be written.
    pub fn batch(&self) -> Vec<(String, SystemTime)> {
        self.pending().iter().map(|(id, at)| (id.clone(), *at)).collect()
    }

    /// Forgets the uses of a written `batch`, unless a later one was noted
    /// meanwhile.
    pub fn written(&self, batch: &[(String, SystemTime)]) {
        let mut pending = self.pending();
        for (key_id, at) in batch {
            if pending.get(key_id).is_some_and(|last| last <= at) {
                pending.remove(key_id);
            }
        }
    }

    /// How many uses wait to be written.
    pub fn len(&self) -> usize {
        self.pending().len()
    }

    /// Whether no use waits.
    pub fn is_empty(&self) -> bool {
        self.pending().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::keys::KeyHash;
    use crate::{KeyKind, Principal};

    #[test]
    fn a_use_written_is_forgotten_unless_a_later_one_came_meanwhile() {
        let uses = PendingUses::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        uses.note("key_a", t0 + Duration::from_secs(5));
        uses.note("key_a", t0); // older: ignored
        uses.note("key_b", t0);
        let batch = uses.batch();
        assert_eq!(batch.len(), 2);
        uses.note("key_b", t0 + Duration::from_secs(9));
        uses.written(&batch);
        assert_eq!(uses.batch(), [("key_b".to_owned(), t0 + Duration::from_secs(9))]);
    }

    #[test]
    fn reads_show_a_pending_use_only_when_it_is_later() {
        let uses = PendingUses::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let record = Arc::new(KeyRecord {
            principal: Principal::new("acct", "key_a", KeyKind::Production),
            hash: KeyHash::from_bytes([7; 32]),
            label: String::new(),
            display_prefix: "tg_live_abcd".into(),
            created_at: t0,
            expires_at: None,
            revoked_at: None,
            last_used_at: Some(t0),
        });
        assert!(Arc::ptr_eq(&uses.apply(record.clone()), &record));
        uses.note("key_a", t0 + Duration::from_secs(1));
        assert_eq!(
            uses.apply(record.clone()).last_used_at,
            Some(t0 + Duration::from_secs(1))
        );
        uses.note("key_a", t0 + Duration::from_secs(2));
        let mut newer = KeyRecord::clone(&record);
        newer.last_used_at = Some(t0 + Duration::from_secs(3));
        assert_eq!(
            uses.apply(Arc::new(newer)).last_used_at,
            Some(t0 + Duration::from_secs(3))
        );
    }
}
