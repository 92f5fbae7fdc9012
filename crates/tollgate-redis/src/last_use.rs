//! Last-used times, written behind.
//!
//! The auth layer records a key's use at most once a minute per key, but
//! with many keys that is still a write on the request path now and then
//! (for 10,000 keys round-robin, one request in twenty). So a key store
//! only notes the use here, in memory (newest per key), and a background
//! task started with the stores writes the noted uses
//! ([`PendingUses`](tollgate_core::keys::PendingUses)) every
//! [flush interval](crate::RedisConfig::last_use_flush_interval) (a second
//! by default): one script call per account, at most [`BATCH`] keys each,
//! instead of one round trip per use. This instance's reads show its
//! pending uses at once; other instances see them after the next flush. A
//! crash loses at most one interval of last-used times, nothing else.

use std::sync::{Arc, Weak};
use std::time::Duration;

/// The most records one touch script call writes.
pub(crate) const BATCH: usize = 128;

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
