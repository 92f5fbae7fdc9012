//! [`CachedKeyStore`]: an in-process cache in front of any [`KeyStore`], so
//! that authenticating a request with a known key costs no round trip to a
//! shared backend (Redis, SQL) most of the time.
//!
//! # What it promises
//!
//! - **Across instances, revocation takes effect within the TTL** (default
//!   one second, [`DEFAULT_TTL`]). A record is served from the cache only
//!   while it is younger than the TTL, its age counted from *before* the
//!   backend was asked; so once a revocation (or rotation, or expiry change)
//!   is written by another instance, every instance refuses the key no later
//!   than one TTL afterwards.
//! - **On this instance, writes take effect on the very next request.**
//!   [`revoke`](KeyStore::revoke) and [`insert`](KeyStore::insert) go to the
//!   backend and then drop this instance's cached entry; a lookup that read
//!   the backend before the write finished is not cached either.
//! - **Unknown keys are never cached**: a key created on another instance
//!   works here at once. The price is that an unknown token reaches the
//!   backend on every request (a checksum check in the auth layer is the
//!   cheap defence against garbage tokens).
//! - **A hit costs no future**: [`find_by_hash_now`](KeyStore::find_by_hash_now)
//!   answers a fresh hit synchronously (and a miss too, over an inner store
//!   that answers synchronously), so the auth layer boxes nothing then; over
//!   an async-only store a miss answers `None` and `find_by_hash` fills the cache.
//! - **Management reads are fresh**: [`find_by_id`](KeyStore::find_by_id)
//!   and [`list_by_account`](KeyStore::list_by_account) always ask the backend.
//! - **Bounded memory**: at most [`max_entries`](CachedKeyStore::max_entries)
//!   records (default [`DEFAULT_MAX_ENTRIES`]); when full, inserting evicts
//!   an entry close to its expiry.
//!
//! A cached record's `last_used_at` may lag the backend's by up to the TTL.
//! [`record_last_use`](KeyStore::record_last_use) updates the cached copy
//! too, so the auth layer, which writes a key's use only when the recorded
//! one is old enough, does not write on every request.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use tollgate_core::{CachedKeyStore, KeyHash, KeyKind, KeyRecord, KeyStore, MemoryKeyStore, Principal};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // In a fleet the inner store would be Redis or SQL, shared by every instance.
//! let shared = MemoryKeyStore::new();
//! let keys = CachedKeyStore::new(shared.clone()).ttl(Duration::from_secs(1));
//!
//! let now = SystemTime::now();
//! let hash = KeyHash::from_bytes([7; 32]);
//! let record = KeyRecord {
//!     principal: Principal::new("acct_1", "key_1", KeyKind::Production),
//!     hash,
//!     label: "Production Server".into(),
//!     display_prefix: "tg_live_abcd".into(),
//!     created_at: now,
//!     expires_at: None,
//!     revoked_at: None,
//!     last_used_at: None,
//! };
//! keys.insert(record, None, now).await.unwrap();
//!
//! let found = keys.find_by_hash(&hash).await.unwrap().expect("a known key");
//! assert!(found.is_valid_at(now));
//! assert_eq!(keys.cached_entries(), 1, "later lookups are served from memory");
//!
//! // Revoked through this store: refused on the very next lookup.
//! keys.revoke("key_1", now).await.unwrap();
//! let found = keys.find_by_hash(&hash).await.unwrap().expect("still stored");
//! assert!(!found.is_valid_at(now));
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

use crate::clock::SharedClock;
use crate::error::StoreError;
use crate::key_store::{KeyHash, KeyRecord, KeyStore};

/// How long a cached record is served by default: the bound on how late
/// another instance's revocation takes effect here.
pub const DEFAULT_TTL: Duration = Duration::from_secs(1);

/// How many records are cached at most by default.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

// Independent locks, so concurrent lookups of different keys rarely meet.
const MAX_SHARDS: usize = 32;

// When a shard is full, the entry evicted is the oldest of this many
// (which are in no particular order): cheap, and it spares fresh entries.
const EVICTION_SAMPLE: usize = 4;

/// A [`KeyStore`] that caches found records in process memory for a short
/// TTL. See the [module docs](self) for what it promises.
///
/// Clones share the cache and the inner store; builder methods give the
/// store a new, empty cache (call them before cloning).
pub struct CachedKeyStore<S> {
    inner: Arc<S>,
    cache: Arc<Cache>,
}

impl<S: KeyStore> CachedKeyStore<S> {
    /// Caches lookups of `inner` for [`DEFAULT_TTL`], at most
    /// [`DEFAULT_MAX_ENTRIES`] records, on the system clock.
    pub fn new(inner: S) -> CachedKeyStore<S> {
        CachedKeyStore::from_shared(Arc::new(inner))
    }

    /// Like [`CachedKeyStore::new`], for a store already shared.
    pub fn from_shared(inner: Arc<S>) -> CachedKeyStore<S> {
        CachedKeyStore {
            inner,
            cache: Arc::new(Cache::new(DEFAULT_TTL, DEFAULT_MAX_ENTRIES, SharedClock::default())),
        }
    }
}

impl<S> CachedKeyStore<S> {
    /// How long a record read from the inner store is served without asking
    /// again: the longest another instance's revocation can go unnoticed
    /// here. `Duration::ZERO` turns caching off.
    pub fn ttl(self, ttl: Duration) -> Self {
        let cache = Cache::new(ttl, self.cache.max_entries, self.cache.clock.clone());
        self.with_cache(cache)
    }

    /// The most records cached at once (0 turns caching off).
    pub fn max_entries(self, max_entries: usize) -> Self {
        let cache = Cache::new(self.cache.ttl, max_entries, self.cache.clock.clone());
        self.with_cache(cache)
    }

    /// The clock that ages cached records.
    pub fn clock(self, clock: impl Into<SharedClock>) -> Self {
        let cache = Cache::new(self.cache.ttl, self.cache.max_entries, clock.into());
        self.with_cache(cache)
    }

    fn with_cache(self, cache: Cache) -> Self {
        CachedKeyStore {
            inner: self.inner,
            cache: Arc::new(cache),
        }
    }

    /// The inner store.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// How many records are cached now (expired ones not yet replaced included).
    pub fn cached_entries(&self) -> usize {
        self.cache.shards.iter().map(|shard| read(shard).by_hash.len()).sum()
    }

    /// Forgets this instance's cached record of the key, so the next lookup
    /// reads the inner store: for a revocation announced by another
    /// instance (say over a pub/sub channel), to make it effective here
    /// sooner than the TTL.
    pub fn evict(&self, key_id: &str) {
        self.cache.invalidate(key_id, None);
    }
}

impl<S> Clone for CachedKeyStore<S> {
    fn clone(&self) -> Self {
        CachedKeyStore {
            inner: self.inner.clone(),
            cache: self.cache.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for CachedKeyStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedKeyStore")
            .field("inner", &self.inner)
            .field("ttl", &self.cache.ttl)
            .field("max_entries", &self.cache.max_entries)
            .field("cached_entries", &self.cached_entries())
            .finish()
    }
}

impl<S: KeyStore> KeyStore for CachedKeyStore<S> {
    async fn find_by_hash(&self, hash: &KeyHash) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        // Read before the inner store is asked: the entry's age then covers
        // the whole round trip, which keeps the bound strict.
        let now = self.cache.clock.now();
        if let Some(record) = self.cache.fresh(hash, now) {
            return Ok(Some(record));
        }
        let writes_before = self.cache.writes.load(Ordering::SeqCst);
        let found = self.inner.find_by_hash(hash).await?;
        self.cache.remember(hash, &found, now, writes_before);
        Ok(found)
    }

    fn find_by_id(&self, key_id: &str) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
        self.inner.find_by_id(key_id)
    }

    async fn insert(&self, record: KeyRecord, max_active: Option<usize>, now: SystemTime) -> Result<(), StoreError> {
        let _invalidation = Invalidation {
            cache: &self.cache,
            key_id: record.id().to_owned(),
            hash: Some(record.hash),
        };
        self.inner.insert(record, max_active, now).await
    }

    fn list_by_account(
        &self,
        account_id: &str,
    ) -> impl Future<Output = Result<Vec<Arc<KeyRecord>>, StoreError>> + Send {
        self.inner.list_by_account(account_id)
    }

    async fn revoke(&self, key_id: &str, at: SystemTime) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let _invalidation = Invalidation {
            cache: &self.cache,
            key_id: key_id.to_owned(),
            hash: None,
        };
        self.inner.revoke(key_id, at).await
    }

    async fn record_last_use(&self, key_id: &str, at: SystemTime) -> Result<(), StoreError> {
        // Before the write, so concurrent requests with this key stop
        // finding its use due; and even if the write fails, so a failing
        // backend is not sent one write per request until the TTL.
        self.cache.note_last_use(key_id, at);
        self.inner.record_last_use(key_id, at).await
    }

    /// A fresh cached record at once; on a miss, the inner store's own
    /// synchronous answer (cached like [`find_by_hash`](KeyStore::find_by_hash)'s)
    /// if it has one, else `None`, so the caller's `find_by_hash` reads the
    /// inner store and fills the cache.
    fn find_by_hash_now(&self, hash: &KeyHash) -> Option<Result<Option<Arc<KeyRecord>>, StoreError>> {
        // The same steps as `find_by_hash`, with the same clock reading
        // before the inner store is asked.
        let now = self.cache.clock.now();
        if let Some(record) = self.cache.fresh(hash, now) {
            return Some(Ok(Some(record)));
        }
        let writes_before = self.cache.writes.load(Ordering::SeqCst);
        let found = self.inner.find_by_hash_now(hash)?;
        if let Ok(found) = &found {
            self.cache.remember(hash, found, now, writes_before);
        }
        Some(found)
    }

    /// Updates the cached record, then writes through the inner store's
    /// synchronous path if it has one; `None` otherwise, and the caller's
    /// `record_last_use` updates the cached record again (a no-op: a use
    /// never moves backwards) and writes.
    fn record_last_use_now(&self, key_id: &str, at: SystemTime) -> Option<Result<(), StoreError>> {
        self.cache.note_last_use(key_id, at);
        self.inner.record_last_use_now(key_id, at)
    }
}

// Drops this instance's entry for a key once a write to it is over, and
// also if the write's future is dropped half-way (the write may have been
// applied): the entry is never left older than the backend.
struct Invalidation<'a> {
    cache: &'a Cache,
    key_id: String,
    hash: Option<KeyHash>,
}

impl Drop for Invalidation<'_> {
    fn drop(&mut self) {
        self.cache.invalidate(&self.key_id, self.hash);
    }
}

struct Cache {
    shards: Box<[RwLock<Shard>]>,
    ttl: Duration,
    max_entries: usize,
    clock: SharedClock,
    // Counts writes through this cache. A lookup caches what it read only
    // if no write began since it asked: otherwise its answer may predate
    // the write, and caching it would undo the write's invalidation.
    writes: AtomicU64,
}

impl Cache {
    fn new(ttl: Duration, max_entries: usize, clock: SharedClock) -> Cache {
        // A power of two, and no more shards than entries; the capacity is
        // spread so that the shards hold `max_entries` in all.
        let count = MAX_SHARDS.min(max_entries.max(1));
        let count = 1 << count.ilog2();
        let shards = (0..count)
            .map(|index| {
                let capacity = max_entries / count + usize::from(index < max_entries % count);
                RwLock::new(Shard::with_capacity(capacity))
            })
            .collect();
        Cache {
            shards,
            ttl,
            max_entries,
            clock,
            writes: AtomicU64::new(0),
        }
    }

    fn shard(&self, hash: &KeyHash) -> &RwLock<Shard> {
        // The hash is a SHA-256 digest: any of its bytes is uniform. Not the
        // first eight, which the shard's own map uses.
        let index = usize::from(hash.as_bytes()[8]) & (self.shards.len() - 1);
        &self.shards[index]
    }

    fn is_fresh(&self, entry: &Entry, now: SystemTime) -> bool {
        // A clock that stepped back makes every entry stale: re-reading is
        // always safe, serving forever is not.
        now.duration_since(entry.fetched_at).is_ok_and(|age| age < self.ttl)
    }

    fn fresh(&self, hash: &KeyHash, now: SystemTime) -> Option<Arc<KeyRecord>> {
        let shard = read(self.shard(hash));
        let entry = shard.by_hash.get(hash)?;
        self.is_fresh(entry, now).then(|| entry.record.clone())
    }

    fn fill(&self, hash: KeyHash, record: Arc<KeyRecord>, fetched_at: SystemTime, writes_before: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let mut shard = write(self.shard(&hash));
        // Checked under the shard's lock: a write that began after this
        // check drops its entry after this insert, so it still wins.
        if self.writes.load(Ordering::SeqCst) != writes_before {
            return;
        }
        shard.insert(hash, Entry { record, fetched_at });
    }

    // What a lookup that began at `now` found: cached if it is a record,
    // and an unknown key's stale entry (if any) dropped.
    fn remember(&self, hash: &KeyHash, found: &Option<Arc<KeyRecord>>, now: SystemTime, writes_before: u64) {
        match found {
            Some(record) => self.fill(*hash, record.clone(), now, writes_before),
            None => self.remove_hash(hash),
        }
    }

    fn remove_hash(&self, hash: &KeyHash) {
        let mut shard = write(self.shard(hash));
        shard.remove(hash);
    }

    fn invalidate(&self, key_id: &str, hash: Option<KeyHash>) {
        self.writes.fetch_add(1, Ordering::SeqCst);
        if let Some(hash) = hash {
            self.remove_hash(&hash);
        }
        // Writes are rare: looking through every shard for the id is cheaper
        // than keeping a second index consistent with the first.
        for shard in self.shards.iter() {
            let mut shard = write(shard);
            if let Some(hash) = shard.hash_by_id.get(key_id).copied() {
                shard.remove(&hash);
            }
        }
    }

    fn note_last_use(&self, key_id: &str, at: SystemTime) {
        for shard in self.shards.iter() {
            let mut shard = write(shard);
            let Some(hash) = shard.hash_by_id.get(key_id).copied() else {
                continue;
            };
            if let Some(entry) = shard.by_hash.get_mut(&hash) {
                if entry.record.last_used_at.is_none_or(|last| last < at) {
                    let mut record = KeyRecord::clone(&entry.record);
                    record.last_used_at = Some(at);
                    // The age is kept: a use is no news about revocation.
                    entry.record = Arc::new(record);
                }
            }
            return;
        }
    }
}

struct Entry {
    record: Arc<KeyRecord>,
    // When the lookup that read it began.
    fetched_at: SystemTime,
}

struct Shard {
    by_hash: HashMap<KeyHash, Entry, BuildHasherDefault<DigestHasher>>,
    // The ids of the records in `by_hash`, so writes by id find their entry.
    hash_by_id: HashMap<String, KeyHash>,
    capacity: usize,
}

impl Shard {
    fn with_capacity(capacity: usize) -> Shard {
        Shard {
            by_hash: HashMap::default(),
            hash_by_id: HashMap::new(),
            capacity,
        }
    }

    fn insert(&mut self, hash: KeyHash, entry: Entry) {
        if let Some(existing) = self.by_hash.get(&hash) {
            // Two lookups raced: keep the one that began last.
            if existing.fetched_at > entry.fetched_at {
                return;
            }
            self.remove(&hash);
        }
        if self.capacity == 0 {
            return;
        }
        if self.by_hash.len() >= self.capacity {
            self.evict_one();
        }
        self.hash_by_id.insert(entry.record.id().to_owned(), hash);
        self.by_hash.insert(hash, entry);
    }

    fn remove(&mut self, hash: &KeyHash) {
        if let Some(entry) = self.by_hash.remove(hash) {
            self.hash_by_id.remove(entry.record.id());
        }
    }

    fn evict_one(&mut self) {
        let oldest = self
            .by_hash
            .iter()
            .take(EVICTION_SAMPLE)
            .min_by_key(|(_, entry)| entry.fetched_at)
            .map(|(hash, _)| *hash);
        if let Some(hash) = oldest {
            self.remove(&hash);
        }
    }
}

// `KeyHash` is already a SHA-256 digest, so the shard's map uses its first
// eight bytes as they are instead of hashing them again. Only records the
// inner store found are inserted, and their keys are generated by the
// server, so nobody can crowd one bucket on purpose.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        if let Some(word) = bytes.first_chunk::<8>() {
            self.0 = u64::from_le_bytes(*word);
        }
    }

    // The array's length prefix says nothing: the digest alone is used.
    fn write_usize(&mut self, _length: usize) {}
}

// A panic while a shard is locked cannot leave it inconsistent (every
// update is a single map operation pair that does not panic), so a
// poisoned lock is used as it is.
fn read(shard: &RwLock<Shard>) -> RwLockReadGuard<'_, Shard> {
    shard.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(shard: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
    shard.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::task::{Context, Poll, Waker};
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::memory::MemoryKeyStore;
    use crate::principal::{KeyKind, Principal};

    const MS: Duration = Duration::from_millis(1);

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    // Digest-like bytes: every byte varies from key to key.
    fn hash_of(n: u32) -> KeyHash {
        let mut bytes = [0u8; 32];
        let mut x = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        for chunk in bytes.chunks_mut(8) {
            x ^= x >> 29;
            x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        KeyHash::from_bytes(bytes)
    }

    fn record(n: u32) -> KeyRecord {
        KeyRecord {
            principal: Principal::new("acct_1", format!("key_{n}"), KeyKind::Production),
            hash: hash_of(n),
            label: String::new(),
            display_prefix: "tg_live_abcd".into(),
            created_at: t0(),
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        }
    }

    /// The shared backend as the cache sees it: counts lookups and recorded
    /// uses, can fail, and can hold a lookup or a revocation once it has
    /// read or written, to open a race at a chosen point.
    #[derive(Clone, Default)]
    struct Probe {
        store: MemoryKeyStore,
        lookups: Arc<AtomicUsize>,
        uses: Arc<AtomicUsize>,
        failing: Arc<AtomicBool>,
        held: Arc<AtomicBool>,
    }

    impl Probe {
        fn with_keys(keys: impl IntoIterator<Item = u32>) -> Probe {
            let probe = Probe::default();
            for n in keys {
                ready(probe.store.insert(record(n), None, t0())).expect("insert");
            }
            probe
        }

        fn lookups(&self) -> usize {
            self.lookups.load(Ordering::SeqCst)
        }

        async fn release(&self) {
            std::future::poll_fn(|_| {
                if self.held.load(Ordering::SeqCst) {
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
        }
    }

    impl KeyStore for Probe {
        async fn find_by_hash(&self, hash: &KeyHash) -> Result<Option<Arc<KeyRecord>>, StoreError> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            if self.failing.load(Ordering::SeqCst) {
                return Err(StoreError::Timeout);
            }
            let found = self.store.find_by_hash(hash).await;
            self.release().await;
            found
        }

        fn find_by_id(&self, key_id: &str) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
            self.store.find_by_id(key_id)
        }

        fn insert(
            &self,
            record: KeyRecord,
            max_active: Option<usize>,
            now: SystemTime,
        ) -> impl Future<Output = Result<(), StoreError>> + Send {
            self.store.insert(record, max_active, now)
        }

        fn list_by_account(
            &self,
            account_id: &str,
        ) -> impl Future<Output = Result<Vec<Arc<KeyRecord>>, StoreError>> + Send {
            self.store.list_by_account(account_id)
        }

        async fn revoke(&self, key_id: &str, at: SystemTime) -> Result<Option<Arc<KeyRecord>>, StoreError> {
            let revoked = self.store.revoke(key_id, at).await;
            self.release().await;
            revoked
        }

        fn record_last_use(&self, key_id: &str, at: SystemTime) -> impl Future<Output = Result<(), StoreError>> + Send {
            self.uses.fetch_add(1, Ordering::SeqCst);
            self.store.record_last_use(key_id, at)
        }
    }

    fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(Waker::noop()))
    }

    // Runs a future that must not wait (nothing here waits unless held).
    fn ready<F: Future>(future: F) -> F::Output {
        match poll_once(pin!(future)) {
            Poll::Ready(output) => output,
            Poll::Pending => panic!("a future waited"),
        }
    }

    fn cache_over(probe: &Probe, clock: &ManualClock) -> CachedKeyStore<Probe> {
        CachedKeyStore::new(probe.clone()).clock(clock.clone())
    }

    fn lookup<S: KeyStore>(store: &CachedKeyStore<S>, n: u32) -> Arc<KeyRecord> {
        let found = ready(store.find_by_hash(&hash_of(n)))
            .expect("no fault")
            .expect("a known key");
        assert_eq!(found.hash, hash_of(n), "the record of the key asked for");
        found
    }

    #[tokio::test]
    async fn conforms() {
        crate::conformance::key_store(&CachedKeyStore::new(MemoryKeyStore::new())).await;
    }

    #[tokio::test]
    async fn conforms_whatever_the_ttl() {
        // The suite writes through the cache, which drops its own entries:
        // for one instance the TTL never shows.
        let store = CachedKeyStore::new(MemoryKeyStore::new()).ttl(Duration::from_secs(3600));
        crate::conformance::key_store(&store).await;
    }

    #[test]
    fn a_record_is_served_from_memory_until_the_ttl_then_read_again() {
        let clock = ManualClock::new(t0());
        let probe = Probe::with_keys([1]);
        let keys = cache_over(&probe, &clock);
        assert_eq!(lookup(&keys, 1).id(), "key_1");
        assert_eq!(probe.lookups(), 1);
        clock.advance(999 * MS);
        assert_eq!(lookup(&keys, 1).id(), "key_1");
        assert_eq!(probe.lookups(), 1, "at 999 ms the cached record is served");
        clock.advance(MS);
        lookup(&keys, 1);
        assert_eq!(probe.lookups(), 2, "at 1 s it is read again");
        clock.advance(999 * MS);
        lookup(&keys, 1);
        assert_eq!(probe.lookups(), 2, "and served for another TTL");

        let uncached = cache_over(&probe, &clock).ttl(Duration::ZERO);
        lookup(&uncached, 1);
        lookup(&uncached, 1);
        assert_eq!(probe.lookups(), 4, "a zero TTL caches nothing");
        assert_eq!(uncached.cached_entries(), 0);
    }

    #[test]
    fn a_revocation_through_another_instance_takes_effect_here_within_the_ttl() {
        let clock = ManualClock::new(t0());
        let shared = Probe::with_keys([1]);
        let here = cache_over(&shared, &clock);
        let there = cache_over(&shared, &clock);
        assert!(lookup(&here, 1).is_valid_at(clock.now()));
        assert!(lookup(&there, 1).is_valid_at(clock.now()));
        // Revoked elsewhere just after this instance cached it: the worst case.
        ready(there.revoke("key_1", t0()))
            .expect("revoke")
            .expect("a known key");
        assert!(
            !lookup(&there, 1).is_valid_at(clock.now()),
            "the revoking instance refuses the key at once"
        );
        clock.advance(999 * MS);
        let stale = lookup(&here, 1);
        assert_eq!(stale.revoked_at, None, "still served from memory here at 999 ms");
        assert!(stale.is_valid_at(clock.now()));
        clock.advance(MS);
        let fresh = lookup(&here, 1);
        assert_eq!(fresh.revoked_at, Some(t0()), "read again at 1 s");
        assert!(
            !fresh.is_valid_at(clock.now()),
            "so refused one TTL after the revocation"
        );
    }

    #[test]
    fn the_ttl_counts_from_the_read_so_a_later_revocation_is_seen_sooner() {
        let clock = ManualClock::new(t0());
        let shared = Probe::with_keys([1]);
        let here = cache_over(&shared, &clock);
        let there = cache_over(&shared, &clock);
        lookup(&here, 1);
        clock.advance(600 * MS);
        ready(there.revoke("key_1", clock.now())).expect("revoke");
        clock.advance(399 * MS);
        assert_eq!(lookup(&here, 1).revoked_at, None, "cached 999 ms ago");
        clock.advance(MS);
        assert!(
            !lookup(&here, 1).is_valid_at(clock.now()),
            "refused 400 ms after the revocation"
        );
    }

    #[test]
    fn a_write_through_this_instance_takes_effect_on_its_next_lookup() {
        let clock = ManualClock::new(t0());
        let probe = Probe::with_keys([1, 2]);
        let keys = cache_over(&probe, &clock);
        lookup(&keys, 1);
        lookup(&keys, 2);
        // A rotation: the old key retires in an hour and works until then.
        let retire_at = t0() + Duration::from_secs(3600);
        ready(keys.revoke("key_1", retire_at))
            .expect("revoke")
            .expect("a known key");
        let retiring = lookup(&keys, 1);
        assert_eq!(retiring.revoked_at, Some(retire_at));
        assert!(retiring.is_valid_at(clock.now()));
        ready(keys.revoke("key_1", t0())).expect("revoke");
        assert!(!lookup(&keys, 1).is_valid_at(clock.now()), "refused on the next lookup");
        assert_eq!(
            probe.lookups(),
            4,
            "each write sent the next lookup of its key to the store"
        );
        lookup(&keys, 2);
        assert_eq!(probe.lookups(), 4, "other keys stay cached");
        assert_eq!(
            ready(keys.revoke("key_404", t0())).expect("revoke"),
            None,
            "an unknown id is still answered by the store"
        );
    }

    #[test]
    fn unknown_keys_are_never_cached_so_a_key_created_elsewhere_works_at_once() {
        let clock = ManualClock::new(t0());
        let shared = Probe::default();
        let here = cache_over(&shared, &clock);
        let there = cache_over(&shared, &clock);
        for _ in 0..2 {
            assert!(ready(here.find_by_hash(&hash_of(1))).expect("no fault").is_none());
        }
        assert_eq!(shared.lookups(), 2, "every lookup of an unknown key reaches the store");
        assert_eq!(here.cached_entries(), 0);
        ready(there.insert(record(1), None, t0())).expect("insert");
        assert_eq!(lookup(&here, 1).id(), "key_1", "found here at once");
        assert_eq!(here.cached_entries(), 1);
    }

    #[test]
    fn management_reads_always_ask_the_store() {
        let clock = ManualClock::new(t0());
        let shared = Probe::with_keys([1]);
        let here = cache_over(&shared, &clock);
        lookup(&here, 1);
        ready(shared.store.revoke("key_1", t0())).expect("revoke");
        let by_id = ready(here.find_by_id("key_1")).expect("find").expect("a known key");
        assert_eq!(by_id.revoked_at, Some(t0()));
        let listed = ready(here.list_by_account("acct_1")).expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].revoked_at, Some(t0()));
    }

    #[test]
    fn a_recorded_use_updates_the_cached_record_without_renewing_it() {
        let clock = ManualClock::new(t0());
        let probe = Probe::with_keys([1]);
        let keys = cache_over(&probe, &clock);
        lookup(&keys, 1);
        clock.advance(500 * MS);
        let used_at = clock.now();
        ready(keys.record_last_use("key_1", used_at)).expect("record");
        assert_eq!(lookup(&keys, 1).last_used_at, Some(used_at), "seen without a read");
        ready(keys.record_last_use("key_1", t0())).expect("record");
        assert_eq!(lookup(&keys, 1).last_used_at, Some(used_at), "never moves back");
        assert_eq!(probe.lookups(), 1);
        clock.advance(500 * MS);
        let reread = lookup(&keys, 1);
        assert_eq!(probe.lookups(), 2, "a use does not extend the TTL");
        assert_eq!(reread.last_used_at, Some(used_at), "the store has it too");
    }

    #[test]
    fn a_fresh_hit_is_answered_at_once_and_a_miss_over_an_async_store_goes_async() {
        let clock = ManualClock::new(t0());
        // `Probe` has only the async methods, as a remote store would.
        let probe = Probe::with_keys([1]);
        let keys = cache_over(&probe, &clock);
        assert!(keys.find_by_hash_now(&hash_of(1)).is_none(), "a miss: ask find_by_hash");
        assert!(keys.find_by_hash_now(&hash_of(2)).is_none(), "so is an unknown key");
        assert_eq!(
            (probe.lookups(), keys.cached_entries()),
            (0, 0),
            "nothing read or cached"
        );
        let found = lookup(&keys, 1);
        let now = keys
            .find_by_hash_now(&hash_of(1))
            .expect("a fresh hit")
            .expect("no fault");
        assert_eq!(now, Some(found));
        clock.advance(999 * MS);
        assert!(keys.find_by_hash_now(&hash_of(1)).is_some(), "fresh at 999 ms");
        clock.advance(MS);
        assert!(keys.find_by_hash_now(&hash_of(1)).is_none(), "stale at 1 s: read again");
        assert_eq!(probe.lookups(), 1);

        // A use is noted in the cached record, and left for the async call to write.
        lookup(&keys, 1);
        let used_at = clock.now();
        assert!(keys.record_last_use_now("key_1", used_at).is_none());
        assert_eq!(probe.uses.load(Ordering::SeqCst), 0);
        let cached = keys.find_by_hash_now(&hash_of(1)).unwrap().unwrap().unwrap();
        assert_eq!(cached.last_used_at, Some(used_at));
        ready(keys.record_last_use("key_1", used_at)).expect("record");
        assert_eq!(probe.uses.load(Ordering::SeqCst), 1);
        assert_eq!(lookup(&keys, 1).last_used_at, Some(used_at));
    }

    #[test]
    fn over_a_synchronous_store_a_miss_is_answered_at_once_and_cached() {
        let clock = ManualClock::new(t0());
        let inner = MemoryKeyStore::new();
        ready(inner.insert(record(1), None, t0())).expect("insert");
        let keys = CachedKeyStore::new(inner.clone()).clock(clock.clone());
        let answer = |n| {
            keys.find_by_hash_now(&hash_of(n))
                .expect("answered at once")
                .expect("no fault")
        };
        assert_eq!(answer(2), None, "an unknown key");
        assert_eq!(keys.cached_entries(), 0, "is not cached");
        assert_eq!(answer(1).expect("a known key").id(), "key_1");
        assert_eq!(keys.cached_entries(), 1, "a found record is");

        // Revoked behind the cache's back (another instance): served until the TTL.
        ready(inner.revoke("key_1", t0())).expect("revoke");
        clock.advance(999 * MS);
        assert_eq!(answer(1).expect("cached").revoked_at, None);
        clock.advance(MS);
        assert_eq!(answer(1).expect("re-read").revoked_at, Some(t0()));

        // Written through the cache: effective on the next lookup.
        ready(inner.insert(record(3), None, t0())).expect("insert");
        assert!(answer(3).expect("cached now").is_valid_at(clock.now()));
        ready(keys.revoke("key_3", t0())).expect("revoke");
        assert!(!answer(3).expect("still stored").is_valid_at(clock.now()));

        // A use is written through, and seen in the cached record.
        let used_at = clock.now();
        assert!(matches!(keys.record_last_use_now("key_3", used_at), Some(Ok(()))));
        assert_eq!(answer(3).expect("cached").last_used_at, Some(used_at));
        let stored = ready(inner.find_by_id("key_3")).unwrap().unwrap();
        assert_eq!(stored.last_used_at, Some(used_at), "the inner store has it");
    }

    #[test]
    fn a_busy_key_is_not_recorded_as_used_on_every_request() {
        // The auth layer's rule: record a use only when the recorded one is
        // at least `resolution` old. 300 requests over three seconds, each
        // looking the key up through the cache, write once.
        let resolution = Duration::from_secs(60);
        let clock = ManualClock::new(t0());
        let probe = Probe::with_keys([1]);
        let keys = cache_over(&probe, &clock);
        for _ in 0..300 {
            let record = lookup(&keys, 1);
            let now = clock.now();
            let due = record
                .last_used_at
                .is_none_or(|last| now.duration_since(last).is_ok_and(|age| age >= resolution));
            if due {
                ready(keys.record_last_use(record.id(), now)).expect("record");
            }
            clock.advance(10 * MS);
        }
        assert_eq!(probe.uses.load(Ordering::SeqCst), 1);
        assert_eq!(probe.lookups(), 3, "one read per TTL");
    }

    #[test]
    fn a_store_fault_is_reported_once_the_record_is_due_for_a_read() {
        let clock = ManualClock::new(t0());
        let probe = Probe::with_keys([1]);
        let keys = cache_over(&probe, &clock);
        lookup(&keys, 1);
        probe.failing.store(true, Ordering::SeqCst);
        lookup(&keys, 1);
        clock.advance(1000 * MS);
        let error = ready(keys.find_by_hash(&hash_of(1))).expect_err("the fault, not a stale record");
        assert!(error.is_unavailable());
        probe.failing.store(false, Ordering::SeqCst);
        assert_eq!(lookup(&keys, 1).id(), "key_1");
    }

    #[test]
    fn the_cache_never_holds_more_than_max_entries() {
        let clock = ManualClock::new(t0());
        let probe = Probe::with_keys(0..300);
        for max in [0, 1, 10, 100] {
            let keys = cache_over(&probe, &clock).max_entries(max);
            for _ in 0..2 {
                for n in 0..300 {
                    lookup(&keys, n);
                    assert!(
                        keys.cached_entries() <= max,
                        "{} cached, at most {max}",
                        keys.cached_entries()
                    );
                }
            }
            if max > 0 {
                assert!(keys.cached_entries() > 0, "something is cached with room for {max}");
            }
        }
        // Below the bound, everything stays.
        let keys = cache_over(&probe, &clock);
        (0..300).for_each(|n| drop(lookup(&keys, n)));
        let before = probe.lookups();
        (0..300).for_each(|n| drop(lookup(&keys, n)));
        assert_eq!(keys.cached_entries(), 300);
        assert_eq!(probe.lookups(), before, "the second round is served from memory");
    }

    #[test]
    fn a_lookup_that_read_before_a_write_here_does_not_cache_what_it_read() {
        let clock = ManualClock::new(t0());
        let probe = Probe::with_keys([1]);
        let keys = cache_over(&probe, &clock);
        probe.held.store(true, Ordering::SeqCst);
        let hash = hash_of(1);
        let mut early = pin!(keys.find_by_hash(&hash));
        assert!(
            poll_once(early.as_mut()).is_pending(),
            "read the valid record, then held"
        );
        probe.held.store(false, Ordering::SeqCst);
        ready(keys.revoke("key_1", t0())).expect("revoke");
        let Poll::Ready(Ok(Some(answer))) = poll_once(early.as_mut()) else {
            panic!("the held lookup completes");
        };
        assert_eq!(answer.revoked_at, None, "it answers what it read before the revocation");
        assert_eq!(keys.cached_entries(), 0, "but does not cache it");
        assert!(!lookup(&keys, 1).is_valid_at(clock.now()));
    }

    #[test]
    fn a_write_abandoned_half_way_still_drops_the_entry() {
        let clock = ManualClock::new(t0());
        let probe = Probe::with_keys([1]);
        let keys = cache_over(&probe, &clock);
        lookup(&keys, 1);
        probe.held.store(true, Ordering::SeqCst);
        {
            let mut revoke = pin!(keys.revoke("key_1", t0()));
            assert!(poll_once(revoke.as_mut()).is_pending(), "written, then held");
        } // dropped, as a timeout would
        probe.held.store(false, Ordering::SeqCst);
        assert!(
            !lookup(&keys, 1).is_valid_at(clock.now()),
            "the write that landed is seen"
        );
    }

    #[test]
    fn evict_forgets_one_key() {
        let clock = ManualClock::new(t0());
        let probe = Probe::with_keys([1, 2]);
        let keys = cache_over(&probe, &clock);
        lookup(&keys, 1);
        lookup(&keys, 2);
        keys.evict("key_1");
        assert_eq!(keys.cached_entries(), 1);
        lookup(&keys, 1);
        lookup(&keys, 2);
        assert_eq!(probe.lookups(), 3, "only key_1 was read again");
    }

    #[test]
    fn a_clock_stepping_back_makes_entries_stale() {
        let clock = ManualClock::new(t0());
        let probe = Probe::with_keys([1]);
        let keys = cache_over(&probe, &clock);
        lookup(&keys, 1);
        clock.set(t0() - MS);
        lookup(&keys, 1);
        assert_eq!(probe.lookups(), 2);
    }

    #[test]
    fn clones_share_the_cache() {
        let clock = ManualClock::new(t0());
        let probe = Probe::with_keys([1]);
        let keys = CachedKeyStore::new(probe.store.clone()).clock(clock);
        let clone = keys.clone();
        lookup(&keys, 1);
        assert_eq!(clone.cached_entries(), 1);
        let debug = format!("{clone:?}");
        assert!(
            debug.contains("ttl: 1s") && debug.contains("cached_entries: 1"),
            "{debug}"
        );
    }

    #[test]
    fn concurrent_lookups_on_many_threads_read_each_key_at_most_once_per_thread() {
        const KEYS: u32 = 64;
        const THREADS: u32 = 4;
        let clock = ManualClock::new(t0());
        let probe = Probe::with_keys(0..KEYS);
        let keys = cache_over(&probe, &clock);
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let keys = &keys;
                scope.spawn(move || {
                    for _ in 0..200 {
                        for n in 0..KEYS {
                            lookup(keys, (n + thread * 16) % KEYS);
                        }
                    }
                });
            }
        });
        let reads = probe.lookups();
        assert!(
            (KEYS as usize..=(KEYS * THREADS) as usize).contains(&reads),
            "{reads} reads of {KEYS} keys"
        );
        assert_eq!(keys.cached_entries(), KEYS as usize);
    }

    #[test]
    fn once_a_revocation_here_returns_no_thread_is_served_the_key_as_valid() {
        // A revoker goes through the keys while readers look up the keys
        // around the one being revoked, so lookups that began before a
        // revocation finish after it; none may leave a stale entry behind.
        const KEYS: u32 = 400;
        let clock = ManualClock::new(t0());
        let probe = Probe::with_keys(0..KEYS);
        let keys = cache_over(&probe, &clock);
        let revoked = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for n in 0..KEYS {
                    ready(keys.revoke(&format!("key_{n}"), t0())).expect("revoke");
                    revoked.store(n as usize + 1, Ordering::SeqCst);
                }
            });
            for _ in 0..3 {
                scope.spawn(|| loop {
                    let done = revoked.load(Ordering::SeqCst) as u32;
                    if done == KEYS {
                        break;
                    }
                    for n in done.saturating_sub(2)..(done + 4).min(KEYS) {
                        let record = lookup(&keys, n);
                        if n < done {
                            assert!(
                                !record.is_valid_at(t0()),
                                "key_{n} served as valid after its revocation"
                            );
                        }
                    }
                });
            }
        });
        for n in 0..KEYS {
            assert!(!lookup(&keys, n).is_valid_at(t0()), "key_{n}");
        }
    }
}
