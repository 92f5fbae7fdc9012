//! [`MemoryReplayStore`]: the ids of accepted webhook messages in process
//! memory, bounded, with expired ids swept away as a side effect of use.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use dashmap::DashMap;

use super::{storage_key, ReplayStore};
use crate::clock::{unix_nanos, SharedClock};
use crate::error::StoreError;
use crate::maybe_ready::{MaybeReady, StoreFuture};

/// How many ids a store holds by default: 100 000 messages within one
/// tolerance window (five minutes by default) is over 300 per second.
pub const DEFAULT_REPLAY_CAPACITY: usize = 100_000;

/// How many ids one scope may hold by default: a quarter of the store, so
/// no one sender can fill it for the others.
pub const DEFAULT_REPLAY_SCOPE_CAPACITY: usize = DEFAULT_REPLAY_CAPACITY / 4;

// Expired ids are swept at most this often (and whenever the store is full),
// so the O(n) sweep is amortised over many calls.
const SWEEP_INTERVAL_NANOS: u64 = 10_000_000_000;

/// Remembered message ids in process memory, for one instance. Clones share
/// the same ids.
///
/// The store is bounded, in all and per scope: once it holds
/// [`capacity`](Self::with_capacity) ids that have not expired, or a scope
/// holds its [`scope_capacity`](Self::with_scope_capacity), a new id (of that
/// scope) is refused with [`StoreError::Backend`] (a layer's fail-closed
/// policy then answers 503 and the sender retries) rather than evicting an
/// id early, which would let that message be replayed. Expired ids are
/// removed during calls — no background task or user loop is needed.
#[derive(Debug, Clone)]
pub struct MemoryReplayStore {
    clock: SharedClock,
    capacity: usize,
    scope_capacity: usize,
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    // storage key (scope and id) → expiry, in nanoseconds since the Unix epoch.
    expiries: DashMap<String, u64>,
    // How many ids each scope holds. Locked only while a shard of
    // `expiries` is held or after, never before one: no lock-order cycle.
    scopes: Mutex<HashMap<String, usize>>,
    // Kept beside the map because `DashMap::len` locks every shard, which
    // would deadlock while an entry of one shard is held.
    len: AtomicUsize,
    // A lower bound of the earliest expiry in the map (u64::MAX when none is
    // known): nothing can be swept before it, so full stores do not rescan.
    earliest_expiry: AtomicU64,
    next_sweep: AtomicU64,
}

impl MemoryReplayStore {
    /// An empty store on the system clock, holding up to
    /// [`DEFAULT_REPLAY_CAPACITY`] ids.
    pub fn new() -> MemoryReplayStore {
        MemoryReplayStore {
            clock: SharedClock::default(),
            capacity: DEFAULT_REPLAY_CAPACITY,
            scope_capacity: DEFAULT_REPLAY_SCOPE_CAPACITY,
            state: Arc::new(State {
                expiries: DashMap::new(),
                scopes: Mutex::default(),
                len: AtomicUsize::new(0),
                earliest_expiry: AtomicU64::new(u64::MAX),
                next_sweep: AtomicU64::new(0),
            }),
        }
    }

    /// Uses `clock` to expire ids (use the same clock as the layer).
    pub fn with_clock(mut self, clock: impl Into<SharedClock>) -> MemoryReplayStore {
        self.clock = clock.into();
        self
    }

    /// Holds at most `capacity` ids.
    pub fn with_capacity(mut self, capacity: usize) -> MemoryReplayStore {
        self.capacity = capacity;
        self
    }

    /// Holds at most `capacity` ids of any one scope.
    pub fn with_scope_capacity(mut self, capacity: usize) -> MemoryReplayStore {
        self.scope_capacity = capacity;
        self
    }

    /// How many ids of `scope` the store holds, expired ones not yet swept included.
    pub fn scope_len(&self, scope: &str) -> usize {
        self.state.scope_counts().get(scope).copied().unwrap_or(0)
    }

    /// How many ids the store holds, including expired ones not yet swept.
    pub fn len(&self) -> usize {
        self.state.len.load(Ordering::SeqCst)
    }

    /// Whether the store holds no id.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn sweep_if_due(&self, now: u64) {
        let state = &*self.state;
        if now < state.earliest_expiry.load(Ordering::SeqCst) {
            return; // nothing has expired yet
        }
        let full = state.len.load(Ordering::SeqCst) >= self.capacity;
        let due = state.next_sweep.load(Ordering::SeqCst);
        if !full {
            // One caller wins the periodic sweep; the others carry on.
            let elected = now >= due
                && state
                    .next_sweep
                    .compare_exchange(
                        due,
                        now.saturating_add(SWEEP_INTERVAL_NANOS),
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    )
                    .is_ok();
            if !elected {
                return;
            }
        }
        self.sweep(now);
    }

    fn sweep(&self, now: u64) {
        let state = &*self.state;
        // Reset before scanning: an insert racing with the scan either is
        // seen by it or lowers the bound again after this store.
        state.earliest_expiry.store(u64::MAX, Ordering::SeqCst);
        let mut earliest = u64::MAX;
        let mut removed = Vec::new();
        state.expiries.retain(|key, expiry| {
            if *expiry <= now {
                removed.push(key.clone());
                false
            } else {
                earliest = earliest.min(*expiry);
                true
            }
        });
        state.len.fetch_sub(removed.len(), Ordering::SeqCst);
        let mut scopes = state.scope_counts();
        for key in &removed {
            release(&mut scopes, scope_of(key));
        }
        drop(scopes);
        state.earliest_expiry.fetch_min(earliest, Ordering::SeqCst);
    }

    fn remember(&self, scope: &str, id: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = unix_nanos(self.clock.now());
        // The atomic first: the scope's count takes a lock.
        if now >= self.state.earliest_expiry.load(Ordering::SeqCst) && self.scope_len(scope) >= self.scope_capacity {
            self.sweep(now); // the scope may hold expired ids: make room now
        } else {
            self.sweep_if_due(now);
        }
        let ttl = u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX);
        let expiry = now.saturating_add(ttl);
        let state = &*self.state;
        // The entry holds its shard's write lock: check and record are atomic.
        let first = match state.expiries.entry(storage_key(scope, id)) {
            dashmap::Entry::Occupied(mut entry) => {
                if *entry.get() > now {
                    return Ok(false);
                }
                entry.insert(expiry); // expired, not yet swept: a new sighting
                true
            }
            dashmap::Entry::Vacant(slot) => {
                let reserved = state.len.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |len| {
                    (len < self.capacity).then_some(len + 1)
                });
                if reserved.is_err() {
                    return Err(StoreError::backend(format!(
                        "replay store is full ({} ids within their window)",
                        self.capacity
                    )));
                }
                let mut scopes = state.scope_counts();
                let held = scopes.get(scope).copied().unwrap_or(0);
                if held >= self.scope_capacity {
                    drop(scopes);
                    state.len.fetch_sub(1, Ordering::SeqCst);
                    return Err(StoreError::backend(format!(
                        "this sender's share of the replay store is full ({} ids within their window)",
                        self.scope_capacity
                    )));
                }
                scopes.insert(scope.to_owned(), held + 1);
                drop(scopes);
                slot.insert(expiry);
                true
            }
        };
        state.earliest_expiry.fetch_min(expiry, Ordering::SeqCst);
        Ok(first)
    }
}

impl Default for MemoryReplayStore {
    fn default() -> MemoryReplayStore {
        MemoryReplayStore::new()
    }
}

impl ReplayStore for MemoryReplayStore {
    fn check_and_remember(&self, scope: &str, id: &str, ttl: Duration) -> StoreFuture<bool> {
        MaybeReady::ready(self.remember(scope, id, ttl))
    }

    fn forget(&self, scope: &str, id: &str) -> StoreFuture<()> {
        if self.state.expiries.remove(&storage_key(scope, id)).is_some() {
            self.state.len.fetch_sub(1, Ordering::SeqCst);
            release(&mut self.state.scope_counts(), scope);
        }
        MaybeReady::ready(Ok(()))
    }
}

impl State {
    fn scope_counts(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        // Nothing panics while the lock is held: the counts stay consistent.
        self.scopes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// One id of `scope` is gone.
fn release(scopes: &mut HashMap<String, usize>, scope: &str) {
    if let Some(count) = scopes.get_mut(scope) {
        *count -= 1;
        if *count == 0 {
            scopes.remove(scope);
        }
    }
}

// The scope of a `storage_key`.
fn scope_of(key: &str) -> &str {
    let (len, rest) = key.split_once(':').unwrap_or(("0", key));
    let len = len.parse::<usize>().unwrap_or(0);
    rest.get(..len).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    use super::*;
    use crate::clock::ManualClock;

    // The memory store answers at once.
    fn now_or_never<T>(answer: MaybeReady<T>) -> T {
        answer
            .into_ready()
            .unwrap_or_else(|_| panic!("a memory store answers at once"))
    }

    fn remember(store: &MemoryReplayStore, id: &str, secs: u64) -> Result<bool, StoreError> {
        remember_in(store, "sender", id, secs)
    }

    fn remember_in(store: &MemoryReplayStore, scope: &str, id: &str, secs: u64) -> Result<bool, StoreError> {
        now_or_never(store.check_and_remember(scope, id, Duration::from_secs(secs)))
    }

    #[test]
    fn a_scope_over_its_quota_is_refused_and_never_evicted() {
        let clock = ManualClock::at_unix_secs(1_700_000_000);
        let store = MemoryReplayStore::new()
            .with_clock(clock.clone())
            .with_scope_capacity(2);
        for id in ["a", "b"] {
            assert!(remember_in(&store, "noisy", id, 60).unwrap());
        }
        let error = remember_in(&store, "noisy", "c", 60).unwrap_err();
        assert!(error.is_unavailable(), "{error}");
        assert!(error.to_string().contains("share"), "{error}");
        assert!(
            !remember_in(&store, "noisy", "a", 60).unwrap(),
            "its ids are all still known"
        );
        assert!(
            remember_in(&store, "quiet", "a", 60).unwrap(),
            "other scopes are unaffected"
        );
        assert_eq!((store.scope_len("noisy"), store.len()), (2, 3));

        now_or_never(store.forget("noisy", "a")).unwrap();
        assert!(remember_in(&store, "noisy", "c", 60).unwrap(), "forgetting made room");
        assert!(remember_in(&store, "quiet", "b", 60).is_ok());
        clock.advance(Duration::from_secs(60));
        assert!(remember_in(&store, "noisy", "d", 60).unwrap());
        assert!(remember_in(&store, "noisy", "e", 60).unwrap());
        assert_eq!(store.scope_len("noisy"), 2, "expired ids gave their room back");
        assert_eq!(store.scope_len("quiet"), 0);
    }

    #[tokio::test]
    async fn conforms() {
        crate::conformance::replay_store(&MemoryReplayStore::new()).await;
    }

    #[test]
    fn ids_are_forgotten_when_their_window_ends() {
        let clock = ManualClock::at_unix_secs(1_700_000_000);
        let store = MemoryReplayStore::new().with_clock(clock.clone());
        assert!(remember(&store, "msg", 300).unwrap());
        clock.advance(Duration::from_secs(299));
        assert!(!remember(&store, "msg", 300).unwrap(), "still within the window");
        clock.advance(Duration::from_secs(1));
        assert!(remember(&store, "msg", 300).unwrap(), "the window has ended");
        assert!(!remember(&store, "msg", 300).unwrap());
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_full_store_refuses_new_ids_until_old_ones_expire() {
        let clock = ManualClock::at_unix_secs(1_700_000_000);
        let store = MemoryReplayStore::new().with_clock(clock.clone()).with_capacity(3);
        for id in ["a", "b", "c"] {
            assert!(remember(&store, id, 60).unwrap());
        }
        let error = remember(&store, "d", 60).unwrap_err();
        assert!(error.is_unavailable(), "full is a backend fault: {error}");
        assert!(!remember(&store, "a", 60).unwrap(), "known ids still answer");
        assert_eq!(store.len(), 3);

        clock.advance(Duration::from_secs(60));
        assert!(remember(&store, "d", 60).unwrap(), "expired ids made room");
        assert_eq!(store.len(), 1, "the three expired ids were swept");
    }

    #[test]
    fn expired_ids_are_swept_without_a_user_loop() {
        let clock = ManualClock::at_unix_secs(1_700_000_000);
        let store = MemoryReplayStore::new().with_clock(clock.clone());
        for i in 0..50 {
            remember(&store, &format!("old-{i}"), 5).unwrap();
        }
        assert_eq!(store.len(), 50);
        clock.advance(Duration::from_secs(11));
        assert!(remember(&store, "new", 5).unwrap());
        assert_eq!(store.len(), 1, "the next call swept the 50 expired ids");
    }

    #[test]
    fn sweeps_keep_ids_that_have_not_expired() {
        let clock = ManualClock::at_unix_secs(1_700_000_000);
        let store = MemoryReplayStore::new().with_clock(clock.clone());
        remember(&store, "short", 1).unwrap();
        remember(&store, "long", 3600).unwrap();
        clock.advance(Duration::from_secs(20));
        remember(&store, "trigger", 1).unwrap();
        assert_eq!(store.len(), 2, "short was swept, long and trigger stay");
        assert!(!remember(&store, "long", 3600).unwrap());
    }

    #[test]
    fn forgotten_ids_count_as_new() {
        let store = MemoryReplayStore::new();
        assert!(remember(&store, "msg", 60).unwrap());
        now_or_never(store.forget("sender", "msg")).unwrap();
        assert_eq!(store.len(), 0);
        assert!(remember(&store, "msg", 60).unwrap());
        now_or_never(store.forget("sender", "unknown")).unwrap();
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn concurrent_threads_see_exactly_one_first_sighting() {
        let store = MemoryReplayStore::new();
        let threads = 8;
        for round in 0..50 {
            let id = format!("msg-{round}");
            let barrier = Barrier::new(threads);
            let firsts = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..threads)
                    .map(|_| {
                        scope.spawn(|| {
                            barrier.wait();
                            remember(&store, &id, 60).unwrap()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|handle| handle.join().unwrap())
                    .filter(|first| *first)
                    .count()
            });
            assert_eq!(firsts, 1, "round {round}");
        }
        assert_eq!(store.len(), 50);
    }
}
