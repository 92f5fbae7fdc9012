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

// Each synchronous method (`None`: go async) forwards the same way.
macro_rules! forward_now {
    ($( fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $out:ty; )*) => {
        $(
            fn $name(&self $(, $arg: $ty)*) -> Option<Result<$out, StoreError>> {
                match self {
                    EitherStore::Left(store) => store.$name($($arg),*),
                    EitherStore::Right(store) => store.$name($($arg),*),
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
    forward_now! {
        fn find_by_hash_now(&self, hash: &KeyHash) -> Option<Arc<KeyRecord>>;
        fn record_last_use_now(&self, key_id: &str, at: SystemTime) -> ();
    }
}

impl<L: RateLimitStore, R: RateLimitStore> RateLimitStore for EitherStore<L, R> {
    forward! {
        fn check(&self, key: &str, limits: &Limits, cost: u32) -> Decision;
    }
    forward_now! {
        fn check_now(&self, key: &str, limits: &Limits, cost: u32) -> Decision;
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
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::principal::{KeyKind, Principal};
    use crate::{MemoryKeyStore, MemoryRateLimitStore, MemoryReplayStore};

    /// A memory store seen only through its futures, as a remote store is:
    /// it keeps the traits' synchronous defaults.
    #[derive(Clone, Default)]
    struct AsyncOnly<S>(S);

    impl<S: KeyStore> KeyStore for AsyncOnly<S> {
        fn find_by_hash(
            &self,
            hash: &KeyHash,
        ) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
            self.0.find_by_hash(hash)
        }

        fn find_by_id(&self, key_id: &str) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
            self.0.find_by_id(key_id)
        }

        fn insert(
            &self,
            record: KeyRecord,
            max_active: Option<usize>,
            now: SystemTime,
        ) -> impl Future<Output = Result<(), StoreError>> + Send {
            self.0.insert(record, max_active, now)
        }

        fn list_by_account(
            &self,
            account_id: &str,
        ) -> impl Future<Output = Result<Vec<Arc<KeyRecord>>, StoreError>> + Send {
            self.0.list_by_account(account_id)
        }

        fn revoke(
            &self,
            key_id: &str,
            at: SystemTime,
        ) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
            self.0.revoke(key_id, at)
        }

        fn record_last_use(&self, key_id: &str, at: SystemTime) -> impl Future<Output = Result<(), StoreError>> + Send {
            self.0.record_last_use(key_id, at)
        }
    }

    impl<S: RateLimitStore> RateLimitStore for AsyncOnly<S> {
        fn check(
            &self,
            key: &str,
            limits: &Limits,
            cost: u32,
        ) -> impl Future<Output = Result<Decision, StoreError>> + Send {
            self.0.check(key, limits, cost)
        }
    }

    type Keys = EitherStore<MemoryKeyStore, AsyncOnly<MemoryKeyStore>>;
    type Limiter = EitherStore<MemoryRateLimitStore, AsyncOnly<MemoryRateLimitStore>>;

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    async fn store_with_a_key(memory: MemoryKeyStore) -> KeyHash {
        let hash = KeyHash::from_bytes([7; 32]);
        let record = KeyRecord {
            principal: Principal::new("acct_1", "key_1", KeyKind::Production),
            hash,
            label: String::new(),
            display_prefix: "tg_live_abcd".into(),
            created_at: t0(),
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        };
        memory.insert(record, None, t0()).await.unwrap();
        hash
    }

    // The id the synchronous lookup finds, once the synchronous write of
    // a use succeeded; `None` if either sends the caller to the async call.
    fn key_answers(store: &impl KeyStore, hash: &KeyHash, at: SystemTime) -> Option<Option<String>> {
        let found = store.find_by_hash_now(hash)?.unwrap();
        store.record_last_use_now("key_1", at)?.unwrap();
        Some(found.map(|record| record.id().to_owned()))
    }

    #[tokio::test]
    async fn either_side_and_an_arc_forward_the_synchronous_key_store_calls() {
        let memory = MemoryKeyStore::new();
        let hash = store_with_a_key(memory.clone()).await;
        let left = Keys::Left(memory.clone());
        let used_at = t0() + Duration::from_secs(60);
        let expected = Some(Some("key_1".to_owned()));
        assert_eq!(key_answers(&left, &hash, used_at), expected);
        let stored = memory.find_by_id("key_1").await.unwrap().unwrap();
        assert_eq!(stored.last_used_at, Some(used_at), "the use went to the memory store");
        assert_eq!(key_answers(&Arc::new(left), &hash, used_at), expected);
        assert_eq!(key_answers(&Arc::new(memory.clone()), &hash, used_at), expected);

        let later = used_at + Duration::from_secs(60);
        let right = Keys::Right(AsyncOnly(memory.clone()));
        assert_eq!(right.find_by_hash_now(&hash).map(|_| ()), None);
        assert_eq!(right.record_last_use_now("key_1", later).map(|_| ()), None);
        assert_eq!(Arc::new(right).find_by_hash_now(&hash).map(|_| ()), None);
        let stored = memory.find_by_id("key_1").await.unwrap().unwrap();
        assert_eq!(stored.last_used_at, Some(used_at), "`None` did nothing");
    }

    #[tokio::test]
    async fn either_side_and_an_arc_forward_the_synchronous_rate_limit_check() {
        let memory = MemoryRateLimitStore::new();
        let limits = Limits::per_second(5);
        let remaining_after = |store: &dyn Fn() -> Option<Result<Decision, StoreError>>| {
            store().map(|decision| decision.unwrap().per_second.remaining)
        };
        let left = Limiter::Left(memory.clone());
        assert_eq!(remaining_after(&|| left.check_now("key", &limits, 1)), Some(4));
        let shared = Arc::new(left);
        assert_eq!(remaining_after(&|| shared.check_now("key", &limits, 1)), Some(3));
        let arc = Arc::new(memory.clone());
        assert_eq!(remaining_after(&|| arc.check_now("key", &limits, 1)), Some(2));

        let right = Arc::new(Limiter::Right(AsyncOnly(memory.clone())));
        assert_eq!(remaining_after(&|| right.check_now("key", &limits, 1)), None);
        let decision = right.check("key", &limits, 0).await.unwrap();
        assert_eq!(decision.per_second.remaining, 2, "`None` consumed nothing");
    }

    #[tokio::test]
    async fn both_sides_conform() {
        crate::conformance::key_store(&Keys::Left(MemoryKeyStore::new())).await;
        crate::conformance::key_store(&Keys::Right(AsyncOnly(MemoryKeyStore::new()))).await;
        crate::conformance::rate_limit_store(&Limiter::Left(MemoryRateLimitStore::new())).await;
        crate::conformance::rate_limit_store(&Limiter::Right(AsyncOnly(MemoryRateLimitStore::new()))).await;
        crate::conformance::replay_store(&EitherStore::<MemoryReplayStore, MemoryReplayStore>::Right(
            MemoryReplayStore::new(),
        ))
        .await;
    }
}
