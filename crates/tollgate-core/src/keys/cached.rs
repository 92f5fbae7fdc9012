//! [`CachedKeyStore`]: an in-process cache in front of any key store, so
//! that authenticating a request with a known key costs no round trip to a
//! shared backend (Redis, SQL) most of the time. The cache is composed with
//! the store it fronts, as tower-sessions puts a cache in front of a session
//! store: lookups read the cache first, writes go through to the store.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use quick_cache::sync::{DefaultLifecycle, EntryAction, EntryResult};
use quick_cache::UnitWeighter;

use super::{BuildDigestHasher, KeyHash, KeyRecord, KeyRegistry, KeyStore, RotateRefusal, Rotation};
use crate::changes::{Change, ChangeListener, Changes};
use crate::clock::SharedClock;
use crate::maybe_ready::{MaybeReady, StoreFuture};

/// How long a cached record is served by default: the bound on how late
/// another instance's revocation takes effect here.
pub const DEFAULT_TTL: Duration = Duration::from_secs(1);

/// How many records are cached at most by default.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// The longest an unknown key's absence is served from memory
/// ([`CachedKeyStore::negative_ttl`] is capped here): a key created on
/// another instance whose announcement is lost works here after this long.
pub const MAX_NEGATIVE_TTL: Duration = Duration::from_secs(5);

/// How many unknown keys are remembered at most by default, once
/// [`CachedKeyStore::negative_ttl`] turns that on.
pub const DEFAULT_MAX_MISSES: usize = 10_000;

// The id index is pruned of ids whose record has left the cache once it
// holds twice as many ids as the cache holds records, and never below this.
const MIN_INDEX_PRUNE: usize = 1024;

/// A key store that caches found records in process memory for a short
/// TTL, in front of an inner [`KeyStore`] (and, for writes, [`KeyRegistry`]).
///
/// Clones share the cache and the inner store; builder methods give the
/// store a new, empty cache (call them before cloning).
///
/// # What it promises
///
/// - **Across instances, revocation takes effect within the TTL** (default
///   one second, [`DEFAULT_TTL`]). A record is served from the cache only
///   while it is younger than the TTL, its age counted from *before* the
///   backend was asked and read on the store's [`clock`](CachedKeyStore::clock);
///   so once a revocation (or rotation, or expiry change) is written by
///   another instance, every instance refuses the key no later than one TTL
///   afterwards.
/// - **On this instance, writes take effect on the very next request.**
///   [`insert`](KeyRegistry::insert), [`revoke`](KeyRegistry::revoke) and
///   [`rotate`](KeyRegistry::rotate) (the retiring key and its successor)
///   go to the backend and then drop this instance's cached entries, also
///   when the write's future is dropped half-way; a lookup that read the
///   backend before the write finished is not cached either.
/// - **Unknown keys are never cached as valid.** By default nothing is
///   kept of them: a key created on another instance works here at once,
///   and an unknown token reaches the backend on every request (a checksum
///   check in the auth layer is the cheap defence against garbage tokens).
///   [`negative_ttl`](CachedKeyStore::negative_ttl) (at most
///   [`MAX_NEGATIVE_TTL`], five seconds; bounded by
///   [`max_misses`](CachedKeyStore::max_misses)) remembers an absence
///   instead; creations through this store, and creations announced on the
///   hub, forget it at once. A lookup that finds nothing drops the key's
///   cached entry, if any.
/// - **A hit costs no future**: a fresh hit is answered with
///   [`MaybeReady::ready`], without an allocation; so is a miss over an inner
///   store that answers at once (the [`MemoryKeyStore`](super::MemoryKeyStore)).
///   Over a network store a miss continues with the store's own future.
/// - **Management reads are fresh**: [`find_by_id`](KeyRegistry::find_by_id)
///   and [`list_by_account`](KeyRegistry::list_by_account) always ask the backend.
/// - **Bounded memory**: at most [`max_entries`](CachedKeyStore::max_entries)
///   records (default [`DEFAULT_MAX_ENTRIES`]), kept by a [`quick_cache`]
///   cache that evicts the entries least likely to be asked for again. A
///   stale entry stays in memory until it is read again, replaced or
///   evicted: capacity alone bounds memory.
///
/// - **With a [`Changes`] hub, other instances' writes arrive sooner**:
///   [`invalidated_by`](CachedKeyStore::invalidated_by) drops a key's entry
///   when the hub delivers [`Change::Key`] with its hash, and every entry on
///   [`Change::Everything`] (a source that reconnected). The TTL stays the
///   bound when no change arrives (the source is down, a message is lost).
///
/// A cached record's `last_used_at` may lag the backend's by up to the TTL.
/// [`record_last_use`](KeyStore::record_last_use) updates the cached copy
/// too (without renewing it), so the auth layer, which writes a key's use
/// only when the recorded one is old enough, does not write on every request.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tollgate_core::keys::{CachedKeyStore, KeyHash, KeyRecord, KeyRegistry, KeyStore, MemoryKeyStore};
/// use tollgate_core::{KeyKind, Principal};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // In a fleet the inner store would be Redis or SQL, shared by every instance.
/// let shared = MemoryKeyStore::new();
/// let keys = CachedKeyStore::new(shared.clone()).ttl(Duration::from_secs(1));
///
/// let now = SystemTime::now();
/// let hash = KeyHash::from_bytes([7; 32]);
/// let record = KeyRecord {
///     principal: Principal::new("acct_1", "key_1", KeyKind::Production),
///     hash,
///     label: "Production Server".into(),
///     display_prefix: "tg_live_abcd".into(),
///     created_at: now,
///     expires_at: None,
///     revoked_at: None,
///     last_used_at: None,
/// };
/// keys.insert(record, None, now).await.unwrap();
///
/// let found = keys.find_by_hash(&hash).await.unwrap().expect("a known key");
/// assert!(found.is_valid_at(now));
/// assert_eq!(keys.cached_entries(), 1, "later lookups are served from memory");
///
/// // Revoked through this store: refused on the very next lookup.
/// keys.revoke("key_1", now).await.unwrap();
/// let found = keys.find_by_hash(&hash).await.unwrap().expect("still stored");
/// assert!(!found.is_valid_at(now));
/// # }
/// ```
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
            cache: Arc::new(Cache::new(Settings {
                ttl: DEFAULT_TTL,
                max_entries: DEFAULT_MAX_ENTRIES,
                negative_ttl: Duration::ZERO,
                max_misses: DEFAULT_MAX_MISSES,
                clock: SharedClock::default(),
                changes: None,
            })),
        }
    }
}

impl<S> CachedKeyStore<S> {
    /// How long a record read from the inner store is served without asking
    /// again: the longest another instance's revocation can go unnoticed
    /// here. `Duration::ZERO` turns caching off.
    pub fn ttl(self, ttl: Duration) -> Self {
        self.with_settings(|settings| settings.ttl = ttl)
    }

    /// The most records cached at once (0 turns caching off).
    pub fn max_entries(self, max_entries: usize) -> Self {
        self.with_settings(|settings| settings.max_entries = max_entries)
    }

    /// Also remembers that a key is unknown, for `ttl` (at most
    /// [`MAX_NEGATIVE_TTL`]; off by default), so a client retrying a wrong
    /// or deleted key costs the backend one lookup per `ttl` instead of one
    /// per request. A key created through this store is known here at once;
    /// one created on another instance, once its creation is announced on
    /// the [`Changes`] hub ([`invalidated_by`](CachedKeyStore::invalidated_by))
    /// or `ttl` passed. An unknown key is never taken for a valid one: what
    /// is remembered is only the absence.
    pub fn negative_ttl(self, ttl: Duration) -> Self {
        self.with_settings(|settings| settings.negative_ttl = ttl.min(MAX_NEGATIVE_TTL))
    }

    /// The most unknown keys remembered at once ([`DEFAULT_MAX_MISSES`]);
    /// past it the least asked-for are forgotten (and asked for again).
    pub fn max_misses(self, max_misses: usize) -> Self {
        self.with_settings(|settings| settings.max_misses = max_misses)
    }

    /// The clock that ages cached records.
    pub fn clock(self, clock: impl Into<SharedClock>) -> Self {
        let clock = clock.into();
        self.with_settings(|settings| settings.clock = clock)
    }

    /// Drops cached records as `changes` announces them changed elsewhere:
    /// a key's entry (and its remembered absence) on [`Change::Key`], every
    /// entry on [`Change::Everything`].
    /// The hub holds the cache weakly: it listens as long as a clone of this
    /// store lives.
    pub fn invalidated_by(self, changes: &Changes) -> Self {
        let changes = changes.clone();
        self.with_settings(|settings| settings.changes = Some(changes))
    }

    // A new, empty cache with the settings changed.
    fn with_settings(self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.cache.settings.clone();
        change(&mut settings);
        self.with_cache(Cache::new(settings))
    }

    fn with_cache(self, cache: Cache) -> Self {
        let cache = Arc::new(cache);
        if let Some(changes) = &cache.settings.changes {
            let listener: Arc<dyn ChangeListener> = cache.clone();
            changes.subscribe(&listener);
        }
        CachedKeyStore {
            inner: self.inner,
            cache,
        }
    }

    /// The inner store.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// How many records are cached now (stale ones not yet replaced or
    /// dropped included).
    pub fn cached_entries(&self) -> usize {
        self.cache.entries.len()
    }

    /// How many unknown keys are remembered now (see
    /// [`negative_ttl`](CachedKeyStore::negative_ttl)).
    pub fn cached_misses(&self) -> usize {
        self.cache.misses.len()
    }

    /// Forgets this instance's cached record of the key, so the next lookup
    /// reads the inner store: for a revocation announced by another
    /// instance (say over a pub/sub channel), to make it effective here
    /// sooner than the TTL.
    pub fn evict(&self, key_id: &str) {
        self.cache.invalidate(key_id, None);
    }

    // Drops the key's entries once the write it is made for is over, or
    // abandoned.
    fn invalidation(&self, key_id: &str, hash: Option<KeyHash>) -> Invalidation {
        Invalidation {
            cache: self.cache.clone(),
            key_id: key_id.to_owned(),
            hash,
        }
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
            .field("ttl", &self.cache.settings.ttl)
            .field("max_entries", &self.cache.settings.max_entries)
            .field("negative_ttl", &self.cache.settings.negative_ttl)
            .field("cached_entries", &self.cached_entries())
            .field("cached_misses", &self.cached_misses())
            .finish()
    }
}

impl<S: KeyStore> KeyStore for CachedKeyStore<S> {
    fn find_by_hash(&self, hash: &KeyHash) -> StoreFuture<Option<Arc<KeyRecord>>> {
        // Read before the inner store is asked: the entry's age then covers
        // the whole round trip, which keeps the bound strict.
        let now = self.cache.settings.clock.now();
        if let Some(record) = self.cache.fresh(hash, now) {
            return MaybeReady::ready(Ok(Some(record)));
        }
        if self.cache.known_missing(hash, now) {
            return MaybeReady::ready(Ok(None));
        }
        let writes_before = self.cache.writes_seen();
        match self.inner.find_by_hash(hash).into_ready() {
            Ok(found) => {
                if let Ok(found) = &found {
                    self.cache.remember(hash, found, now, writes_before);
                }
                MaybeReady::ready(found)
            }
            Err(pending) => {
                let cache = self.cache.clone();
                let hash = *hash;
                pending.map(move |found| {
                    if let Ok(found) = &found {
                        cache.remember(&hash, found, now, writes_before);
                    }
                    found
                })
            }
        }
    }

    fn record_last_use(&self, key_id: &str, at: SystemTime) -> StoreFuture<()> {
        // Before the write, so concurrent requests with this key stop
        // finding its use due; and even if the write fails, so a failing
        // backend is not sent one write per request until the TTL.
        self.cache.note_last_use(key_id, at);
        self.inner.record_last_use(key_id, at)
    }
}

impl<S: KeyRegistry> KeyRegistry for CachedKeyStore<S> {
    fn find_by_id(&self, key_id: &str) -> StoreFuture<Option<Arc<KeyRecord>>> {
        self.inner.find_by_id(key_id)
    }

    fn insert(&self, record: KeyRecord, max_active: Option<usize>, now: SystemTime) -> StoreFuture<()> {
        let invalidation = self.invalidation(record.id(), Some(record.hash));
        after(self.inner.insert(record, max_active, now), invalidation)
    }

    fn list_by_account(&self, account_id: &str) -> StoreFuture<Vec<Arc<KeyRecord>>> {
        self.inner.list_by_account(account_id)
    }

    fn revoke(&self, key_id: &str, at: SystemTime) -> StoreFuture<Option<Arc<KeyRecord>>> {
        let invalidation = self.invalidation(key_id, None);
        after(self.inner.revoke(key_id, at), invalidation)
    }

    fn rotate(&self, rotation: Rotation) -> StoreFuture<Result<Arc<KeyRecord>, RotateRefusal>> {
        let invalidations = (
            self.invalidation(&rotation.key_id, None),
            self.invalidation(rotation.successor.id(), Some(rotation.successor.hash)),
        );
        after(self.inner.rotate(rotation), invalidations)
    }
}

// The write's answer, once `invalidations` have dropped their entries: at
// once for an answer that is here, else when the future finishes or is
// dropped (the closure that owns them goes with it).
fn after<T: Send + 'static>(answer: StoreFuture<T>, invalidations: impl Send + 'static) -> StoreFuture<T> {
    answer.map(move |result| {
        drop(invalidations);
        result
    })
}

// Drops this instance's entry for a key when dropped: once a write to it is
// over, and also if the write's future is dropped half-way (the write may
// have been applied), so the entry is never left older than the backend.
struct Invalidation {
    cache: Arc<Cache>,
    key_id: String,
    hash: Option<KeyHash>,
}

impl Drop for Invalidation {
    fn drop(&mut self) {
        self.cache.invalidate(&self.key_id, self.hash);
    }
}

// Found records by hash, one unit of weight each, hashed with the digest's
// own bytes.
type Bounded<V> = quick_cache::sync::Cache<KeyHash, V, UnitWeighter, BuildDigestHasher, DefaultLifecycle<KeyHash, V>>;
type Entries = Bounded<Entry>;

// What a cache is made with; the builder methods make a new cache from it.
#[derive(Clone)]
struct Settings {
    ttl: Duration,
    max_entries: usize,
    // Zero: unknown keys are not remembered.
    negative_ttl: Duration,
    max_misses: usize,
    clock: SharedClock,
    // The hub this cache listens to, if any.
    changes: Option<Changes>,
}

struct Cache {
    entries: Entries,
    // Unknown keys, by when the lookup that found nothing began. Guarded
    // by `writes` like the entries: a miss read before a write or an
    // announced change ended is not remembered.
    misses: Bounded<SystemTime>,
    // The hash of every cached record's id, for the writes by id. An id is
    // put here before its record is cached, and a key's id and hash never
    // change, so the index is never wrong, only larger than the cache: the
    // ids of records the cache evicted by itself are pruned in bulk.
    hash_by_id: DashMap<String, KeyHash>,
    // How many writes went through this cache. A lookup caches what it read
    // only if no write ended since it asked: otherwise its answer may
    // predate the write, and caching it would undo the write's
    // invalidation. Held shared while entries are put (a lookup's record, a
    // noted use), exclusively while they are dropped (a write's
    // invalidation, the index's pruning), so that a count checked is still
    // the count when the entry goes in.
    writes: RwLock<u64>,
    settings: Settings,
}

#[derive(Clone)]
struct Entry {
    record: Arc<KeyRecord>,
    // When the lookup that read it began.
    fetched_at: SystemTime,
}

impl Cache {
    fn new(settings: Settings) -> Cache {
        Cache {
            entries: bounded(settings.max_entries),
            misses: bounded(settings.max_misses),
            hash_by_id: DashMap::new(),
            writes: RwLock::new(0),
            settings,
        }
    }

    fn caches(&self) -> bool {
        !self.settings.ttl.is_zero() && self.settings.max_entries > 0
    }

    fn caches_misses(&self) -> bool {
        !self.settings.negative_ttl.is_zero() && self.settings.max_misses > 0
    }

    fn known_missing(&self, hash: &KeyHash, now: SystemTime) -> bool {
        if !self.caches_misses() {
            return false;
        }
        let Some(fetched_at) = self.misses.get(hash) else {
            return false;
        };
        // As for records, a clock that stepped back makes it stale.
        now.duration_since(fetched_at)
            .is_ok_and(|age| age < self.settings.negative_ttl)
    }

    fn remember_miss(&self, hash: KeyHash, fetched_at: SystemTime, writes_before: u64) {
        if !self.caches_misses() {
            return;
        }
        let writes = read(&self.writes);
        if *writes != writes_before {
            return;
        }
        // Of two lookups that raced, the later start is kept.
        let mut fetched = Some(fetched_at);
        let found = self.misses.entry(&hash, None, |_, existing| {
            if *existing <= fetched_at {
                *existing = fetched.take().expect("called once");
            }
            EntryAction::Retain(())
        });
        if let (EntryResult::Vacant(slot), Some(fetched)) = (found, fetched) {
            let _ = slot.insert(fetched);
        }
        drop(writes);
    }

    fn is_fresh(&self, entry: &Entry, now: SystemTime) -> bool {
        // A clock that stepped back makes every entry stale: re-reading is
        // always safe, serving forever is not.
        now.duration_since(entry.fetched_at)
            .is_ok_and(|age| age < self.settings.ttl)
    }

    fn fresh(&self, hash: &KeyHash, now: SystemTime) -> Option<Arc<KeyRecord>> {
        if !self.caches() {
            return None;
        }
        let entry = self.entries.get(hash)?;
        self.is_fresh(&entry, now).then_some(entry.record)
    }

    fn writes_seen(&self) -> u64 {
        *read(&self.writes)
    }

    // What a lookup that began at `now` found: cached if it is a record,
    // and an unknown key's stale entry (if any) dropped.
    fn remember(&self, hash: &KeyHash, found: &Option<Arc<KeyRecord>>, now: SystemTime, writes_before: u64) {
        match found {
            Some(record) => {
                self.misses.remove(hash);
                self.fill(*hash, record.clone(), now, writes_before);
            }
            None => {
                self.entries.remove(hash);
                self.remember_miss(*hash, now, writes_before);
            }
        }
    }

    fn fill(&self, hash: KeyHash, record: Arc<KeyRecord>, fetched_at: SystemTime, writes_before: u64) {
        if !self.caches() {
            return;
        }
        let new_id = {
            let writes = read(&self.writes);
            if *writes != writes_before {
                return;
            }
            let new_id = self.hash_by_id.get(record.id()).map(|known| *known) != Some(hash);
            if new_id {
                self.hash_by_id.insert(record.id().to_owned(), hash);
            }
            // One step under the entry's shard lock: of two lookups that
            // raced, what the one that began last read is kept.
            let mut entry = Some(Entry { record, fetched_at });
            let found = self.entries.entry(&hash, None, |_, existing| {
                if existing.fetched_at <= fetched_at {
                    *existing = entry.take().expect("called once");
                }
                EntryAction::Retain(())
            });
            if let (EntryResult::Vacant(slot), Some(entry)) = (found, entry) {
                // Until it is filled, the slot makes other fills and noted
                // uses of this key wait. Only a lookup that found nothing can
                // take it away meanwhile; then nothing is cached, which is
                // as good as that lookup's own answer.
                let _ = slot.insert(entry);
            }
            new_id
        };
        if new_id && self.hash_by_id.len() > self.index_prune_at() {
            self.prune_index();
        }
    }

    fn index_prune_at(&self) -> usize {
        self.settings.max_entries.saturating_mul(2).max(MIN_INDEX_PRUNE)
    }

    // Forgets the ids whose record is no longer cached. With every entry
    // put beforehand (their ids are in the index) and none being put now,
    // an id whose hash the cache does not hold has no entry to be found for.
    fn prune_index(&self) {
        let _writes = write(&self.writes);
        if self.hash_by_id.len() <= self.index_prune_at() {
            return; // another thread pruned it meanwhile
        }
        self.hash_by_id.retain(|_, hash| self.entries.contains_key(hash));
    }

    fn invalidate(&self, key_id: &str, hash: Option<KeyHash>) {
        let mut writes = write(&self.writes);
        *writes = writes.wrapping_add(1);
        if let Some(hash) = hash {
            self.entries.remove(&hash);
            self.misses.remove(&hash);
        }
        if let Some((_, hash)) = self.hash_by_id.remove(key_id) {
            self.entries.remove(&hash);
        }
    }

    // Like a write here: counted, so a lookup that read before the change
    // does not cache what it read.
    fn invalidate_hash(&self, hash: &KeyHash) {
        let mut writes = write(&self.writes);
        *writes = writes.wrapping_add(1);
        self.entries.remove(hash);
        // A creation announced: the key is known now.
        self.misses.remove(hash);
    }

    fn invalidate_all(&self) {
        let mut writes = write(&self.writes);
        *writes = writes.wrapping_add(1);
        self.entries.clear();
        self.misses.clear();
        self.hash_by_id.clear();
    }

    fn note_last_use(&self, key_id: &str, at: SystemTime) {
        if !self.caches() {
            return;
        }
        // Shared, like a fill: an invalidation cannot fall between reading
        // the entry and putting the updated copy back.
        let _writes = read(&self.writes);
        let Some(hash) = self.hash_by_id.get(key_id).map(|hash| *hash) else {
            return;
        };
        let found = self.entries.entry(&hash, None, |_, entry| {
            if entry.record.last_used_at.is_none_or(|last| last < at) {
                let mut record = KeyRecord::clone(&entry.record);
                record.last_used_at = Some(at);
                // The age is kept: a use is no news about revocation.
                entry.record = Arc::new(record);
            }
            EntryAction::Retain(())
        });
        // No entry (evicted meanwhile): the slot offered is given back.
        drop(found);
    }
}

impl ChangeListener for Cache {
    fn changed(&self, change: &Change) {
        match change {
            Change::Key(hash) => self.invalidate_hash(hash),
            Change::Everything => self.invalidate_all(),
            Change::AccountAllowlist(_) | Change::KeyAllowlist(_) => {}
        }
    }
}

// At most `max_entries`: the cache splits its capacity evenly among its
// shards, rounding up, so the capacity is rounded down to a multiple of
// their number (shards hold at least 32 entries each, so little is lost).
fn bounded<V: Clone>(max_entries: usize) -> Bounded<V> {
    let max = u64::try_from(max_entries).unwrap_or(u64::MAX);
    let entries = Bounded::with(
        max_entries,
        max,
        UnitWeighter,
        BuildDigestHasher,
        DefaultLifecycle::default(),
    );
    if entries.capacity() > max {
        let shards = u64::try_from(entries.num_shards()).unwrap_or(u64::MAX);
        entries.set_capacity(max / shards * shards);
    }
    entries
}

// A panic while the lock is held cannot leave the cache inconsistent (the
// count and each cache operation stand alone), so a poisoned lock is used
// as it is.
fn read(lock: &RwLock<u64>) -> RwLockReadGuard<'_, u64> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(lock: &RwLock<u64>) -> RwLockWriteGuard<'_, u64> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Wake, Waker};
    use std::time::UNIX_EPOCH;

    use tokio_test::block_on;

    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::conformance::{FakeStore, Gate};
    use crate::keys::MemoryKeyStore;
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

    /// The shared backend as the cache sees it: counts lookups
    /// (`calls("find_by_hash")`) and recorded uses, can fail, and can hold
    /// an answer at a gate once it has read or written, to open a race at a
    /// chosen point.
    type Probe = FakeStore<MemoryKeyStore>;

    fn probe_with_keys(keys: impl IntoIterator<Item = u32>) -> Probe {
        let probe = FakeStore::new(MemoryKeyStore::new());
        for n in keys {
            ready(probe.inner().insert(record(n), None, t0())).expect("insert");
        }
        probe
    }

    fn lookups(probe: &Probe) -> usize {
        probe.calls("find_by_hash")
    }

    fn uses(probe: &Probe) -> usize {
        probe.calls("record_last_use")
    }

    // Polls as a task would: with a waker of its own (one that does
    // nothing), not the no-op waker of a poll in passing.
    fn poll_once<T>(answer: &mut MaybeReady<T>) -> Poll<T> {
        struct Task;
        impl Wake for Task {
            fn wake(self: Arc<Self>) {}
        }
        Pin::new(answer).poll(&mut Context::from_waker(&Waker::from(Arc::new(Task))))
    }

    // Takes an answer that must not wait (nothing here waits unless held).
    fn ready<T>(answer: MaybeReady<T>) -> T {
        answer.into_ready().unwrap_or_else(|_| panic!("a future waited"))
    }

    fn cache_over(probe: &Probe, clock: &ManualClock) -> CachedKeyStore<Probe> {
        CachedKeyStore::new(probe.clone()).clock(clock.clone())
    }

    /// A manual clock at `t0`, a probe holding `keys`, and a cache over it
    /// on that clock.
    fn cached(keys: impl IntoIterator<Item = u32>) -> (ManualClock, Probe, CachedKeyStore<Probe>) {
        let clock = ManualClock::new(t0());
        let probe = probe_with_keys(keys);
        let cache = cache_over(&probe, &clock);
        (clock, probe, cache)
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
    async fn conforms_over_an_asynchronous_store() {
        let store = CachedKeyStore::new(FakeStore::new(MemoryKeyStore::new()).asynchronous());
        crate::conformance::key_store(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_key_limit_holds_under_parallel_rotations_and_creations() {
        let store = CachedKeyStore::new(FakeStore::new(MemoryKeyStore::new()).asynchronous());
        crate::conformance::key_limit_in_parallel(&store, |task| {
            let handle = tokio::spawn(task);
            Box::pin(async move { handle.await.expect("the task finished") })
        })
        .await;
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
        let (clock, probe, keys) = cached([1]);
        assert_eq!(lookup(&keys, 1).id(), "key_1");
        assert_eq!(lookups(&probe), 1);
        clock.advance(999 * MS);
        assert_eq!(lookup(&keys, 1).id(), "key_1");
        assert_eq!(lookups(&probe), 1, "at 999 ms the cached record is served");
        clock.advance(MS);
        lookup(&keys, 1);
        assert_eq!(lookups(&probe), 2, "at 1 s it is read again");
        clock.advance(999 * MS);
        lookup(&keys, 1);
        assert_eq!(lookups(&probe), 2, "and served for another TTL");

        let uncached = cache_over(&probe, &clock).ttl(Duration::ZERO);
        lookup(&uncached, 1);
        lookup(&uncached, 1);
        assert_eq!(lookups(&probe), 4, "a zero TTL caches nothing");
        assert_eq!(uncached.cached_entries(), 0);
    }

    #[test]
    fn a_revocation_through_another_instance_takes_effect_here_within_the_ttl() {
        let (clock, shared, here) = cached([1]);
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
        let (clock, shared, here) = cached([1]);
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
        let (clock, probe, keys) = cached([1, 2]);
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
            lookups(&probe),
            4,
            "each write sent the next lookup of its key to the store"
        );
        lookup(&keys, 2);
        assert_eq!(lookups(&probe), 4, "other keys stay cached");
        assert_eq!(
            ready(keys.revoke("key_404", t0())).expect("revoke"),
            None,
            "an unknown id is still answered by the store"
        );
    }

    #[test]
    fn a_rotation_through_this_instance_drops_the_retiring_key_and_its_successor() {
        let (_, probe, keys) = cached([1, 2]);
        lookup(&keys, 1);
        lookup(&keys, 2);
        let retire_at = t0() + Duration::from_secs(3600);
        let retiring = ready(keys.rotate(Rotation::new("key_1", record(3), retire_at, t0())))
            .expect("rotate")
            .expect("an active key rotates");
        assert_eq!(retiring.revoked_at, Some(retire_at));
        assert_eq!(lookup(&keys, 1).revoked_at, Some(retire_at), "seen on the next lookup");
        assert_eq!(lookup(&keys, 3).id(), "key_3", "the successor works at once");
        assert_eq!(lookups(&probe), 4);
        lookup(&keys, 2);
        assert_eq!(lookups(&probe), 4, "other keys stay cached");

        // A refused rotation still drops the entry: the answer says nothing
        // of what else changed the key meanwhile.
        let refused = ready(keys.rotate(Rotation::new("key_1", record(4), retire_at, t0()))).expect("rotate");
        assert_eq!(refused.unwrap_err(), RotateRefusal::Retiring);
        lookup(&keys, 1);
        assert_eq!(lookups(&probe), 5);
    }

    #[test]
    fn unknown_keys_are_never_cached_so_a_key_created_elsewhere_works_at_once() {
        let (clock, shared, here) = cached([]);
        let there = cache_over(&shared, &clock);
        for _ in 0..2 {
            assert!(ready(here.find_by_hash(&hash_of(1))).expect("no fault").is_none());
        }
        assert_eq!(lookups(&shared), 2, "every lookup of an unknown key reaches the store");
        assert_eq!(here.cached_entries(), 0);
        ready(there.insert(record(1), None, t0())).expect("insert");
        assert_eq!(lookup(&here, 1).id(), "key_1", "found here at once");
        assert_eq!(here.cached_entries(), 1);
    }

    #[test]
    fn a_lookup_that_finds_nothing_drops_the_stale_entry() {
        let (clock, _, keys) = cached([1]);
        lookup(&keys, 1);
        // The same cache in front of a backend that lost the key (say one
        // restored from a backup).
        let emptied = CachedKeyStore {
            inner: Arc::new(MemoryKeyStore::new()),
            cache: keys.cache.clone(),
        };
        clock.advance(1000 * MS);
        assert!(ready(emptied.find_by_hash(&hash_of(1))).expect("no fault").is_none());
        assert_eq!(keys.cached_entries(), 0, "the stale entry is gone");
    }

    #[test]
    fn management_reads_always_ask_the_store() {
        let (_, shared, here) = cached([1]);
        lookup(&here, 1);
        ready(shared.inner().revoke("key_1", t0())).expect("revoke");
        let by_id = ready(here.find_by_id("key_1")).expect("find").expect("a known key");
        assert_eq!(by_id.revoked_at, Some(t0()));
        let listed = ready(here.list_by_account("acct_1")).expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].revoked_at, Some(t0()));
    }

    #[test]
    fn a_recorded_use_updates_the_cached_record_without_renewing_it() {
        let (clock, probe, keys) = cached([1]);
        lookup(&keys, 1);
        clock.advance(500 * MS);
        let used_at = clock.now();
        ready(keys.record_last_use("key_1", used_at)).expect("record");
        assert_eq!(lookup(&keys, 1).last_used_at, Some(used_at), "seen without a read");
        ready(keys.record_last_use("key_1", t0())).expect("record");
        assert_eq!(lookup(&keys, 1).last_used_at, Some(used_at), "never moves back");
        assert_eq!(lookups(&probe), 1);
        clock.advance(500 * MS);
        let reread = lookup(&keys, 1);
        assert_eq!(lookups(&probe), 2, "a use does not extend the TTL");
        assert_eq!(reread.last_used_at, Some(used_at), "the store has it too");
    }

    #[test]
    fn a_fresh_hit_is_answered_at_once_and_a_miss_over_an_async_store_goes_async() {
        let clock = ManualClock::new(t0());
        // Answers wait once, as a remote store's would.
        let probe = probe_with_keys([1]).asynchronous();
        let keys = cache_over(&probe, &clock);
        let miss = keys.find_by_hash(&hash_of(1));
        let miss = miss
            .take_if_ready()
            .expect_err("a miss continues with the store's future");
        let unknown = keys.find_by_hash(&hash_of(2));
        let unknown = unknown.take_if_ready().expect_err("so does an unknown key");
        assert_eq!(keys.cached_entries(), 0, "nothing cached before the answer");
        let found = block_on(miss).expect("no fault").expect("a known key");
        assert_eq!(block_on(unknown).expect("no fault"), None);
        assert_eq!((lookups(&probe), keys.cached_entries()), (2, 1), "each read once");
        let hit = keys.find_by_hash(&hash_of(1)).take_if_ready();
        let hit = hit.expect("a fresh hit is ready, with no future").expect("no fault");
        assert_eq!(hit, Some(found));
        clock.advance(999 * MS);
        assert!(
            keys.find_by_hash(&hash_of(1)).take_if_ready().is_ok(),
            "fresh at 999 ms"
        );
        clock.advance(MS);
        let stale = keys.find_by_hash(&hash_of(1)).take_if_ready();
        let stale = stale.expect_err("stale at 1 s: read again");
        assert_eq!(lookups(&probe), 3);
        block_on(stale).expect("no fault").expect("a known key");

        // A use is noted in the cached record at once, and written by the
        // store's future.
        let used_at = clock.now();
        let write = keys.record_last_use("key_1", used_at).take_if_ready();
        let write = write.expect_err("the write goes to the store");
        let cached = keys.find_by_hash(&hash_of(1)).take_if_ready().expect("a fresh hit");
        let cached = cached.expect("no fault").expect("a known key");
        assert_eq!(cached.last_used_at, Some(used_at));
        assert_eq!(uses(&probe), 1);
        block_on(write).expect("record");
        let stored = block_on(probe.inner().find_by_id("key_1")).unwrap().unwrap();
        assert_eq!(stored.last_used_at, Some(used_at), "the inner store has it");
        assert_eq!(lookups(&probe), 3);
    }

    #[test]
    fn over_a_synchronous_store_a_miss_is_answered_at_once_and_cached() {
        let clock = ManualClock::new(t0());
        let inner = MemoryKeyStore::new();
        ready(inner.insert(record(1), None, t0())).expect("insert");
        let keys = CachedKeyStore::new(inner.clone()).clock(clock.clone());
        let answer = |n| {
            keys.find_by_hash(&hash_of(n))
                .take_if_ready()
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
        assert!(matches!(
            keys.record_last_use("key_3", used_at).take_if_ready(),
            Ok(Ok(()))
        ));
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
        let (clock, probe, keys) = cached([1]);
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
        assert_eq!(uses(&probe), 1);
        assert_eq!(lookups(&probe), 3, "one read per TTL");
    }

    #[test]
    fn a_store_fault_is_reported_once_the_record_is_due_for_a_read() {
        let (clock, probe, keys) = cached([1]);
        lookup(&keys, 1);
        probe.fail("find_by_hash");
        lookup(&keys, 1);
        clock.advance(1000 * MS);
        let error = ready(keys.find_by_hash(&hash_of(1))).expect_err("the fault, not a stale record");
        assert!(error.is_unavailable());
        probe.heal();
        assert_eq!(lookup(&keys, 1).id(), "key_1");
    }

    #[test]
    fn the_cache_never_holds_more_than_max_entries() {
        let clock = ManualClock::new(t0());
        let probe = probe_with_keys(0..300);
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
        let before = lookups(&probe);
        (0..300).for_each(|n| drop(lookup(&keys, n)));
        assert_eq!(keys.cached_entries(), 300);
        assert_eq!(lookups(&probe), before, "the second round is served from memory");
    }

    #[test]
    fn the_capacity_split_among_shards_is_never_rounded_up() {
        for max in [0, 1, 31, 33, 100, 299, 1001, 4099, DEFAULT_MAX_ENTRIES + 3] {
            let entries = bounded::<Entry>(max);
            let (capacity, shards) = (entries.capacity(), entries.num_shards() as u64);
            assert!(capacity <= max as u64, "{capacity} for at most {max}");
            assert!(
                capacity + shards > max as u64,
                "{capacity} for {max} over {shards} shards"
            );
        }
    }

    #[test]
    fn the_id_index_stays_bounded_and_finds_every_cached_record() {
        // Ten times more keys than the cache holds go through it, while a
        // few hot keys stay cached all along: the ids of records the
        // cache dropped by itself are pruned, those of records it holds kept.
        const KEYS: u32 = MIN_INDEX_PRUNE as u32 * 10;
        const HOT: u32 = 50;
        let clock = ManualClock::new(t0());
        let probe = probe_with_keys(0..KEYS);
        let keys = cache_over(&probe, &clock).max_entries(100);
        let mut pruned = false;
        for n in 0..KEYS {
            let before = keys.cache.hash_by_id.len();
            lookup(&keys, n);
            lookup(&keys, n % HOT);
            let after = keys.cache.hash_by_id.len();
            assert!(after <= MIN_INDEX_PRUNE + 1, "{after} ids indexed");
            pruned |= after < before;
        }
        assert!(pruned, "the index was pruned");
        let mut cached = 0;
        for n in 0..KEYS {
            if keys.cache.entries.contains_key(&hash_of(n)) {
                cached += u32::from(n < HOT);
                ready(keys.revoke(&format!("key_{n}"), t0())).expect("revoke");
                assert!(!lookup(&keys, n).is_valid_at(t0()), "key_{n} found by its id");
            }
        }
        assert!(cached > HOT / 2, "{cached} hot keys cached through the prunes");
    }

    #[test]
    fn a_lookup_that_read_before_a_write_here_does_not_cache_what_it_read() {
        let (clock, probe, keys) = cached([1]);
        let gate = Gate::closed();
        probe.gate(Some(gate.clone()));
        let hash = hash_of(1);
        let mut early = keys.find_by_hash(&hash);
        assert!(poll_once(&mut early).is_pending(), "read the valid record, then held");
        probe.gate(None);
        ready(keys.revoke("key_1", t0())).expect("revoke");
        gate.open();
        let Poll::Ready(Ok(Some(answer))) = poll_once(&mut early) else {
            panic!("the held lookup completes");
        };
        assert_eq!(answer.revoked_at, None, "it answers what it read before the revocation");
        assert_eq!(keys.cached_entries(), 0, "but does not cache it");
        assert!(!lookup(&keys, 1).is_valid_at(clock.now()));
    }

    #[test]
    fn a_write_abandoned_half_way_still_drops_the_entry() {
        let (clock, probe, keys) = cached([1, 2]);
        lookup(&keys, 1);
        lookup(&keys, 2);
        probe.gate(Some(Gate::closed()));
        {
            let mut revoke = keys.revoke("key_1", t0());
            assert!(poll_once(&mut revoke).is_pending(), "written, then held");
            let mut rotate = keys.rotate(Rotation::new("key_2", record(3), t0(), t0()));
            assert!(poll_once(&mut rotate).is_pending(), "written, then held");
        } // dropped, as a timeout would
        probe.gate(None);
        assert!(
            !lookup(&keys, 1).is_valid_at(clock.now()),
            "the write that landed is seen"
        );
        assert_eq!(lookup(&keys, 2).revoked_at, Some(t0()), "so is the rotation");
    }

    #[test]
    fn changes_from_the_hub_drop_one_key_or_everything_and_the_ttl_bounds_the_rest() {
        let (clock, probe, _) = cached([1, 2, 3]);
        let changes = Changes::new();
        // The hub set before another builder method still holds.
        let keys = CachedKeyStore::new(probe.clone())
            .invalidated_by(&changes)
            .ttl(Duration::from_secs(60))
            .clock(clock.clone());
        for n in [1, 2, 3] {
            lookup(&keys, n);
        }
        assert_eq!(lookups(&probe), 3);

        // Revoked by another instance, which announces it.
        ready(probe.inner().revoke("key_1", t0())).expect("revoke");
        changes.deliver(&Change::AccountAllowlist("acct_1".into()));
        changes.deliver(&Change::KeyAllowlist("key_1".into()));
        assert_eq!(keys.cached_entries(), 3, "allowlist changes are not key changes");
        assert!(lookup(&keys, 1).is_valid_at(clock.now()), "not announced yet");
        changes.deliver(&Change::Key(hash_of(1)));
        assert!(
            !lookup(&keys, 1).is_valid_at(clock.now()),
            "refused once announced, long before the TTL"
        );
        assert_eq!(lookups(&probe), 4, "only key_1 was read again");

        changes.deliver(&Change::Everything);
        assert_eq!(keys.cached_entries(), 0);
        for n in [1, 2, 3] {
            lookup(&keys, n);
        }
        assert_eq!(lookups(&probe), 7, "everything was read again");

        // Unannounced (the source is down): the TTL is the bound.
        ready(probe.inner().revoke("key_2", t0())).expect("revoke");
        clock.advance(Duration::from_secs(59));
        assert!(lookup(&keys, 2).is_valid_at(clock.now()));
        clock.advance(Duration::from_secs(1));
        assert!(!lookup(&keys, 2).is_valid_at(clock.now()));

        // A dropped store stops listening.
        drop(keys);
        changes.deliver(&Change::Everything);
    }

    #[test]
    fn a_lookup_that_read_before_an_announced_change_does_not_cache_what_it_read() {
        let (_, probe, _) = cached([1]);
        let changes = Changes::new();
        let keys = CachedKeyStore::new(probe.clone()).invalidated_by(&changes);
        let gate = Gate::closed();
        probe.gate(Some(gate.clone()));
        let mut early = keys.find_by_hash(&hash_of(1));
        assert!(poll_once(&mut early).is_pending(), "read the valid record, then held");
        changes.deliver(&Change::Key(hash_of(1)));
        gate.open();
        assert!(matches!(poll_once(&mut early), Poll::Ready(Ok(Some(_)))));
        assert_eq!(keys.cached_entries(), 0, "what it read may predate the change");
    }

    fn find<S: KeyStore>(store: &CachedKeyStore<S>, n: u32) -> Option<Arc<KeyRecord>> {
        ready(store.find_by_hash(&hash_of(n))).expect("no fault")
    }

    #[test]
    fn unknown_keys_are_asked_for_every_time_unless_a_negative_ttl_is_set() {
        let (clock, probe, keys) = cached([1]);
        for _ in 0..5 {
            assert!(find(&keys, 9).is_none());
        }
        assert_eq!(lookups(&probe), 5, "off by default");
        assert_eq!(keys.cached_misses(), 0);

        let keys = cache_over(&probe, &clock).negative_ttl(Duration::from_secs(2));
        for _ in 0..5 {
            assert!(find(&keys, 9).is_none());
            clock.advance(300 * MS);
        }
        assert_eq!(lookups(&probe), 6, "one read, then four answers from memory");
        assert_eq!(keys.cached_misses(), 1);
        clock.advance(500 * MS); // 2 s after the read
        assert!(find(&keys, 9).is_none());
        assert_eq!(lookups(&probe), 7, "read again once the negative TTL is over");
        assert!(find(&keys, 1).is_some(), "known keys are unaffected");
    }

    #[test]
    fn the_negative_ttl_is_capped_at_five_seconds() {
        let (clock, probe, _) = cached([]);
        let keys = cache_over(&probe, &clock).negative_ttl(Duration::from_secs(3600));
        assert!(format!("{keys:?}").contains("negative_ttl: 5s"), "{keys:?}");
        assert!(find(&keys, 9).is_none());
        clock.advance(Duration::from_secs(5) - MS);
        assert!(find(&keys, 9).is_none());
        assert_eq!(lookups(&probe), 1);
        clock.advance(MS);
        assert!(find(&keys, 9).is_none());
        assert_eq!(lookups(&probe), 2, "five seconds at most");
    }

    #[test]
    fn a_key_created_through_the_cache_or_announced_is_known_at_once() {
        let (clock, probe, _) = cached([]);
        let changes = Changes::new();
        let keys = cache_over(&probe, &clock)
            .negative_ttl(MAX_NEGATIVE_TTL)
            .invalidated_by(&changes);
        for n in [1, 2, 3, 4] {
            assert!(find(&keys, n).is_none());
        }
        assert_eq!(keys.cached_misses(), 4);

        // Created here.
        ready(keys.insert(record(1), None, t0())).expect("insert");
        assert!(find(&keys, 1).expect("created here").is_valid_at(clock.now()));
        // Created here as a rotation's successor.
        ready(probe.inner().insert(record(5), None, t0())).expect("insert");
        let rotated = ready(keys.rotate(Rotation::new("key_5", record(2), t0(), t0()))).expect("rotate");
        assert!(rotated.is_ok());
        assert!(find(&keys, 2).expect("the successor").is_valid_at(clock.now()));
        // Created on another instance, which announces it.
        ready(probe.inner().insert(record(3), None, t0())).expect("insert");
        changes.deliver(&Change::Key(hash_of(3)));
        assert!(find(&keys, 3).expect("announced").is_valid_at(clock.now()));
        // Created elsewhere, the announcement lost: the negative TTL bounds it.
        ready(probe.inner().insert(record(4), None, t0())).expect("insert");
        assert!(find(&keys, 4).is_none(), "still remembered as unknown");
        clock.advance(MAX_NEGATIVE_TTL);
        assert!(find(&keys, 4).expect("asked again").is_valid_at(clock.now()));
        assert_eq!(keys.cached_misses(), 0);

        // A reconnected source forgets every absence.
        assert!(find(&keys, 8).is_none());
        changes.deliver(&Change::Everything);
        assert_eq!(keys.cached_misses(), 0);
    }

    #[test]
    fn a_miss_read_before_an_announced_creation_is_not_remembered() {
        let (clock, probe, _) = cached([]);
        let changes = Changes::new();
        let keys = cache_over(&probe, &clock)
            .negative_ttl(MAX_NEGATIVE_TTL)
            .invalidated_by(&changes);
        let gate = Gate::closed();
        probe.gate(Some(gate.clone()));
        let mut early = keys.find_by_hash(&hash_of(1));
        assert!(poll_once(&mut early).is_pending(), "read nothing, then held");
        probe.gate(None);
        ready(probe.inner().insert(record(1), None, t0())).expect("insert");
        changes.deliver(&Change::Key(hash_of(1)));
        gate.open();
        assert!(matches!(poll_once(&mut early), Poll::Ready(Ok(None))));
        assert_eq!(keys.cached_misses(), 0, "what it read predates the creation");
        assert!(find(&keys, 1).is_some());
    }

    #[test]
    fn remembered_misses_stay_within_their_bound() {
        let (clock, probe, _) = cached([]);
        let keys = cache_over(&probe, &clock).negative_ttl(MAX_NEGATIVE_TTL).max_misses(40);
        for n in 0..1_000 {
            assert!(find(&keys, n).is_none());
            assert!(keys.cached_misses() <= 40, "{} remembered", keys.cached_misses());
        }
        assert!(keys.cached_misses() > 0);
        let keys = cache_over(&probe, &clock).negative_ttl(MAX_NEGATIVE_TTL).max_misses(0);
        assert!(find(&keys, 1).is_none());
        assert_eq!(keys.cached_misses(), 0, "0 turns it off");
    }

    #[test]
    fn evict_forgets_one_key() {
        let (_, probe, keys) = cached([1, 2]);
        lookup(&keys, 1);
        lookup(&keys, 2);
        keys.evict("key_1");
        assert_eq!(keys.cached_entries(), 1);
        lookup(&keys, 1);
        lookup(&keys, 2);
        assert_eq!(lookups(&probe), 3, "only key_1 was read again");
    }

    #[test]
    fn a_clock_stepping_back_makes_entries_stale() {
        let (clock, probe, keys) = cached([1]);
        lookup(&keys, 1);
        clock.set(t0() - MS);
        lookup(&keys, 1);
        assert_eq!(lookups(&probe), 2);
    }

    #[test]
    fn clones_share_the_cache() {
        let clock = ManualClock::new(t0());
        let probe = probe_with_keys([1]);
        let keys = CachedKeyStore::new(probe.inner().clone()).clock(clock);
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
        let (_, probe, keys) = cached(0..KEYS);
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
        let reads = lookups(&probe);
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
        let (_, _, keys) = cached(0..KEYS);
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

    // `cargo test --release -p tollgate-core -- --ignored --nocapture cached_hit`
    #[test]
    #[ignore = "a measurement, run by hand in a release build"]
    fn cached_hit_cost() {
        const KEYS: u32 = 10_000;
        const LOOKUPS: u32 = 1_000_000;
        let inner = MemoryKeyStore::new();
        for n in 0..KEYS {
            ready(inner.insert(record(n), None, t0())).expect("insert");
        }
        let hashes: Vec<KeyHash> = (0..KEYS).map(hash_of).collect();
        let keys = CachedKeyStore::new(inner.clone()).ttl(Duration::from_secs(600));
        let measure = |name: &str, find: &dyn Fn(&KeyHash) -> bool| {
            for hash in &hashes {
                assert!(find(hash));
            }
            let mut best = Duration::MAX;
            for _ in 0..5 {
                let started = std::time::Instant::now();
                let mut found = 0u32;
                for i in 0..LOOKUPS {
                    // A stride through the keys, so that consecutive
                    // lookups touch different entries.
                    let hash = &hashes[(i.wrapping_mul(7919) % KEYS) as usize];
                    found += u32::from(find(std::hint::black_box(hash)));
                }
                best = best.min(started.elapsed());
                assert_eq!(found, LOOKUPS);
            }
            let nanos = best.as_nanos() as f64 / f64::from(LOOKUPS);
            println!("{name}: {nanos:.1} ns a lookup (best of 5 x {LOOKUPS} over {KEYS} keys)");
        };
        measure("CachedKeyStore hit (quick_cache)", &|hash| {
            keys.find_by_hash(hash)
                .take_if_ready()
                .expect("at once")
                .unwrap()
                .is_some()
        });
        measure("MemoryKeyStore (no cache)", &|hash| {
            inner
                .find_by_hash(hash)
                .take_if_ready()
                .expect("at once")
                .unwrap()
                .is_some()
        });
        let threads = 2;
        let started = std::time::Instant::now();
        std::thread::scope(|scope| {
            for t in 0..threads {
                let (keys, hashes) = (&keys, &hashes);
                scope.spawn(move || {
                    for i in 0..LOOKUPS {
                        let hash = &hashes[((i + t * 5000).wrapping_mul(7919) % KEYS) as usize];
                        let found = keys.find_by_hash(std::hint::black_box(hash)).take_if_ready();
                        assert!(found.expect("at once").unwrap().is_some());
                    }
                });
            }
        });
        let nanos = started.elapsed().as_nanos() as f64 / f64::from(LOOKUPS);
        println!("CachedKeyStore hit (quick_cache), {threads} threads at once: {nanos:.1} ns wall time per lookup per thread");
    }
}
