//! [`MemoryReplayStore`]: the ids of accepted webhook messages in process
//! memory, bounded, with expired ids swept away as a side effect of use.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

use super::ReplayStore;
use crate::clock::{unix_nanos, SharedClock};
use crate::error::StoreError;
use crate::maybe_ready::{MaybeReady, StoreFuture};

/// How many ids a store holds by default: 100 000 messages within one
/// tolerance window (five minutes by default) is over 300 per second.
pub const DEFAULT_REPLAY_CAPACITY: usize = 100_000;

// Expired ids are swept at most this often (and whenever the store is full),
// so the O(n) sweep is amortised over many calls.
const SWEEP_INTERVAL_NANOS: u64 = 10_000_000_000;

/// Remembered message ids in process memory, for one instance. Clones share
/// the same ids.
///
/// The store is bounded: once it holds [`capacity`](Self::with_capacity) ids
/// that have not expired, a new id is refused with [`StoreError::Backend`]
/// (a layer's fail-closed policy then answers 503 and the sender retries)
/// rather than evicting an id early, which would let that message be
/// replayed. Expired ids are removed during calls — no background task or
/// user loop is needed.
#[derive(Debug, Clone)]
pub struct MemoryReplayStore {
    clock: SharedClock,
    capacity: usize,
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    // id → expiry, in nanoseconds since the Unix epoch.
    expiries: DashMap<String, u64>,
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
            state: Arc::new(State {
                expiries: DashMap::new(),
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
        let mut removed = 0;
        state.expiries.retain(|_, expiry| {
            if *expiry <= now {
                removed += 1;
                false
            } else {
                earliest = earliest.min(*expiry);
                true
            }
        });
        state.len.fetch_sub(removed, Ordering::SeqCst);
        state.earliest_expiry.fetch_min(earliest, Ordering::SeqCst);
    }

    fn remember(&self, id: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = unix_nanos(self.clock.now());
        self.sweep_if_due(now);
        let ttl = u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX);
        let expiry = now.saturating_add(ttl);
        let state = &*self.state;
        // The entry holds its shard's write lock: check and record are atomic.
        let first = match state.expiries.entry(id.to_owned()) {
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
    fn check_and_remember(&self, id: &str, ttl: Duration) -> StoreFuture<bool> {
        MaybeReady::ready(self.remember(id, ttl))
    }

    fn forget(&self, id: &str) -> StoreFuture<()> {
        if self.state.expiries.remove(id).is_some() {
            self.state.len.fetch_sub(1, Ordering::SeqCst);
        }
        MaybeReady::ready(Ok(()))
    }
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
        now_or_never(store.check_and_remember(id, Duration::from_secs(secs)))
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
        now_or_never(store.forget("msg")).unwrap();
        assert_eq!(store.len(), 0);
        assert!(remember(&store, "msg", 60).unwrap());
        now_or_never(store.forget("unknown")).unwrap();
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
