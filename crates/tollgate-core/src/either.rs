//! [`EitherStore`]: one of two stores chosen at run time — say memory on a
//! laptop and Redis in production — behind every storage trait both
//! implement. The traits are not object-safe, so this is how a server picks
//! its backend from configuration without becoming generic itself.
//!
//! ```
//! use tollgate_core::{EitherStore, KeyStore, MemoryKeyStore};
//!
//! fn serve(keys: impl KeyStore) { /* stack the layers over `keys` */ }
//!
//! // In a real server the right side would be, say, a Redis store.
//! let on_laptop = true;
//! let keys: EitherStore<MemoryKeyStore, MemoryKeyStore> =
//!     if on_laptop { EitherStore::Left(MemoryKeyStore::new()) } else { EitherStore::Right(MemoryKeyStore::new()) };
//! serve(keys);
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::allowlist::{AllowlistStore, Allowlists, IpSet};
use crate::error::StoreError;
use crate::idempotency::{BeginOutcome, ClaimToken, Fingerprint, IdempotencyKey, IdempotencyStore, StoredResponse};
use crate::key_store::{KeyHash, KeyRecord, KeyStore};
use crate::rate_limit::{Decision, Limits, RateLimitStore};
use crate::replay::ReplayStore;

/// One of two stores; implements each storage trait that both sides implement.
#[derive(Debug, Clone)]
pub enum EitherStore<L, R> {
    /// The first kind of store.
    Left(L),
    /// The second kind of store.
    Right(R),
}

// Each method forwards to whichever store this is.
macro_rules! forward {
    ($( fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $out:ty; )*) => {
        $(
            fn $name(&self $(, $arg: $ty)*) -> impl Future<Output = Result<$out, StoreError>> + Send {
                async move {
                    match self {
                        EitherStore::Left(store) => store.$name($($arg),*).await,
                        EitherStore::Right(store) => store.$name($($arg),*).await,
                    }
                }
            }
        )*
    };
}

impl<L: KeyStore, R: KeyStore> KeyStore for EitherStore<L, R> {
    forward! {
        fn find_by_hash(&self, hash: &KeyHash) -> Option<Arc<KeyRecord>>;
        fn find_by_id(&self, key_id: &str) -> Option<Arc<KeyRecord>>;
        fn insert(&self, record: KeyRecord, max_active: Option<usize>, now: SystemTime) -> ();
        fn list_by_account(&self, account_id: &str) -> Vec<Arc<KeyRecord>>;
        fn revoke(&self, key_id: &str, at: SystemTime) -> Option<Arc<KeyRecord>>;
        fn record_last_use(&self, key_id: &str, at: SystemTime) -> ();
    }
}

impl<L: RateLimitStore, R: RateLimitStore> RateLimitStore for EitherStore<L, R> {
    forward! {
        fn check(&self, key: &str, limits: &Limits, cost: u32) -> Decision;
    }
}

impl<L: IdempotencyStore, R: IdempotencyStore> IdempotencyStore for EitherStore<L, R> {
    forward! {
        fn begin(&self, key: &IdempotencyKey, fingerprint: Fingerprint, lock_ttl: Duration) -> BeginOutcome;
        fn complete(&self, key: &IdempotencyKey, token: ClaimToken, response: StoredResponse, ttl: Duration) -> bool;
        fn abort(&self, key: &IdempotencyKey, token: ClaimToken) -> bool;
    }
}

impl<L: AllowlistStore, R: AllowlistStore> AllowlistStore for EitherStore<L, R> {
    forward! {
        fn account_allowlist(&self, account_id: &str) -> Option<Arc<IpSet>>;
        fn set_account_allowlist(&self, account_id: &str, list: IpSet) -> ();
        fn clear_account_allowlist(&self, account_id: &str) -> bool;
        fn key_allowlist(&self, key_id: &str) -> Option<Arc<IpSet>>;
        fn set_key_allowlist(&self, key_id: &str, list: IpSet) -> ();
        fn clear_key_allowlist(&self, key_id: &str) -> bool;
        fn allowlists(&self, account_id: &str, key_id: &str) -> Allowlists;
    }
}

impl<L: ReplayStore, R: ReplayStore> ReplayStore for EitherStore<L, R> {
    forward! {
        fn check_and_remember(&self, id: &str, ttl: Duration) -> bool;
        fn forget(&self, id: &str) -> ();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryKeyStore, MemoryReplayStore};

    #[tokio::test]
    async fn both_sides_conform() {
        crate::conformance::key_store(&EitherStore::<MemoryKeyStore, MemoryKeyStore>::Left(
            MemoryKeyStore::new(),
        ))
        .await;
        crate::conformance::key_store(&EitherStore::<MemoryKeyStore, MemoryKeyStore>::Right(
            MemoryKeyStore::new(),
        ))
        .await;
        crate::conformance::replay_store(&EitherStore::<MemoryReplayStore, MemoryReplayStore>::Right(
            MemoryReplayStore::new(),
        ))
        .await;
    }
}
