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
//! assert!(store.check_and_remember("sender_1", "msg_1", window).await.unwrap(), "first sighting");
//! assert!(!store.check_and_remember("sender_1", "msg_1", window).await.unwrap(), "a replay");
//! assert!(store.check_and_remember("sender_2", "msg_1", window).await.unwrap(), "another sender's id");
//! # });
//! ```

#[cfg(any(test, feature = "conformance"))]
pub(crate) mod conformance;
mod memory;

pub use memory::*;

use std::time::Duration;

use crate::maybe_ready::StoreFuture;

/// Where the ids of accepted webhook messages are remembered, each inside a
/// *scope* (the sender, or the tenant whose endpoint received it): ids of
/// different scopes never collide, and a store may bound each scope on its
/// own so that one sender cannot fill the store for the others. Since
/// forgetting a live id early would let its message be replayed, a bounded
/// store refuses a scope over its quota rather than evicting.
///
/// Implemented in memory ([`MemoryReplayStore`]) and on Redis; every
/// implementation runs [`crate::conformance::replay_store`].
pub trait ReplayStore: Send + Sync + 'static {
    /// Records `id` of `scope` for `ttl` and says whether this is its first
    /// sighting: `true` if it was unknown (or its previous record had
    /// expired), `false` if it is a replay. The check and the record are one
    /// atomic step: of any number of concurrent calls with one id, exactly
    /// one returns `true`.
    fn check_and_remember(&self, scope: &str, id: &str, ttl: Duration) -> StoreFuture<bool>;

    /// Forgets `id` of `scope`, so its next sighting counts as the first
    /// again. Used when the handler failed to process a message, so that the
    /// sender's retry is not refused as a replay. Unknown ids are ignored.
    fn forget(&self, scope: &str, id: &str) -> StoreFuture<()>;
}

/// One string naming `id` of `scope`, for backends that key records by
/// string: `<scope length>:<scope><id>`, unambiguous whatever the two hold.
pub fn storage_key(scope: &str, id: &str) -> String {
    format!("{}:{scope}{id}", scope.len())
}
