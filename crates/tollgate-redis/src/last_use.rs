//! Last-used times, written behind.
//!
//! The auth layer records a key's use at most once a minute per key, but
//! with many keys that is still a write on the request path now and then
//! (for 10,000 keys round-robin, one request in twenty). So a key store
//! only notes the use here, in memory (newest per key), and a background
//! task started with the stores writes the noted uses every
//! [flush interval](crate::RedisConfig::last_use_flush_interval) (a second
//! by default): one script call per account, at most [`BATCH`] keys each,
//! instead of one round trip per use. This instance's reads show its
//! pending uses at once; other instances see them after the next flush. A
//! crash loses at most one interval of last-used times, nothing else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use tollgate_core::keys::KeyRecord;

/// The most records one touch script call writes.
pub(crate) const BATCH: usize = 128;

/// Uses noted and not yet written, by key id.
#[derive(Debug, Default)]
pub(crate) struct LastUse {
    pending: Mutex<HashMap<String, SystemTime>>,
}

impl LastUse {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, SystemTime>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes a use; never moves a key's time backwards.
    pub(crate) fn note(&self, key_id: &str, at: SystemTime) {
        let mut pending = self.pending();
        match pending.get_mut(key_id) {
            Some(last) => *last = (*last).max(at),
            None => {
                pending.insert(key_id.to_owned(), at);
            }
        }
    }

    /// The record with this instance's pending use, if later than its own.
    pub(crate) fn apply(&self, record: Arc<KeyRecord>) -> Arc<KeyRecord> {
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
    pub(crate) fn batch(&self) -> Vec<(String, SystemTime)> {
        self.pending().iter().map(|(id, at)| (id.clone(), *at)).collect()
    }

    /// Forgets the written uses, unless a later one was noted meanwhile.
    pub(crate) fn written(&self, batch: &[(String, SystemTime)]) {
        let mut pending = self.pending();
        for (key_id, at) in batch {
            if pending.get(key_id).is_some_and(|last| last <= at) {
                pending.remove(key_id);
            }
        }
    }

    /// How many uses wait to be written.
    pub(crate) fn len(&self) -> usize {
        self.pending().len()
    }
}

/// Flushes with `flush` every `interval` until the stores are gone (the
/// weak handle no longer upgrades). Spawned on the runtime that connected.
pub(crate) fn spawn_flusher<T, F, Fut>(stores: Weak<T>, interval: Duration, flush: F)
where
    T: Send + Sync + 'static,
    F: Fn(Arc<T>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is at once
        loop {
            ticks.tick().await;
            let Some(stores) = stores.upgrade() else {
                return;
            };
            flush(stores).await;
        }
    });
}
