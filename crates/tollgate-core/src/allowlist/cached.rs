//! [`CachedAllowlistStore`]: an in-process cache of IP allowlists in front
//! of any allowlist store, invalidated by a [`Changes`] hub and bounded by
//! a TTL.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use super::{AllowlistStore, Allowlists, IpSet};
use crate::changes::{Change, ChangeListener, Changes};
use crate::clock::SharedClock;
use crate::maybe_ready::{MaybeReady, StoreFuture};

/// How long a cached list is served by default: the bound on how late
/// another instance's change takes effect here without a [`Changes`] hub.
pub const DEFAULT_ALLOWLIST_TTL: Duration = Duration::from_secs(1);

/// How many lists (account and key lists together) are cached by default.
pub const DEFAULT_MAX_ALLOWLISTS: usize = 100_000;

/// An allowlist store that caches what it reads, an account's or a key's
/// list or the absence of one, in process memory for a TTL, in front of an
/// inner [`AllowlistStore`]. Clones share the cache; builder methods give
/// the store a new, empty cache (call them before cloning).
///
/// - **Another instance's change takes effect here within the TTL**
///   (default [`DEFAULT_ALLOWLIST_TTL`]), aged from before the inner store
///   was asked, and at once with a hub:
///   [`invalidated_by`](CachedAllowlistStore::invalidated_by) drops a list on
///   [`Change::AccountAllowlist`] / [`Change::KeyAllowlist`] and every list
///   on [`Change::Everything`].
/// - **This instance's writes take effect on its next read**: set and clear
///   go to the inner store, then drop the cached entry (also when the
///   write's future is dropped half-way); a read that began before a write
///   or a change ended does not cache what it read.
/// - **A hit is answered at once**, without a future or an allocation.
/// - **Bounded**: at most [`max_entries`](CachedAllowlistStore::max_entries)
///   lists ([`DEFAULT_MAX_ALLOWLISTS`]).
pub struct CachedAllowlistStore<S> {
    inner: Arc<S>,
    cache: Arc<Cache>,
}

impl<S: AllowlistStore> CachedAllowlistStore<S> {
    /// Caches `inner`'s lists for [`DEFAULT_ALLOWLIST_TTL`] on the system clock.
    pub fn new(inner: S) -> CachedAllowlistStore<S> {
        CachedAllowlistStore {
            inner: Arc::new(inner),
            cache: Cache::new(
                DEFAULT_ALLOWLIST_TTL,
                DEFAULT_MAX_ALLOWLISTS,
                SharedClock::default(),
                None,
            ),
        }
    }
}

impl<S> CachedAllowlistStore<S> {
    /// How long a list read from the inner store is served without asking
    /// again. `Duration::ZERO` turns caching off.
    pub fn ttl(self, ttl: Duration) -> Self {
        let c = &self.cache;
        let cache = Cache::new(ttl, c.max_entries, c.clock.clone(), c.changes.clone());
        self.with_cache(cache)
    }

    /// The most lists cached at once (0 turns caching off).
    pub fn max_entries(self, max_entries: usize) -> Self {
        let c = &self.cache;
        let cache = Cache::new(c.ttl, max_entries, c.clock.clone(), c.changes.clone());
        self.with_cache(cache)
    }

    /// The clock that ages cached lists.
    pub fn clock(self, clock: impl Into<SharedClock>) -> Self {
        let c = &self.cache;
        let cache = Cache::new(c.ttl, c.max_entries, clock.into(), c.changes.clone());
        self.with_cache(cache)
    }

    /// Drops cached lists as `changes` announces them changed elsewhere.
    /// The hub holds the cache weakly: it listens while a clone of this
    /// store lives.
    pub fn invalidated_by(self, changes: &Changes) -> Self {
        let c = &self.cache;
        let cache = Cache::new(c.ttl, c.max_entries, c.clock.clone(), Some(changes.clone()));
        self.with_cache(cache)
    }

    fn with_cache(self, cache: Arc<Cache>) -> Self {
        CachedAllowlistStore {
            inner: self.inner,
            cache,
        }
    }

    /// The inner store.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// How many lists (or absences) are cached now.
    pub fn cached_entries(&self) -> usize {
        self.cache.entries.len()
    }
}

impl<S> Clone for CachedAllowlistStore<S> {
    fn clone(&self) -> Self {
        CachedAllowlistStore {
            inner: self.inner.clone(),
            cache: self.cache.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for CachedAllowlistStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedAllowlistStore")
            .field("inner", &self.inner)
            .field("ttl", &self.cache.ttl)
            .field("max_entries", &self.cache.max_entries)
            .field("cached_entries", &self.cached_entries())
            .finish()
    }
}

// An account's and a key's list are apart: the kind is part of the name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Level {
    Account,
    Key,
}

type Name = (Level, String);

#[derive(Clone)]
struct Entry {
    list: Option<Arc<IpSet>>,
    fetched_at: SystemTime,
}

struct Cache {
    entries: quick_cache::sync::Cache<Name, Entry>,
    // Writes and changes seen; held shared while an entry is put and
    // exclusively while entries are dropped, so a read that began before a
    // drop never caches what it read (as in the key cache).
    generation: RwLock<u64>,
    ttl: Duration,
    max_entries: usize,
    clock: SharedClock,
    changes: Option<Changes>,
}

impl Cache {
    fn new(ttl: Duration, max_entries: usize, clock: SharedClock, changes: Option<Changes>) -> Arc<Cache> {
        let cache = Arc::new(Cache {
            entries: quick_cache::sync::Cache::new(max_entries.max(1)),
            generation: RwLock::new(0),
            ttl,
            max_entries,
            clock,
            changes,
        });
        if let Some(changes) = &cache.changes {
            let listener: Arc<dyn ChangeListener> = cache.clone();
            changes.subscribe(&listener);
        }
        cache
    }

    fn caches(&self) -> bool {
        !self.ttl.is_zero() && self.max_entries > 0
    }

    fn generation(&self) -> u64 {
        *self.generation.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn fresh(&self, level: Level, id: &str, now: SystemTime) -> Option<Option<Arc<IpSet>>> {
        if !self.caches() {
            return None;
        }
        let entry = self.entries.get(&(level, id.to_owned()))?;
        let fresh = now.duration_since(entry.fetched_at).is_ok_and(|age| age < self.ttl);
        fresh.then_some(entry.list)
    }

    fn fill(&self, level: Level, id: &str, list: &Option<Arc<IpSet>>, fetched_at: SystemTime, generation: u64) {
        if !self.caches() {
            return;
        }
        let current = self.generation.read().unwrap_or_else(PoisonError::into_inner);
        if *current != generation {
            return;
        }
        self.entries.insert(
            (level, id.to_owned()),
            Entry {
                list: list.clone(),
                fetched_at,
            },
        );
    }

    fn drop_entry(&self, level: Level, id: &str) {
        let mut generation = self.generation.write().unwrap_or_else(PoisonError::into_inner);
        *generation = generation.wrapping_add(1);
        self.entries.remove(&(level, id.to_owned()));
    }

    fn drop_all(&self) {
        let mut generation = self.generation.write().unwrap_or_else(PoisonError::into_inner);
        *generation = generation.wrapping_add(1);
        self.entries.clear();
    }
}

impl ChangeListener for Cache {
    fn changed(&self, change: &Change) {
        match change {
            Change::AccountAllowlist(account_id) => self.drop_entry(Level::Account, account_id),
            Change::KeyAllowlist(key_id) => self.drop_entry(Level::Key, key_id),
            Change::Everything => self.drop_all(),
            Change::Key(_) => {}
        }
    }
}

// Drops an entry once the write it is made for is over or abandoned.
struct Invalidation {
    cache: Arc<Cache>,
    level: Level,
    id: String,
}

impl Drop for Invalidation {
    fn drop(&mut self) {
        self.cache.drop_entry(self.level, &self.id);
    }
}

impl<S> CachedAllowlistStore<S> {
    fn read(
        &self,
        level: Level,
        id: &str,
        ask: impl FnOnce() -> StoreFuture<Option<Arc<IpSet>>>,
    ) -> StoreFuture<Option<Arc<IpSet>>> {
        let now = self.cache.clock.now();
        if let Some(list) = self.cache.fresh(level, id, now) {
            return MaybeReady::ready(Ok(list));
        }
        let generation = self.cache.generation();
        let (cache, id) = (self.cache.clone(), id.to_owned());
        ask().map(move |found| {
            if let Ok(list) = &found {
                cache.fill(level, &id, list, now, generation);
            }
            found
        })
    }

    fn write<T: Send + 'static>(&self, level: Level, id: &str, answer: StoreFuture<T>) -> StoreFuture<T> {
        let invalidation = Invalidation {
            cache: self.cache.clone(),
            level,
            id: id.to_owned(),
        };
        answer.map(move |result| {
            drop(invalidation);
            result
        })
    }
}

impl<S: AllowlistStore> AllowlistStore for CachedAllowlistStore<S> {
    fn account_allowlist(&self, account_id: &str) -> StoreFuture<Option<Arc<IpSet>>> {
        self.read(Level::Account, account_id, || self.inner.account_allowlist(account_id))
    }

    fn set_account_allowlist(&self, account_id: &str, list: IpSet) -> StoreFuture<()> {
        let answer = self.inner.set_account_allowlist(account_id, list);
        self.write(Level::Account, account_id, answer)
    }

    fn clear_account_allowlist(&self, account_id: &str) -> StoreFuture<bool> {
        let answer = self.inner.clear_account_allowlist(account_id);
        self.write(Level::Account, account_id, answer)
    }

    fn key_allowlist(&self, key_id: &str) -> StoreFuture<Option<Arc<IpSet>>> {
        self.read(Level::Key, key_id, || self.inner.key_allowlist(key_id))
    }

    fn set_key_allowlist(&self, key_id: &str, list: IpSet) -> StoreFuture<()> {
        let answer = self.inner.set_key_allowlist(key_id, list);
        self.write(Level::Key, key_id, answer)
    }

    fn clear_key_allowlist(&self, key_id: &str) -> StoreFuture<bool> {
        let answer = self.inner.clear_key_allowlist(key_id);
        self.write(Level::Key, key_id, answer)
    }

    // Both from the cache when both are fresh; otherwise the inner store's
    // one lookup, and both cached.
    fn allowlists(&self, account_id: &str, key_id: &str) -> StoreFuture<Allowlists> {
        let now = self.cache.clock.now();
        if let (Some(account), Some(key)) = (
            self.cache.fresh(Level::Account, account_id, now),
            self.cache.fresh(Level::Key, key_id, now),
        ) {
            return MaybeReady::ready(Ok(Allowlists { account, key }));
        }
        let generation = self.cache.generation();
        let (cache, account_id, key_id) = (self.cache.clone(), account_id.to_owned(), key_id.to_owned());
        self.inner.allowlists(&account_id, &key_id).map(move |found| {
            if let Ok(lists) = &found {
                cache.fill(Level::Account, &account_id, &lists.account, now, generation);
                cache.fill(Level::Key, &key_id, &lists.key, now, generation);
            }
            found
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::allowlist::MemoryAllowlistStore;
    use crate::clock::ManualClock;
    use crate::conformance::{FakeStore, Gate};

    type Probe = FakeStore<MemoryAllowlistStore>;

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn ready<T>(answer: MaybeReady<T>) -> T {
        answer.into_ready().unwrap_or_else(|_| panic!("a future waited"))
    }

    fn list(entry: &str) -> IpSet {
        IpSet::parse([entry]).unwrap()
    }

    fn lists(store: &CachedAllowlistStore<Probe>) -> Allowlists {
        ready(store.allowlists("acct_1", "key_1")).unwrap()
    }

    #[tokio::test]
    async fn conforms() {
        crate::conformance::allowlist_store(&CachedAllowlistStore::new(MemoryAllowlistStore::new())).await;
        let long = CachedAllowlistStore::new(FakeStore::new(MemoryAllowlistStore::new()).asynchronous())
            .ttl(Duration::from_secs(3600));
        crate::conformance::allowlist_store(&long).await;
    }

    #[test]
    fn lists_and_their_absence_are_served_from_memory_until_the_ttl_or_a_change() {
        let clock = ManualClock::new(t0());
        let probe = FakeStore::new(MemoryAllowlistStore::new());
        let changes = Changes::new();
        let store = CachedAllowlistStore::new(probe.clone())
            .invalidated_by(&changes)
            .ttl(Duration::from_secs(60))
            .clock(clock.clone());
        ready(probe.inner().set_account_allowlist("acct_1", list("10.0.0.0/8"))).unwrap();
        assert_eq!(lists(&store).account.as_deref(), Some(&list("10.0.0.0/8")));
        assert_eq!(lists(&store).key, None);
        assert_eq!(probe.calls("allowlists"), 1, "the second read came from memory");
        assert_eq!(store.cached_entries(), 2);

        // Changed elsewhere: unseen until announced.
        ready(probe.inner().set_key_allowlist("key_1", list("192.0.2.1"))).unwrap();
        ready(probe.inner().set_account_allowlist("acct_1", list("10.1.0.0/16"))).unwrap();
        changes.deliver(&Change::Key(crate::keys::KeyHash::from_bytes([1; 32])));
        assert_eq!(lists(&store).key, None, "a key change is not a list change");
        changes.deliver(&Change::KeyAllowlist("key_1".into()));
        assert_eq!(
            ready(store.account_allowlist("acct_1")).unwrap().as_deref(),
            Some(&list("10.0.0.0/8")),
            "the account's list was not announced"
        );
        assert_eq!(
            ready(store.key_allowlist("key_1")).unwrap().as_deref(),
            Some(&list("192.0.2.1")),
            "the key's was: read again"
        );
        changes.deliver(&Change::AccountAllowlist("acct_1".into()));
        assert_eq!(lists(&store).account.as_deref(), Some(&list("10.1.0.0/16")));

        // Unannounced: the TTL is the bound.
        ready(probe.inner().clear_account_allowlist("acct_1")).unwrap();
        clock.advance(Duration::from_secs(59));
        assert!(ready(store.account_allowlist("acct_1")).unwrap().is_some());
        clock.advance(Duration::from_secs(1));
        assert_eq!(ready(store.account_allowlist("acct_1")).unwrap(), None);

        changes.deliver(&Change::Everything);
        assert_eq!(store.cached_entries(), 0);
    }

    #[test]
    fn writes_here_are_seen_on_the_next_read_and_a_read_before_them_is_not_cached() {
        let probe = FakeStore::new(MemoryAllowlistStore::new());
        let store = CachedAllowlistStore::new(probe.clone()).ttl(Duration::from_secs(60));
        assert_eq!(ready(store.key_allowlist("key_1")).unwrap(), None);
        ready(store.set_key_allowlist("key_1", list("192.0.2.1"))).unwrap();
        assert!(ready(store.key_allowlist("key_1")).unwrap().is_some());
        assert!(ready(store.clear_key_allowlist("key_1")).unwrap());
        assert_eq!(ready(store.key_allowlist("key_1")).unwrap(), None);

        let gate = Gate::closed();
        probe.gate(Some(gate.clone()));
        let early = store.account_allowlist("acct_1");
        probe.gate(None);
        ready(store.set_account_allowlist("acct_1", list("10.0.0.0/8"))).unwrap();
        gate.open();
        assert_eq!(tokio_test::block_on(early).unwrap(), None, "it read before the write");
        assert!(
            ready(store.account_allowlist("acct_1")).unwrap().is_some(),
            "but did not cache it"
        );
    }
}
