//! Replay protection for signed webhooks: the [`ReplayStore`] trait that
//! remembers which messages were already accepted.
//!
//! A valid signature proves who sent a message, not that it is the first
//! time it arrives: an attacker who captured a signed delivery can send it
//! again while its timestamp is still within tolerance. A replay store
//! remembers each accepted message id for that window and answers "first
//! time" exactly once per id, even under concurrent deliveries.
//!
//! ```
//! use std::time::Duration;
//! use tollgate_core::replay::{MemoryReplayStore, ReplayStore};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = MemoryReplayStore::new();
//! let window = Duration::from_secs(300);
//! assert!(store.check_and_remember("msg_1", window).await.unwrap(), "first sighting");
//! assert!(!store.check_and_remember("msg_1", window).await.unwrap(), "a replay");
//! # });
//! ```

#[cfg(any(test, feature = "conformance"))]
pub(crate) mod conformance;
mod memory;

pub use memory::*;

use std::time::Duration;

use crate::maybe_ready::StoreFuture;

/// Where the ids of accepted webhook messages are remembered. Implemented in
/// memory ([`MemoryReplayStore`]) and on Redis; every implementation
/// runs [`crate::conformance::replay_store`].
pub trait ReplayStore: Send + Sync + 'static {
    /// Records `id` for `ttl` and says whether this is its first sighting:
    /// `true` if `id` was unknown (or its previous record had expired),
    /// `false` if it is a replay. The check and the record are one atomic
    /// step: of any number of concurrent calls with one id, exactly one
    /// returns `true`.
    fn check_and_remember(&self, id: &str, ttl: Duration) -> StoreFuture<bool>;

    /// Forgets `id`, so its next sighting counts as the first again. Used
    /// when the handler failed to process a message, so that the sender's
    /// retry is not refused as a replay. Unknown ids are ignored.
    fn forget(&self, id: &str) -> StoreFuture<()>;
}
