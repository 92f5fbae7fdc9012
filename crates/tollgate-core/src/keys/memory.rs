//! [`MemoryKeyStore`]: API keys in process memory, for one instance.

use std::sync::Arc;
use std::time::SystemTime;

use dashmap::DashMap;

use super::{BuildDigestHasher, KeyHash, KeyRecord, KeyRegistry, KeyStore, RotateRefusal, Rotation};
use crate::error::StoreError;
use crate::maybe_ready::{MaybeReady, StoreFuture};

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

    // The account's entry stays locked while its keys are counted and the
    // new one inserted: that is what makes the limit atomic.
    fn insert_under_limit(
        &self,
        record: KeyRecord,
        max_active: Option<usize>,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let inner = &self.inner;
        let mut account = inner
            .hashes_by_account
            .entry(record.account_id().to_owned())
            .or_default();
        self.check_limit(&account, max_active, now)?;
        if inner.by_hash.contains_key(&record.hash) {
            return Err(StoreError::Conflict("a key with this hash exists".into()));
        }
        match inner.hash_by_id.entry(record.id().to_owned()) {
            dashmap::Entry::Occupied(_) => return Err(StoreError::Conflict(format!("key id {} exists", record.id()))),
            dashmap::Entry::Vacant(slot) => {
                slot.insert(record.hash);
            }
        }
        account.push(record.hash);
        inner.by_hash.insert(record.hash, Arc::new(record));
        Ok(())
    }

    // Refuses when the account (its entry held locked by the caller) already
    // has `max_active` keys that authenticate at `now`, retiring ones included.
    fn check_limit(&self, account: &[KeyHash], max_active: Option<usize>, now: SystemTime) -> Result<(), StoreError> {
        let Some(limit) = max_active else {
            return Ok(());
        };
        let active = account
            .iter()
            .filter_map(|hash| self.inner.by_hash.get(hash))
            .filter(|existing| existing.counts_toward_limit(now))
            .count();
        if active >= limit {
            return Err(StoreError::KeyLimitReached { limit });
        }
        Ok(())
    }

    // Under the account's lock, like an insert, so two rotations of one key
    // cannot both see it active, and the limit is counted and kept in one step.
    fn rotate_locked(&self, rotation: Rotation) -> Result<Result<Arc<KeyRecord>, RotateRefusal>, StoreError> {
        let (key_id, successor) = (rotation.key_id.as_str(), rotation.successor);
        let (retire_at, now, max_active) = (rotation.retire_at, rotation.now, rotation.max_active);
        let inner = &self.inner;
        let Some(hash) = inner.hash_by_id.get(key_id).map(|hash| *hash) else {
            return Ok(Err(RotateRefusal::Unknown));
        };
        let Some(account_id) = inner.by_hash.get(&hash).map(|record| record.account_id().to_owned()) else {
            return Ok(Err(RotateRefusal::Unknown));
        };
        let mut account = inner.hashes_by_account.entry(account_id).or_default();
        let Some(current) = inner.by_hash.get(&hash).map(|record| record.clone()) else {
            return Ok(Err(RotateRefusal::Unknown));
        };
        if !current.is_valid_at(now) {
            return Ok(Err(RotateRefusal::Invalid));
        }
        if current.revoked_at.is_some() {
            return Ok(Err(RotateRefusal::Retiring));
        }
        self.check_limit(&account, max_active, now)?;
        if inner.by_hash.contains_key(&successor.hash) {
            return Err(StoreError::Conflict("a key with this hash exists".into()));
        }
        match inner.hash_by_id.entry(successor.id().to_owned()) {
            dashmap::Entry::Occupied(_) => {
                return Err(StoreError::Conflict(format!("key id {} exists", successor.id())))
            }
            dashmap::Entry::Vacant(slot) => {
                slot.insert(successor.hash);
            }
        }
        account.push(successor.hash);
        inner.by_hash.insert(successor.hash, Arc::new(successor));
        let mut retiring = KeyRecord::clone(&current);
        retiring.revoked_at = Some(retire_at);
        let retiring = Arc::new(retiring);
        inner.by_hash.insert(hash, retiring.clone());
        Ok(Ok(retiring))
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
    fn find_by_hash(&self, hash: &KeyHash) -> StoreFuture<Option<Arc<KeyRecord>>> {
        MaybeReady::ready(Ok(self.inner.by_hash.get(hash).map(|entry| entry.clone())))
    }

    fn record_last_use(&self, key_id: &str, at: SystemTime) -> StoreFuture<()> {
        self.update(key_id, |record| {
            record.last_used_at = Some(record.last_used_at.map_or(at, |earlier| earlier.max(at)));
        });
        MaybeReady::ready(Ok(()))
    }
}

impl KeyRegistry for MemoryKeyStore {
    fn find_by_id(&self, key_id: &str) -> StoreFuture<Option<Arc<KeyRecord>>> {
        let found = self
            .inner
            .hash_by_id
            .get(key_id)
            .and_then(|hash| self.inner.by_hash.get(&*hash).map(|entry| entry.clone()));
        MaybeReady::ready(Ok(found))
    }

    fn insert(&self, record: KeyRecord, max_active: Option<usize>, now: SystemTime) -> StoreFuture<()> {
        MaybeReady::ready(self.insert_under_limit(record, max_active, now))
    }

    fn list_by_account(&self, account_id: &str) -> StoreFuture<Vec<Arc<KeyRecord>>> {
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
        MaybeReady::ready(Ok(records))
    }

    fn revoke(&self, key_id: &str, at: SystemTime) -> StoreFuture<Option<Arc<KeyRecord>>> {
        let updated = self.update(key_id, |record| {
            record.revoked_at = Some(record.revoked_at.map_or(at, |earlier| earlier.min(at)));
        });
        MaybeReady::ready(Ok(updated))
    }

    fn rotate(&self, rotation: Rotation) -> StoreFuture<Result<Arc<KeyRecord>, RotateRefusal>> {
        MaybeReady::ready(self.rotate_locked(rotation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conforms() {
        crate::conformance::key_store(&MemoryKeyStore::new()).await;
    }

    // 20 rotations and 20 creations as tokio tasks on four threads, with the
    // account listed from another task throughout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_key_limit_holds_under_parallel_rotations_and_creations() {
        crate::conformance::key_limit_in_parallel(&MemoryKeyStore::new(), |task| {
            let handle = tokio::spawn(task);
            Box::pin(async move { handle.await.expect("the task finished") })
        })
        .await;
    }
}
