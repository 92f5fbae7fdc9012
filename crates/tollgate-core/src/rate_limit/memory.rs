//! [`MemoryRateLimitStore`]: per-key rate-limit state in process memory,
//! sharded, compact, and evicting idle keys by itself.

use std::collections::hash_map::{Entry, HashMap, RandomState};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use super::{Decision, KeyState, Limits, RateLimitStore};
use crate::clock::{unix_nanos, SharedClock};
use crate::error::StoreError;
use crate::maybe_ready::{MaybeReady, StoreFuture};

/// Keys a [`MemoryRateLimitStore`] tracks at most by default (about 61 MB).
pub const DEFAULT_RATE_LIMIT_CAPACITY: usize = 1_000_000;

// A power of two well above the core count, so concurrent checks of
// different keys rarely meet on one lock.
const SHARDS: usize = 64;

// A shard sweeps itself once it has seen as many checks as it kept keys at
// its last sweep (at least this many). A sweep visits at most those keys
// plus one per check since, so each check pays for about two visits.
const MIN_CHECKS_BETWEEN_SWEEPS: usize = 64;

// A key is forgotten once it has been idle this long, so a key used every
// second or more often is never removed and re-inserted.
const IDLE_GRACE_NANOS: u64 = 1_000_000_000;

/// Rate-limit state in process memory, for one instance.
///
/// - **Atomic**: each check runs [`KeyState::check`] under the lock of the
///   key's shard (one of 64), so concurrent checks of one key never admit
///   more than its limits, and checks of different keys rarely contend.
/// - **Compact**: a key is stored as a 96-bit hash of its string, next to a
///   16-byte state — 28 bytes an entry (about 61 bytes a key in the table
///   at 1,000,000 keys). The first 64 bits are SipHash-1-3 under a random
///   per-store key, so nobody can craft two keys that collide; the other 32
///   come from a fast seeded mix, so that by accident two of a million keys
///   share all 96 bits with probability about 10⁻¹⁷. A collision would make
///   two keys share one limit, never exceed one.
/// - **Bounded**: a key whose state has been [idle](KeyState::is_idle_at)
///   (burst full, nothing counted today) for a second is forgotten by an
///   amortised sweep of its shard; no background task is needed. Keys with
///   a daily quota are kept until 00:00 UTC, since their count matters
///   until then.
/// - **Capped**: at most [`capacity`](Self::with_capacity) keys
///   ([`DEFAULT_RATE_LIMIT_CAPACITY`]; each of the 64 shards holds a 64th,
///   rounded up). A shard at its cap first forgets every key whose state is
///   that of a fresh key (full burst, no usage today), grace period or not:
///   forgetting those admits nothing extra. It never drops a key *in debt*
///   (a burst being refilled, or today's usage under a daily quota), since
///   a forgotten debt would be admitted again. When only keys in debt are
///   left, a new key that would need tracking is refused with
///   [`StoreError::CapacityReached`] (fail closed): known keys keep their
///   limits, new ones wait until some debt is repaid. The rate-limit layer
///   answers it 503 `SERVICE_UNAVAILABLE` with `Retry-After: 1`. Size the
///   cap above the keys one instance sees in a day when plans have daily
///   quotas, since their usage is held until midnight.
///
/// Time comes from the store's clock ([`with_clock`](Self::with_clock)),
/// read with [`SharedClock::approximate_now`]: the system clock to within
/// about a millisecond, from the CPU's time-stamp counter where it can be.
/// Clones share the same state.
#[derive(Debug, Clone)]
pub struct MemoryRateLimitStore {
    shards: Arc<[Mutex<Shard>]>,
    hasher: KeyHasher,
    clock: SharedClock,
    capacity: usize,
}

impl MemoryRateLimitStore {
    /// An empty store on the system clock.
    pub fn new() -> MemoryRateLimitStore {
        MemoryRateLimitStore {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: KeyHasher::default(),
            clock: SharedClock::default(),
            capacity: DEFAULT_RATE_LIMIT_CAPACITY,
        }
    }

    /// Tracks at most `capacity` keys (at least one per shard, so at least
    /// 64), refusing new keys with [`StoreError::CapacityReached`] when
    /// only keys in debt remain. Set it on the new store, before use.
    pub fn with_capacity(mut self, capacity: usize) -> MemoryRateLimitStore {
        self.capacity = capacity.max(1);
        self
    }

    /// The configured cap on tracked keys.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes the shards' tables hold now: their buckets (a power of two
    /// per shard) times an entry and its control byte.
    pub fn table_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(CompactKey, PackedState)>() + 1;
        self.shards
            .iter()
            .map(|shard| {
                let capacity = lock(shard).map.capacity();
                if capacity == 0 {
                    0
                } else {
                    (capacity * 8 / 7).next_power_of_two() * entry
                }
            })
            .sum()
    }

    // Keys one shard holds at most.
    fn shard_capacity(&self) -> usize {
        self.capacity.div_ceil(SHARDS)
    }

    /// Uses `clock` for every check.
    pub fn with_clock(mut self, clock: impl Into<SharedClock>) -> MemoryRateLimitStore {
        self.clock = clock.into();
        self
    }

    /// How many keys the store tracks (idle ones not yet swept included).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).map.len()).sum()
    }

    /// Whether the store tracks no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // The check itself: it never waits.
    fn decide(&self, key: &str, limits: &Limits, cost: u32) -> Result<Decision, StoreError> {
        // A limit cannot tell a millisecond's error apart, and on the
        // system clock an exact reading would be a quarter of the check.
        let now = unix_nanos(self.clock.approximate_now());
        let key = self.hasher.compact(key);
        lock(&self.shards[key.shard()])
            .check(key, limits, now, cost, self.shard_capacity())
            .ok_or(StoreError::CapacityReached {
                capacity: self.capacity,
            })
    }
}

impl Default for MemoryRateLimitStore {
    fn default() -> MemoryRateLimitStore {
        MemoryRateLimitStore::new()
    }
}

impl RateLimitStore for MemoryRateLimitStore {
    /// Always ready: the state is in this process.
    fn check(&self, key: &str, limits: &Limits, cost: u32) -> StoreFuture<Decision> {
        MaybeReady::ready(self.decide(key, limits, cost))
    }
}

fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    // A panic cannot leave a shard half-updated (states are replaced whole),
    // so a poisoned lock is still safe to use.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<CompactKey, PackedState, PassThrough>,
    checks_since_sweep: usize,
    kept_at_last_sweep: usize,
    // No tracked key turns fresh-equivalent before this (a lower bound), so
    // a full shard is not scanned again for room before it: a flood of new
    // keys against a shard full of debts costs a comparison each.
    no_room_before: u64,
}

impl Shard {
    // `None`: a new key would need tracking and only keys in debt fill the shard.
    fn check(&mut self, key: CompactKey, limits: &Limits, now: u64, cost: u32, capacity: usize) -> Option<Decision> {
        if self.map.len() >= capacity && !self.map.contains_key(&key) {
            let mut state = KeyState::default();
            let decision = state.check(limits, now, cost);
            if state.is_idle_at(now) {
                // Refused or a query: nothing to keep, so no room is needed.
                return Some(decision);
            }
            if now < self.no_room_before {
                return None;
            }
            // Fresh-equivalent state can go at once; debts never.
            let mut earliest = u64::MAX;
            self.map.retain(|_, state| {
                let state = state.unpack();
                earliest = earliest.min(idle_from(&state));
                !state.is_idle_at(now)
            });
            self.no_room_before = earliest;
            if self.map.len() >= capacity {
                return None;
            }
        }
        let decision = match self.map.entry(key) {
            Entry::Occupied(mut slot) => {
                let mut state = slot.get().unpack();
                let decision = state.check(limits, now, cost);
                // Only an admitted request changes the state.
                if decision.is_allowed() {
                    *slot.get_mut() = PackedState::pack(&state);
                }
                decision
            }
            Entry::Vacant(slot) => {
                let mut state = KeyState::default();
                let decision = state.check(limits, now, cost);
                // Refusals and queries leave a fresh state: nothing to keep.
                if !state.is_idle_at(now) {
                    self.no_room_before = self.no_room_before.min(idle_from(&state));
                    slot.insert(PackedState::pack(&state));
                }
                decision
            }
        };
        self.checks_since_sweep += 1;
        if self.checks_since_sweep >= self.kept_at_last_sweep.max(MIN_CHECKS_BETWEEN_SWEEPS) {
            self.sweep(now);
        }
        Some(decision)
    }

    fn sweep(&mut self, now: u64) {
        self.checks_since_sweep = 0;
        let idle_since = now.saturating_sub(IDLE_GRACE_NANOS);
        self.map.retain(|_, state| !state.unpack().is_idle_at(idle_since));
        self.kept_at_last_sweep = self.map.len();
        // Give memory back after a spike of keys, leaving room to grow.
        if self.map.capacity() > 4 * self.map.len() + MIN_CHECKS_BETWEEN_SWEEPS {
            self.map.shrink_to(2 * self.map.len());
        }
    }
}

// When a state becomes that of a fresh key: its burst refilled and, if it
// counts usage, its day over.
fn idle_from(state: &KeyState) -> u64 {
    let day_over = if state.used == 0 {
        0
    } else {
        (u64::from(state.day) + 1).saturating_mul(super::NANOS_PER_DAY)
    };
    state.tat_nanos.max(day_over)
}

// 96 bits of a key string's hash: SipHash-1-3 under a random key (the first
// two words, also the table's hash) and 32 bits of a seeded mix. Alignment 4
// keeps an entry at 28 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CompactKey([u32; 3]);

impl CompactKey {
    fn table_hash(&self) -> u64 {
        u64::from(self.0[0]) | u64::from(self.0[1]) << 32
    }

    fn shard(&self) -> usize {
        // The table uses the low bits and the top 7; the shard takes others.
        (self.0[1] as usize >> 8) % SHARDS
    }
}

impl Hash for CompactKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.table_hash());
    }
}

#[derive(Debug, Clone)]
struct KeyHasher {
    sip: RandomState,
    seed: u64,
}

impl Default for KeyHasher {
    fn default() -> KeyHasher {
        KeyHasher {
            sip: RandomState::new(),
            // Another random key, drawn the same way std draws its own.
            seed: RandomState::new().hash_one(0x5eed_u64),
        }
    }
}

impl KeyHasher {
    fn compact(&self, key: &str) -> CompactKey {
        let first = self.sip.hash_one(key);
        let second = mix32(self.seed, key.as_bytes());
        CompactKey([first as u32, (first >> 32) as u32, second])
    }
}

// A fast seeded hash (multiply-rotate over 8-byte words, then MurmurHash3's
// finaliser). Not keyed strongly: it only widens SipHash's 64 bits against
// accidental collisions, which it does in a few nanoseconds.
fn mix32(seed: u64, bytes: &[u8]) -> u32 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut hash = seed ^ (bytes.len() as u64).wrapping_mul(K);
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
        hash = (hash ^ word).wrapping_mul(K).rotate_left(29);
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        let mut word = [0u8; 8];
        word[..tail.len()].copy_from_slice(tail);
        hash = (hash ^ u64::from_le_bytes(word)).wrapping_mul(K).rotate_left(29);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    (hash >> 32) as u32
}

// The keys are already uniform hashes: the table uses them as they are.
#[derive(Debug, Clone, Copy, Default)]
struct PassThrough;

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;

    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

#[derive(Debug)]
struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `CompactKey`; fold anything else in.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

// A `KeyState` in 16 bytes: the TAT, then the day (24 bits) and the count
// (40 bits, saturating: a quota above 10¹² a day is effectively unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PackedState([u32; 4]);

const USED_BITS: u32 = 40;
const USED_MAX: u64 = (1 << USED_BITS) - 1;

impl PackedState {
    fn pack(state: &KeyState) -> PackedState {
        let meta = u64::from(state.day) << USED_BITS | state.used.min(USED_MAX);
        PackedState([
            state.tat_nanos as u32,
            (state.tat_nanos >> 32) as u32,
            meta as u32,
            (meta >> 32) as u32,
        ])
    }

    fn unpack(&self) -> KeyState {
        let [tat_low, tat_high, meta_low, meta_high] = self.0.map(u64::from);
        let meta = meta_low | meta_high << 32;
        KeyState {
            tat_nanos: tat_low | tat_high << 32,
            day: (meta >> USED_BITS) as u32,
            used: meta & USED_MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{LimitKind, Plan, Verdict, NANOS_PER_DAY};
    use super::*;
    use crate::clock::ManualClock;

    const T0: u64 = 1_700_000_000; // 2023-11-14T22:13:20Z

    // The answer, which the memory store always gives at once.
    trait Decide {
        fn decision(&self, key: &str, limits: &Limits, cost: u32) -> Decision;
    }

    impl Decide for MemoryRateLimitStore {
        fn decision(&self, key: &str, limits: &Limits, cost: u32) -> Decision {
            self.check(key, limits, cost)
                .into_ready()
                .expect("the memory store answers at once")
                .expect("the memory store does not fail")
        }
    }

    fn answer(store: &MemoryRateLimitStore, key: &str, limits: &Limits, cost: u32) -> Result<Decision, StoreError> {
        store
            .check(key, limits, cost)
            .into_ready()
            .expect("the memory store answers at once")
    }

    fn store_at(secs: u64) -> (MemoryRateLimitStore, ManualClock) {
        let clock = ManualClock::at_unix_secs(secs);
        (MemoryRateLimitStore::new().with_clock(clock.clone()), clock)
    }

    #[tokio::test]
    async fn conforms() {
        crate::conformance::rate_limit_store(&MemoryRateLimitStore::new()).await;
    }

    #[tokio::test]
    async fn the_synchronous_and_the_async_check_share_one_state() {
        let (store, _clock) = store_at(T0);
        let limits = Limits::per_second(3);
        assert_eq!(store.decision("key_1", &limits, 1).per_second.remaining, 2);
        let decision = store.check("key_1", &limits, 1).await.unwrap();
        assert_eq!(decision.per_second.remaining, 1, "the async check saw the sync one");
        assert_eq!(store.decision("key_1", &limits, 1).per_second.remaining, 0);
        assert!(!store.check("key_1", &limits, 1).await.unwrap().is_allowed());
    }

    #[test]
    fn entries_are_compact() {
        assert_eq!(std::mem::size_of::<(CompactKey, PackedState)>(), 28);
        let state = KeyState {
            tat_nanos: u64::MAX - 5,
            day: 213_503,
            used: 123_456_789,
        };
        assert_eq!(PackedState::pack(&state).unpack(), state);
    }

    #[test]
    fn a_fresh_free_key_gets_its_burst_then_an_exact_wait() {
        let (store, clock) = store_at(T0);
        let free = Plan::free().limits();
        for i in 0..10 {
            assert!(store.decision("key_1", &free, 1).is_allowed(), "request {i}");
        }
        let refused = store.decision("key_1", &free, 1);
        assert_eq!(
            refused.verdict,
            Verdict::Limited {
                limit: LimitKind::PerSecond,
                retry_after: Duration::from_millis(100)
            }
        );
        assert_eq!(refused.per_second.remaining, 0);
        assert_eq!(refused.daily.unwrap().remaining, 990);
        clock.advance(Duration::from_millis(100));
        assert!(store.decision("key_1", &free, 1).is_allowed());
        assert!(!store.decision("key_1", &free, 1).is_allowed(), "exactly one more");
    }

    #[test]
    fn a_thousand_a_day_then_nothing_until_midnight_utc() {
        // 10:00 UTC on a day.
        let day_start = T0 - T0 % 86_400;
        let (store, clock) = store_at(day_start + 10 * 3_600);
        let free = Plan::free().limits();
        for i in 0..1_000 {
            assert!(store.decision("key_1", &free, 1).is_allowed(), "request {i}");
            clock.advance(Duration::from_millis(100));
        }
        let refused = store.decision("key_1", &free, 1);
        let until_midnight = Duration::from_secs(14 * 3_600) - Duration::from_millis(100_000);
        assert_eq!(
            refused.verdict,
            Verdict::Limited {
                limit: LimitKind::Daily,
                retry_after: until_midnight
            }
        );
        assert_eq!(refused.daily.unwrap().remaining, 0);
        assert_eq!(
            refused.per_second.remaining, 10,
            "per-second fully refilled, still refused"
        );
        clock.advance(until_midnight - Duration::from_nanos(1));
        assert!(!store.decision("key_1", &free, 1).is_allowed());
        clock.advance(Duration::from_nanos(1));
        let next_day = store.decision("key_1", &free, 1);
        assert!(next_day.is_allowed());
        assert_eq!(next_day.daily.unwrap().remaining, 999);
    }

    #[test]
    fn enterprise_has_no_daily_limit() {
        let (store, clock) = store_at(T0);
        let enterprise = Plan::enterprise(1_000).limits();
        for second in 0..200 {
            for _ in 0..1_000 {
                let decision = store.decision("key_1", &enterprise, 1);
                assert!(decision.is_allowed(), "second {second}");
                assert_eq!(decision.daily, None);
            }
            assert!(!store.decision("key_1", &enterprise, 1).is_allowed());
            clock.advance(Duration::from_secs(1));
        }
    }

    #[test]
    fn a_refused_request_consumes_nothing() {
        let (store, _clock) = store_at(T0);
        let limits = Limits::per_second(5).with_daily_quota(Some(3));
        for _ in 0..3 {
            assert!(store.decision("key_1", &limits, 1).is_allowed());
        }
        for _ in 0..5 {
            let refused = store.decision("key_1", &limits, 1);
            assert_eq!(refused.refused_by(), Some(LimitKind::Daily));
            assert_eq!(
                refused.per_second.remaining, 2,
                "daily refusals take no per-second units"
            );
        }
        let burst_only = Limits::per_second(2).with_daily_quota(Some(100));
        store.decision("key_2", &burst_only, 2);
        for _ in 0..5 {
            let refused = store.decision("key_2", &burst_only, 1);
            assert_eq!(refused.refused_by(), Some(LimitKind::PerSecond));
            assert_eq!(
                refused.daily.unwrap().remaining,
                98,
                "per-second refusals take no daily units"
            );
        }
    }

    #[test]
    fn weighted_costs() {
        let (store, clock) = store_at(T0);
        let free = Plan::free().limits();
        assert_eq!(store.decision("key_1", &free, 7).per_second.remaining, 3);
        let refused = store.decision("key_1", &free, 5);
        assert_eq!(refused.retry_after(), Some(Duration::from_millis(200)));
        clock.advance(Duration::from_millis(200));
        let allowed = store.decision("key_1", &free, 5);
        assert!(allowed.is_allowed());
        assert_eq!(allowed.daily.unwrap().remaining, 988);
        assert_eq!(
            store.decision("key_1", &free, 11).verdict,
            Verdict::CostExceedsLimit {
                limit: LimitKind::PerSecond
            }
        );
    }

    #[test]
    fn keys_are_independent_and_clones_share_state() {
        let (store, _clock) = store_at(T0);
        let clone = store.clone();
        let limits = Limits::per_second(2);
        assert!(store.decision("a", &limits, 2).is_allowed());
        assert!(!clone.decision("a", &limits, 1).is_allowed());
        assert!(clone.decision("b", &limits, 2).is_allowed());
    }

    #[test]
    fn concurrent_checks_admit_exactly_the_burst() {
        let (store, _clock) = store_at(T0);
        let limits = Limits::per_second(100).with_daily_quota(Some(1_000));
        let admitted = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..100 {
                        if store.decision("hot", &limits, 1).is_allowed() {
                            admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.into_inner(), 100);
        let after = store.decision("hot", &limits, 0);
        assert_eq!(after.daily.unwrap().remaining, 900);
    }

    #[test]
    fn idle_keys_are_swept_without_a_background_task() {
        let (store, clock) = store_at(T0);
        let limits = Limits::per_second(10);
        for i in 0..10_000 {
            store.decision(&format!("key_{i}"), &limits, 1);
        }
        assert_eq!(store.len(), 10_000);
        clock.advance(Duration::from_millis(1_100));
        // Queries of unknown keys store nothing but drive the sweeps.
        for i in 0..30_000 {
            store.decision(&format!("other_{i}"), &limits, 0);
        }
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn daily_counts_are_kept_until_midnight_then_swept() {
        let (store, clock) = store_at(T0);
        let free = Plan::free().limits();
        store.decision("counted", &free, 1);
        let until_midnight = Duration::from_nanos(NANOS_PER_DAY - (T0 * 1_000_000_000) % NANOS_PER_DAY);
        clock.advance(until_midnight - Duration::from_secs(5));
        for i in 0..1_000 {
            store.decision(&format!("other_{i}"), &free, 0);
        }
        assert_eq!(store.len(), 1, "today's count is still needed");
        assert_eq!(store.decision("counted", &free, 0).daily.unwrap().remaining, 999);
        clock.advance(Duration::from_secs(5) + Duration::from_nanos(IDLE_GRACE_NANOS));
        for i in 0..10_000 {
            store.decision(&format!("other_{i}"), &free, 0);
        }
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn memory_stays_bounded_under_a_stream_of_new_keys() {
        let (store, clock) = store_at(T0);
        let limits = Limits::per_second(10);
        let mut most = 0;
        for second in 0..100 {
            for i in 0..2_000 {
                store.decision(&format!("key_{second}_{i}"), &limits, 1);
            }
            most = most.max(store.len());
            clock.advance(Duration::from_secs(1));
        }
        // Each key is idle a tenth of a second after its request and may be
        // forgotten a second later; a shard is swept at least once per its
        // size in checks, so a few seconds' keys are tracked at once, not
        // all 200,000.
        assert!(most <= 5 * 2_000, "{most} keys tracked at once");
    }

    // A key landing in the same shard as `key`, so a shard cap of one is reached.
    fn same_shard(store: &MemoryRateLimitStore, key: &str, tag: &str) -> String {
        let shard = store.hasher.compact(key).shard();
        (0..)
            .map(|i| format!("{tag}_{i}"))
            .find(|other| store.hasher.compact(other).shard() == shard)
            .unwrap()
    }

    fn capped(secs: u64) -> (MemoryRateLimitStore, ManualClock) {
        let clock = ManualClock::at_unix_secs(secs);
        // 64 keys: one per shard.
        let store = MemoryRateLimitStore::new()
            .with_clock(clock.clone())
            .with_capacity(SHARDS);
        (store, clock)
    }

    #[test]
    fn at_the_cap_a_key_in_debt_is_never_dropped_and_new_keys_are_refused() {
        let (store, clock) = capped(T0);
        let limits = Limits::per_second(10);
        assert!(store.decision("debtor", &limits, 10).is_allowed());
        let newcomer = same_shard(&store, "debtor", "new");
        let refused = answer(&store, &newcomer, &limits, 1).unwrap_err();
        assert!(
            matches!(refused, StoreError::CapacityReached { capacity: 64 }),
            "{refused:?}"
        );
        assert!(!refused.is_unavailable(), "an answer, not a fault: never failed open");
        // The debtor's debt is intact: nothing regained, nothing forgotten.
        assert!(!store.decision("debtor", &limits, 1).is_allowed());
        // Queries and refusals of new keys need no room and are answered.
        assert!(answer(&store, &newcomer, &limits, 0).unwrap().is_allowed());
        assert_eq!(
            answer(&store, &newcomer, &limits, 11).unwrap().verdict,
            Verdict::CostExceedsLimit {
                limit: LimitKind::PerSecond
            }
        );
        // Once the burst is refilled the debtor is a fresh key: it may go.
        clock.advance(Duration::from_millis(999));
        assert!(
            answer(&store, &newcomer, &limits, 1).is_err(),
            "still in debt by a millisecond"
        );
        clock.advance(Duration::from_millis(1));
        assert!(store.decision(&newcomer, &limits, 1).is_allowed());
        assert_eq!(store.len(), 1);
        // The forgotten debtor is now a new key, and the newcomer is in debt.
        assert!(answer(&store, "debtor", &limits, 1).is_err());
        clock.advance(Duration::from_millis(100));
        assert!(
            store.decision("debtor", &limits, 10).is_allowed(),
            "a full burst, as a fresh key"
        );
    }

    #[test]
    fn daily_usage_is_a_debt_until_midnight() {
        let (store, clock) = capped(T0);
        let free = Plan::free().limits();
        assert!(store.decision("counted", &free, 1).is_allowed());
        let newcomer = same_shard(&store, "counted", "new");
        clock.advance(Duration::from_secs(60));
        assert!(
            answer(&store, &newcomer, &free, 1).is_err(),
            "today's count must be kept"
        );
        let until_midnight = NANOS_PER_DAY - (T0 + 60) * 1_000_000_000 % NANOS_PER_DAY;
        clock.advance(Duration::from_nanos(until_midnight));
        assert!(store.decision(&newcomer, &free, 1).is_allowed());
        assert_eq!(
            store.decision("counted", &free, 0).daily.unwrap().remaining,
            1_000,
            "a new day"
        );
    }

    #[test]
    fn a_flood_of_new_keys_stays_within_the_cap_and_admits_only_tracked_keys() {
        let keys: usize = if std::env::var_os("TOLLGATE_FULL_BOUNDS").is_some() {
            1_000_000
        } else {
            20_000
        };
        let capacity = keys / 4;
        let (store, clock) = store_at(T0);
        let store = store.with_capacity(capacity);
        let limits = Limits::per_second(10).with_daily_quota(Some(100));
        let (mut admitted, mut refused) = (0, 0);
        for i in 0..keys {
            match answer(&store, &format!("spoofed_{i}"), &limits, 1) {
                Ok(decision) => {
                    assert!(decision.is_allowed());
                    admitted += 1;
                }
                Err(StoreError::CapacityReached { .. }) => refused += 1,
                Err(other) => panic!("{other}"),
            }
            if i % 1_000 == 0 {
                clock.advance(Duration::from_millis(1));
            }
        }
        let per_shard = capacity.div_ceil(SHARDS);
        assert!(store.len() <= per_shard * SHARDS, "{} keys tracked", store.len());
        // Every admitted key is in debt for the day, so every one is still tracked.
        assert_eq!(store.len(), admitted);
        assert_eq!(admitted + refused, keys);
        assert!(
            admitted >= capacity * 9 / 10,
            "only {admitted} admitted before the shards filled"
        );
        let bucket_bound = SHARDS * (per_shard * 8 / 7 + 1).next_power_of_two() * 29;
        assert!(
            store.table_bytes() <= bucket_bound,
            "{} > {bucket_bound} bytes",
            store.table_bytes()
        );
    }

    // RSS delta for 1,000,000 tracked keys. Run alone:
    // cargo test -p tollgate-core --release -- --ignored memory_per_key --nocapture
    #[test]
    #[ignore]
    fn memory_per_key_at_one_million_keys() {
        fn rss_bytes() -> u64 {
            let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
            let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
            pages * 4096
        }
        let keys: Vec<String> = (0..1_000_000).map(|i| format!("key_{i:016}")).collect();
        let (store, _clock) = store_at(T0);
        let free = Plan::free().limits();
        let before = rss_bytes();
        for key in &keys {
            store.decision(key, &free, 1);
        }
        let after = rss_bytes();
        assert_eq!(store.len(), 1_000_000);
        // What the tables hold: a control byte per bucket beside each entry,
        // at most 7 entries per 8 buckets, a power of two of buckets per shard.
        let entry = std::mem::size_of::<(CompactKey, PackedState)>();
        let table_bytes: usize = store
            .shards
            .iter()
            .map(|shard| (lock(shard).map.capacity() * 8 / 7).next_power_of_two() * (entry + 1))
            .sum();
        let per_key = (after - before) as f64 / 1_000_000.0;
        let table_per_key = table_bytes as f64 / 1_000_000.0;
        println!(
            "memory per tracked key at 1,000,000 keys: {per_key:.1} bytes (RSS delta), {table_per_key:.1} bytes (tables)"
        );
        assert!(table_per_key <= 64.0, "{table_per_key} bytes per key in the tables");
        // The allocator keeps some of the memory freed as tables grow.
        assert!(per_key <= 70.0, "{per_key} bytes per key");
    }
}
