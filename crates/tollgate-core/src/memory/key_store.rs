//! [`MemoryKeyStore`]: API keys in process memory, for one instance.

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use dashmap::DashMap;

use crate::error::StoreError;
use crate::key_store::{KeyHash, KeyRecord, KeyStore};

/// Keys in process memory: sharded maps, so concurrent lookups of different
/// keys do not contend. Clones share the same keys.
#[derive(Debug, Clone, Default)]
pub struct MemoryKeyStore {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_hash: DashMap<KeyHash, Arc<KeyRecord>, BuildDigestHasher>,
    hash_by_id: DashMap<String, KeyHash>,
    // The account's entry is held locked while its keys are counted and a
    // new one inserted, which makes the per-account limit atomic.
    hashes_by_account: DashMap<String, Vec<KeyHash>>,
}

// `KeyHash` is already a SHA-256 digest: its first bytes are as uniform as
// any hash function's output, so the map uses them as they are instead of
// hashing them again with SipHash. Only keys the server generated are ever
// inserted, so nobody can fill one bucket on purpose.
#[derive(Debug, Default, Clone, Copy)]
struct BuildDigestHasher;

#[derive(Default)]
struct DigestHasher(u64);

impl std::hash::BuildHasher for BuildDigestHasher {
    type Hasher = DigestHasher;

    fn build_hasher(&self) -> DigestHasher {
        DigestHasher::default()
    }
}

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let len = bytes.len().min(8);
        word[..len].copy_from_slice(&bytes[..len]);
        self.0 = self.0.rotate_left(17) ^ u64::from_le_bytes(word);
    }
}

impl MemoryKeyStore {
    /// An empty store.
    pub fn new() -> MemoryKeyStore {
        MemoryKeyStore::default()
    }

    /// How many keys the store holds, revoked ones included.
    pub fn len(&self) -> usize {
        self.inner.by_hash.len()
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.inner.by_hash.is_empty()
    }

    fn find(&self, hash: &KeyHash) -> Option<Arc<KeyRecord>> {
        self.inner.by_hash.get(hash).map(|entry| entry.clone())
    }

    fn note_use(&self, key_id: &str, at: SystemTime) {
        self.update(key_id, |record| {
            record.last_used_at = Some(record.last_used_at.map_or(at, |earlier| earlier.max(at)));
        });
    }

    // Replaces the record with `update` applied to a copy, under the shard lock.
    fn update(&self, key_id: &str, update: impl FnOnce(&mut KeyRecord)) -> Option<Arc<KeyRecord>> {
        let hash = *self.inner.hash_by_id.get(key_id)?;
        let mut entry = self.inner.by_hash.get_mut(&hash)?;
        let mut record = KeyRecord::clone(&entry);
        update(&mut record);
        *entry = Arc::new(record);
        Some(entry.clone())
    }
}

impl KeyStore for MemoryKeyStore {
    fn find_by_hash(&self, hash: &KeyHash) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
        std::future::ready(Ok(self.find(hash)))
    }

    fn find_by_id(&self, key_id: &str) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
        let found = self
            .inner
            .hash_by_id
            .get(key_id)
            .and_then(|hash| self.inner.by_hash.get(&*hash).map(|entry| entry.clone()));
        std::future::ready(Ok(found))
    }

    fn insert(
        &self,
        record: KeyRecord,
        max_active: Option<usize>,
        now: SystemTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let inner = &self.inner;
        let result = (|| {
            let mut account = inner
                .hashes_by_account
                .entry(record.account_id().to_owned())
                .or_default();
            if let Some(limit) = max_active {
                let active = account
                    .iter()
                    .filter_map(|hash| inner.by_hash.get(hash))
                    .filter(|existing| existing.counts_toward_limit(now))
                    .count();
                if active >= limit {
                    return Err(StoreError::KeyLimitReached { limit });
                }
            }
            if inner.by_hash.contains_key(&record.hash) {
                return Err(StoreError::Conflict("a key with this hash exists".into()));
            }
            match inner.hash_by_id.entry(record.id().to_owned()) {
                dashmap::Entry::Occupied(_) => {
                    return Err(StoreError::Conflict(format!("key id {} exists", record.id())))
                }
                dashmap::Entry::Vacant(slot) => {
                    slot.insert(record.hash);
                }
            }
            account.push(record.hash);
            inner.by_hash.insert(record.hash, Arc::new(record));
            Ok(())
        })();
        std::future::ready(result)
    }

    fn list_by_account(
        &self,
        account_id: &str,
    ) -> impl Future<Output = Result<Vec<Arc<KeyRecord>>, StoreError>> + Send {
        let mut records: Vec<Arc<KeyRecord>> = self
            .inner
            .hashes_by_account
            .get(account_id)
            .map(|hashes| {
                hashes
                    .iter()
                    .filter_map(|hash| self.inner.by_hash.get(hash).map(|entry| entry.clone()))
                    .collect()
            })
            .unwrap_or_default();
        records.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id().cmp(b.id())));
        std::future::ready(Ok(records))
    }

    fn revoke(
        &self,
        key_id: &str,
        at: SystemTime,
    ) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
        let updated = self.update(key_id, |record| {
            record.revoked_at = Some(record.revoked_at.map_or(at, |earlier| earlier.min(at)));
        });
        std::future::ready(Ok(updated))
    }

    fn record_last_use(&self, key_id: &str, at: SystemTime) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.note_use(key_id, at);
        std::future::ready(Ok(()))
    }

    /// Always answers: the keys are in this process.
    fn find_by_hash_now(&self, hash: &KeyHash) -> Option<Result<Option<Arc<KeyRecord>>, StoreError>> {
        Some(Ok(self.find(hash)))
    }

    /// Always answers: the keys are in this process.
    fn record_last_use_now(&self, key_id: &str, at: SystemTime) -> Option<Result<(), StoreError>> {
        self.note_use(key_id, at);
        Some(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conforms() {
        crate::conformance::key_store(&MemoryKeyStore::new()).await;
    }

    #[tokio::test]
    async fn the_synchronous_calls_agree_with_the_trait() {
        use std::time::{Duration, UNIX_EPOCH};

        use crate::principal::{KeyKind, Principal};

        let store = MemoryKeyStore::new();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let hash = KeyHash::from_bytes([7; 32]);
        let record = KeyRecord {
            principal: Principal::new("acct_1", "key_1", KeyKind::Production),
            hash,
            label: String::new(),
            display_prefix: "tg_live_abcd".into(),
            created_at: t0,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        };
        store.insert(record, None, t0).await.unwrap();
        let found = store.find_by_hash_now(&hash).expect("answered at once").unwrap();
        assert_eq!(found.as_deref().map(KeyRecord::id), Some("key_1"));
        assert_eq!(
            store
                .find_by_hash_now(&KeyHash::from_bytes([8; 32]))
                .expect("answered at once")
                .unwrap(),
            None
        );
        for (key_id, at) in [("key_1", 60), ("key_1", 30), ("key_2", 0)] {
            let recorded = store.record_last_use_now(key_id, t0 + Duration::from_secs(at));
            assert!(matches!(recorded, Some(Ok(()))), "{recorded:?}");
        }
        let found = store.find_by_hash(&hash).await.unwrap().unwrap();
        assert_eq!(
            found.last_used_at,
            Some(t0 + Duration::from_secs(60)),
            "the latest use is kept"
        );
        let now = store.find_by_hash_now(&hash).unwrap().unwrap().unwrap();
        assert_eq!(now, found, "both lookups read the same record");
    }
}
