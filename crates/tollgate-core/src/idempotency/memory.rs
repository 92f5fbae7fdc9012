//! [`MemoryIdempotencyStore`]: idempotency keys in process memory, for one
//! instance, bounded in entries and bytes per scope and in all.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use super::{BeginOutcome, ClaimToken, Fingerprint, IdempotencyKey, IdempotencyStore, StoredResponse};
use crate::clock::SharedClock;
use crate::error::StoreError;
use crate::maybe_ready::{MaybeReady, StoreFuture};

/// What an entry costs beyond its key and response: the map slot, the two
/// index records and the entry itself, roughly.
const ENTRY_OVERHEAD: usize = 160;

/// How many expired entries an operation sweeps on its way, so expiry needs
/// no background task and no single call pays for a large backlog.
const SWEEP_BATCH: usize = 32;

/// Idempotency keys in process memory. Clones share the same entries.
///
/// Time comes from the store's [`SharedClock`] ([`with_clock`](Self::with_clock)),
/// so tests move it with a `ManualClock`.
///
/// # Bounds and eviction
///
/// Budgets are per [scope](IdempotencyKey::scope) (the idempotency layer's
/// scope is the caller's account and environment), so one tenant's large
/// responses cannot push out another tenant's records: each scope holds at
/// most [`scope_max_entries`](Self::with_scope_max_entries) entries (default
/// 10 000) and [`scope_max_bytes`](Self::with_scope_max_bytes) bytes (default
/// 8 MiB), and the store as a whole at most
/// [`max_entries`](Self::with_max_entries) (default 100 000) and
/// [`max_bytes`](Self::with_max_bytes) (default 64 MiB), counting keys,
/// stored responses and a fixed overhead per entry. Expired entries are
/// swept a few at a time by every operation, so no background task is
/// needed. When a new claim or a response does not fit, the store drops, in
/// order: every expired entry; then, over the scope's own budget, that
/// scope's oldest completed entries; then, over the store's ceiling, the
/// oldest completed entries of the scope using the most bytes (the largest
/// consumer pays first). A dropped record's retry runs again, as after its TTL.
///
/// An in-flight claim is never evicted: dropping it would let a retry run
/// while the first execution is still going, which is the one thing this
/// store exists to prevent. When live claims alone fill a budget, `begin`
/// fails with [`StoreError::Backend`] (the layer's fail-closed policy answers
/// 503) instead; and a response too large for a byte budget is refused by
/// `complete` with the same error, after deleting its claim so a retry can run.
///
/// One mutex guards the entries: every operation is a few map and tree
/// updates, short enough that sharding would cost more than it saves.
#[derive(Debug, Clone)]
pub struct MemoryIdempotencyStore {
    clock: SharedClock,
    limits: Limits,
    state: Arc<Mutex<State>>,
}

impl Default for MemoryIdempotencyStore {
    fn default() -> MemoryIdempotencyStore {
        MemoryIdempotencyStore::new()
    }
}

impl MemoryIdempotencyStore {
    /// An empty store with the system clock and the default bounds.
    pub fn new() -> MemoryIdempotencyStore {
        MemoryIdempotencyStore {
            clock: SharedClock::default(),
            limits: Limits {
                max_entries: 100_000,
                max_bytes: 64 * 1024 * 1024,
                scope_max_entries: 10_000,
                scope_max_bytes: 8 * 1024 * 1024,
            },
            state: Arc::default(),
        }
    }

    /// Uses `clock` for lock expiry and TTLs.
    pub fn with_clock(mut self, clock: impl Into<SharedClock>) -> MemoryIdempotencyStore {
        self.clock = clock.into();
        self
    }

    /// Holds at most `max_entries` entries (claims and responses), at least one.
    pub fn with_max_entries(mut self, max_entries: usize) -> MemoryIdempotencyStore {
        self.limits.max_entries = max_entries.max(1);
        self
    }

    /// Holds at most `max_bytes` bytes of keys, responses and per-entry overhead.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> MemoryIdempotencyStore {
        self.limits.max_bytes = max_bytes;
        self
    }

    /// Holds at most `max_entries` entries of any one scope, at least one.
    pub fn with_scope_max_entries(mut self, max_entries: usize) -> MemoryIdempotencyStore {
        self.limits.scope_max_entries = max_entries.max(1);
        self
    }

    /// Holds at most `max_bytes` bytes of any one scope.
    pub fn with_scope_max_bytes(mut self, max_bytes: usize) -> MemoryIdempotencyStore {
        self.limits.scope_max_bytes = max_bytes;
        self
    }

    /// How many entries of `scope` the store holds (expired ones not yet
    /// swept included).
    pub fn scope_len(&self, scope: &str) -> usize {
        self.lock().scopes.get(scope).map_or(0, |usage| usage.entries)
    }

    /// How many entries (in-flight claims and stored responses, expired ones
    /// not yet swept included) the store holds.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the store holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes charged against [`with_max_bytes`](Self::with_max_bytes).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No operation panics while holding the lock, so a poisoned lock
        // still guards consistent state.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn begin_locked(
        &self,
        key: &IdempotencyKey,
        fingerprint: Fingerprint,
        lock_ttl: Duration,
    ) -> Result<BeginOutcome, StoreError> {
        let now = self.clock.now();
        let mut state = self.lock();
        state.sweep(now, SWEEP_BATCH);
        if let Some(entry) = state.live(key, now) {
            if entry.fingerprint != fingerprint {
                return Ok(BeginOutcome::FingerprintMismatch);
            }
            return Ok(match &entry.kind {
                EntryKind::InFlight(_) => BeginOutcome::InProgress,
                EntryKind::Completed(response) => BeginOutcome::Completed(response.clone()),
            });
        }
        state.remove(key);
        let size = ENTRY_OVERHEAD + key.scope().len() + key.key().len();
        state.make_room(now, self.limits, key.scope(), 1, size)?;
        let seq = state.next_seq();
        let token = ClaimToken::from_u128(u128::from(seq));
        let key = Arc::new(key.clone());
        let expires_at = expiry(now, lock_ttl);
        state.expiries.insert((expires_at, seq), key.clone());
        state.charge(key.scope(), 1, size, None);
        state.entries.insert(
            key,
            Entry {
                fingerprint,
                expires_at,
                seq,
                size,
                kind: EntryKind::InFlight(token),
            },
        );
        Ok(BeginOutcome::Claimed(token))
    }

    fn complete_locked(
        &self,
        key: &IdempotencyKey,
        token: ClaimToken,
        response: StoredResponse,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let mut state = self.lock();
        state.sweep(now, SWEEP_BATCH);
        if !state.holds_claim(key, token, now) {
            return Ok(false);
        }
        let extra = response.stored_size();
        if let Err(full) = state.make_room(now, self.limits, key.scope(), 0, extra) {
            // The response will never be replayed: free the key so a retry
            // runs instead of waiting for the lock to expire.
            state.remove(key);
            return Err(full);
        }
        let seq = state.next_seq();
        let expires_at = expiry(now, ttl);
        let (shared_key, mut entry) = state.entries.remove_entry(key).expect("the claim was just checked");
        state.expiries.remove(&(entry.expires_at, entry.seq));
        state.expiries.insert((expires_at, seq), shared_key.clone());
        state.charge(key.scope(), 0, extra, Some((seq, shared_key.clone())));
        entry.expires_at = expires_at;
        entry.seq = seq;
        entry.size += extra;
        entry.kind = EntryKind::Completed(response);
        state.entries.insert(shared_key, entry);
        Ok(true)
    }

    fn abort_locked(&self, key: &IdempotencyKey, token: ClaimToken) -> bool {
        let now = self.clock.now();
        let mut state = self.lock();
        state.sweep(now, SWEEP_BATCH);
        if !state.holds_claim(key, token, now) {
            return false;
        }
        state.remove(key);
        true
    }
}

// Every call is answered at once: the records are in this process.
impl IdempotencyStore for MemoryIdempotencyStore {
    fn begin(&self, key: &IdempotencyKey, fingerprint: Fingerprint, lock_ttl: Duration) -> StoreFuture<BeginOutcome> {
        MaybeReady::ready(self.begin_locked(key, fingerprint, lock_ttl))
    }

    fn complete(
        &self,
        key: &IdempotencyKey,
        token: ClaimToken,
        response: StoredResponse,
        ttl: Duration,
    ) -> StoreFuture<bool> {
        MaybeReady::ready(self.complete_locked(key, token, response, ttl))
    }

    fn abort(&self, key: &IdempotencyKey, token: ClaimToken) -> StoreFuture<bool> {
        MaybeReady::ready(Ok(self.abort_locked(key, token)))
    }
}

/// The store cannot take a claim or a response without evicting a live claim.
#[derive(Debug, thiserror::Error)]
#[error("the in-memory idempotency store is full ({0})")]
struct StoreFull(&'static str);

#[derive(Debug, Clone, Copy)]
struct Limits {
    max_entries: usize,
    max_bytes: usize,
    scope_max_entries: usize,
    scope_max_bytes: usize,
}

#[derive(Debug)]
struct Entry {
    fingerprint: Fingerprint,
    expires_at: SystemTime,
    // Unique per entry state; orders completions and disambiguates expiries.
    seq: u64,
    size: usize,
    kind: EntryKind,
}

#[derive(Debug)]
enum EntryKind {
    InFlight(ClaimToken),
    Completed(StoredResponse),
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<Arc<IdempotencyKey>, Entry>,
    // Every entry by (expiry, seq): the sweep pops from the front.
    expiries: BTreeMap<(SystemTime, u64), Arc<IdempotencyKey>>,
    scopes: HashMap<String, ScopeUsage>,
    // The scopes holding completed entries, by bytes used: over the
    // store's ceiling, the last one (the largest consumer) gives way first.
    by_size: BTreeSet<(usize, String)>,
    bytes: usize,
    next_seq: u64,
}

// What one scope holds.
#[derive(Debug, Default)]
struct ScopeUsage {
    entries: usize,
    bytes: usize,
    // Completed entries by completion order: eviction pops the oldest.
    completed: BTreeMap<u64, Arc<IdempotencyKey>>,
}

impl State {
    fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn live(&self, key: &IdempotencyKey, now: SystemTime) -> Option<&Entry> {
        self.entries.get(key).filter(|entry| entry.expires_at > now)
    }

    fn holds_claim(&self, key: &IdempotencyKey, token: ClaimToken, now: SystemTime) -> bool {
        matches!(self.live(key, now), Some(Entry { kind: EntryKind::InFlight(held), .. }) if *held == token)
    }

    // Charges `entries` and `bytes` to the scope (and the store), and
    // indexes a newly completed entry for eviction.
    fn charge(&mut self, scope: &str, entries: usize, bytes: usize, completed: Option<(u64, Arc<IdempotencyKey>)>) {
        self.bytes += bytes;
        self.update_scope(scope, |usage| {
            usage.entries += entries;
            usage.bytes += bytes;
            if let Some((seq, key)) = completed {
                usage.completed.insert(seq, key);
            }
        });
    }

    fn remove(&mut self, key: &IdempotencyKey) {
        if let Some(entry) = self.entries.remove(key) {
            self.expiries.remove(&(entry.expires_at, entry.seq));
            self.bytes -= entry.size;
            self.update_scope(key.scope(), |usage| {
                usage.entries -= 1;
                usage.bytes -= entry.size;
                usage.completed.remove(&entry.seq);
            });
        }
    }

    // Changes a scope's usage, keeping `by_size` in step and dropping the
    // scope once it holds nothing.
    fn update_scope(&mut self, scope: &str, change: impl FnOnce(&mut ScopeUsage)) {
        if !self.scopes.contains_key(scope) {
            self.scopes.insert(scope.to_owned(), ScopeUsage::default());
        }
        let Some(usage) = self.scopes.get_mut(scope) else {
            return;
        };
        if !usage.completed.is_empty() {
            self.by_size.remove(&(usage.bytes, scope.to_owned()));
        }
        change(usage);
        if !usage.completed.is_empty() {
            self.by_size.insert((usage.bytes, scope.to_owned()));
        }
        if usage.entries == 0 {
            self.scopes.remove(scope);
        }
    }

    // Removes up to `limit` expired entries, earliest expiry first.
    fn sweep(&mut self, now: SystemTime, limit: usize) {
        for _ in 0..limit {
            match self.expiries.first_key_value() {
                Some(((expires_at, _), key)) if *expires_at <= now => {
                    let key = key.clone();
                    self.remove(&key);
                }
                _ => return,
            }
        }
    }

    fn fits_store(&self, limits: Limits, extra_entries: usize, extra_bytes: usize) -> bool {
        self.entries.len() + extra_entries <= limits.max_entries
            && self.bytes.saturating_add(extra_bytes) <= limits.max_bytes
    }

    fn fits_scope(&self, limits: Limits, scope: &str, extra_entries: usize, extra_bytes: usize) -> bool {
        let (entries, bytes) = self
            .scopes
            .get(scope)
            .map_or((0, 0), |usage| (usage.entries, usage.bytes));
        entries + extra_entries <= limits.scope_max_entries
            && bytes.saturating_add(extra_bytes) <= limits.scope_max_bytes
    }

    // The oldest completed entry of `scope`.
    fn oldest_of(&self, scope: &str) -> Option<Arc<IdempotencyKey>> {
        let usage = self.scopes.get(scope)?;
        usage.completed.first_key_value().map(|(_, key)| key.clone())
    }

    // Frees room in `scope` for `extra_entries` and `extra_bytes`: expired
    // entries first, then the scope's own oldest completed ones while it is
    // over its budget, then the largest consumer's oldest completed ones
    // while the store is over its ceiling; never an in-flight claim.
    fn make_room(
        &mut self,
        now: SystemTime,
        limits: Limits,
        scope: &str,
        extra_entries: usize,
        extra_bytes: usize,
    ) -> Result<(), StoreError> {
        if self.fits_scope(limits, scope, extra_entries, extra_bytes)
            && self.fits_store(limits, extra_entries, extra_bytes)
        {
            return Ok(());
        }
        self.sweep(now, usize::MAX);
        let full = |why| Err(StoreError::backend(StoreFull(why)));
        while !self.fits_scope(limits, scope, extra_entries, extra_bytes) {
            let Some(oldest) = self.oldest_of(scope) else {
                return full(if extra_entries > 0 {
                    "every entry of this scope is an in-flight claim"
                } else {
                    "the response does not fit in the scope's byte budget"
                });
            };
            self.remove(&oldest);
        }
        while !self.fits_store(limits, extra_entries, extra_bytes) {
            let largest = self.by_size.last().map(|(_, scope)| scope.clone());
            let Some(oldest) = largest.and_then(|largest| self.oldest_of(&largest)) else {
                return full(
                    if extra_entries > 0 && self.entries.len() + extra_entries > limits.max_entries {
                        "every entry is an in-flight claim"
                    } else {
                        "the response does not fit in the byte budget"
                    },
                );
            };
            self.remove(&oldest);
        }
        Ok(())
    }
}

fn expiry(now: SystemTime, ttl: Duration) -> SystemTime {
    // A TTL too long to represent means "for as long as the process lives".
    now.checked_add(ttl)
        .or_else(|| now.checked_add(Duration::from_secs(u64::from(u32::MAX))))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use bytes::Bytes;

    const LOCK: Duration = Duration::from_secs(60);
    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn store() -> (MemoryIdempotencyStore, ManualClock) {
        let clock = ManualClock::at_unix_secs(1_700_000_000);
        (MemoryIdempotencyStore::new().with_clock(clock.clone()), clock)
    }

    fn key(name: &str) -> IdempotencyKey {
        IdempotencyKey::new("account:acct_1:live", name)
    }

    fn fingerprint(n: u8) -> Fingerprint {
        Fingerprint::from_bytes([n; 32])
    }

    fn response(body: &'static [u8]) -> StoredResponse {
        StoredResponse {
            status: 201,
            headers: vec![("content-type".into(), b"application/json".to_vec())],
            body: Bytes::from_static(body),
        }
    }

    fn claim(store: &MemoryIdempotencyStore, name: &str) -> ClaimToken {
        match store.begin_locked(&key(name), fingerprint(1), LOCK).unwrap() {
            BeginOutcome::Claimed(token) => token,
            other => panic!("expected a claim on {name}, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn conforms() {
        crate::conformance::idempotency_store(&MemoryIdempotencyStore::new()).await;
    }

    #[test]
    fn a_crashed_claim_expires_after_its_lock_ttl() {
        let (store, clock) = store();
        let stale = claim(&store, "k");
        clock.advance(LOCK - Duration::from_secs(1));
        assert_eq!(
            store.begin_locked(&key("k"), fingerprint(1), LOCK).unwrap(),
            BeginOutcome::InProgress
        );
        clock.advance(Duration::from_secs(1));
        // Expired: free again, even for another request.
        let fresh = match store.begin_locked(&key("k"), fingerprint(2), LOCK).unwrap() {
            BeginOutcome::Claimed(token) => token,
            other => panic!("expected a new claim, got {other:?}"),
        };
        assert_ne!(fresh, stale);
        assert!(!store.complete_locked(&key("k"), stale, response(b"old"), DAY).unwrap());
        assert!(!store.abort_locked(&key("k"), stale));
        assert!(store.complete_locked(&key("k"), fresh, response(b"new"), DAY).unwrap());
        assert_eq!(
            store.begin_locked(&key("k"), fingerprint(2), LOCK).unwrap(),
            BeginOutcome::Completed(response(b"new"))
        );
    }

    #[test]
    fn an_expired_claim_cannot_complete_even_if_unclaimed() {
        let (store, clock) = store();
        let token = claim(&store, "k");
        clock.advance(LOCK);
        assert!(!store.complete_locked(&key("k"), token, response(b"late"), DAY).unwrap());
        assert!(store.is_empty(), "the sweep removed the expired claim");
        assert_eq!(store.bytes(), 0);
    }

    #[test]
    fn responses_expire_after_their_ttl_without_a_background_task() {
        let (store, clock) = store();
        let token = claim(&store, "k");
        assert!(store.complete_locked(&key("k"), token, response(b"{}"), DAY).unwrap());
        clock.advance(DAY - Duration::from_secs(1));
        assert!(matches!(
            store.begin_locked(&key("k"), fingerprint(1), LOCK).unwrap(),
            BeginOutcome::Completed(_)
        ));
        clock.advance(Duration::from_secs(1));
        // Any operation sweeps it, even on another key.
        assert!(!store.abort_locked(&key("other"), ClaimToken::from_u128(0)));
        assert!(store.is_empty());
        assert_eq!(store.bytes(), 0);
        claim(&store, "k");
    }

    #[test]
    fn a_full_store_evicts_expired_entries_then_the_oldest_completed() {
        let (store, clock) = store();
        let store = store.with_max_entries(3);
        for name in ["a", "b"] {
            let token = claim(&store, name);
            assert!(store.complete_locked(&key(name), token, response(b"{}"), DAY).unwrap());
            clock.advance(Duration::from_secs(1));
        }
        let short = claim(&store, "short");
        assert!(store
            .complete_locked(&key("short"), short, response(b"{}"), Duration::from_secs(5))
            .unwrap());
        clock.advance(Duration::from_secs(5));
        // "short" expired: it goes first, and "a" and "b" stay.
        claim(&store, "c");
        assert_eq!(store.len(), 3);
        assert!(matches!(
            store.begin_locked(&key("a"), fingerprint(1), LOCK).unwrap(),
            BeginOutcome::Completed(_)
        ));
        // Now full of live entries: "a", completed first, is evicted.
        claim(&store, "d");
        assert_eq!(store.len(), 3);
        assert!(matches!(
            store.begin_locked(&key("b"), fingerprint(1), LOCK).unwrap(),
            BeginOutcome::Completed(_)
        ));
        assert_eq!(
            store.begin_locked(&key("c"), fingerprint(1), LOCK).unwrap(),
            BeginOutcome::InProgress
        );
    }

    #[test]
    fn in_flight_claims_are_never_evicted() {
        let (store, _clock) = store();
        let store = store.with_max_entries(2);
        claim(&store, "a");
        claim(&store, "b");
        let error = store.begin_locked(&key("c"), fingerprint(1), LOCK).unwrap_err();
        assert!(error.is_unavailable(), "{error}");
        assert!(error.to_string().contains("in-flight"), "{error}");
        for name in ["a", "b"] {
            assert_eq!(
                store.begin_locked(&key(name), fingerprint(1), LOCK).unwrap(),
                BeginOutcome::InProgress
            );
        }
    }

    #[test]
    fn the_byte_budget_evicts_old_responses_and_refuses_oversized_ones() {
        let (store, _clock) = store();
        let body: &'static [u8] = &[b'x'; 1000];
        let one_entry = ENTRY_OVERHEAD + key("a").scope().len() + 1 + response(body).stored_size();
        let store = store.with_max_bytes(one_entry * 2);
        for name in ["a", "b"] {
            let token = claim(&store, name);
            assert!(store.complete_locked(&key(name), token, response(body), DAY).unwrap());
        }
        assert_eq!(store.bytes(), one_entry * 2);
        let token = claim(&store, "c");
        assert!(store.complete_locked(&key("c"), token, response(body), DAY).unwrap());
        assert!(store.bytes() <= one_entry * 2);
        assert!(matches!(
            store.begin_locked(&key("a"), fingerprint(1), LOCK).unwrap(),
            BeginOutcome::Claimed(_)
        ));

        let huge: &'static [u8] = &[b'y'; 10_000];
        let token = claim(&store, "huge");
        let error = store
            .complete_locked(&key("huge"), token, response(huge), DAY)
            .unwrap_err();
        assert!(error.is_unavailable());
        assert!(
            matches!(
                store.begin_locked(&key("huge"), fingerprint(1), LOCK).unwrap(),
                BeginOutcome::Claimed(_)
            ),
            "the refused claim was released for a retry"
        );
    }

    #[test]
    fn trailers_are_charged_to_the_byte_budget() {
        let (store, _clock) = store();
        let mut grpc = response(b"\0\0\0\0\0");
        grpc.push_trailer("grpc-status", b"0".to_vec());
        let plain_size = response(b"\0\0\0\0\0").stored_size();
        assert_eq!(grpc.stored_size(), plain_size + "trailer:grpc-status".len() + 1);
        let one_entry = ENTRY_OVERHEAD + key("a").scope().len() + 1 + grpc.stored_size();
        let token = claim(&store, "a");
        assert!(store.complete_locked(&key("a"), token, grpc.clone(), DAY).unwrap());
        assert_eq!(store.bytes(), one_entry);
        assert_eq!(
            store.begin_locked(&key("a"), fingerprint(1), LOCK).unwrap(),
            BeginOutcome::Completed(grpc.clone())
        );

        // The body alone would fit; with its trailers it does not.
        let (store, _clock) = self::store();
        let store = store.with_max_bytes(one_entry - 1);
        let token = claim(&store, "a");
        assert!(store
            .complete_locked(&key("a"), token, grpc, DAY)
            .unwrap_err()
            .is_unavailable());
        let token = claim(&store, "a");
        assert!(store
            .complete_locked(&key("a"), token, response(b"\0\0\0\0\0"), DAY)
            .unwrap());
    }

    fn complete_in(store: &MemoryIdempotencyStore, scope: &str, name: &str, body: &'static [u8]) {
        let key = IdempotencyKey::new(scope, name);
        let BeginOutcome::Claimed(token) = store.begin_locked(&key, fingerprint(1), LOCK).unwrap() else {
            panic!("expected a claim on {scope}/{name}");
        };
        assert!(store.complete_locked(&key, token, response(body), DAY).unwrap());
    }

    fn replays(store: &MemoryIdempotencyStore, scope: &str, name: &str) -> bool {
        matches!(
            store
                .begin_locked(&IdempotencyKey::new(scope, name), fingerprint(1), LOCK)
                .unwrap(),
            BeginOutcome::Completed(_)
        )
    }

    #[test]
    fn one_scope_over_its_budget_evicts_only_its_own_records() {
        let (store, _clock) = store();
        let store = store.with_scope_max_entries(3);
        complete_in(&store, "account:quiet:live", "q1", b"{}");
        for n in 0..50 {
            complete_in(&store, "account:noisy:live", &format!("n{n}"), b"{}");
        }
        assert_eq!(store.scope_len("account:noisy:live"), 3);
        assert!(
            replays(&store, "account:quiet:live", "q1"),
            "the other tenant's record stays"
        );
        for n in 47..50 {
            assert!(
                replays(&store, "account:noisy:live", &format!("n{n}")),
                "the newest stay"
            );
        }
        assert!(!replays(&store, "account:noisy:live", "n0"), "the oldest went first");

        // A scope full of in-flight claims is refused; others are not.
        let (store, _clock) = self::store();
        let store = store.with_scope_max_entries(2);
        for name in ["a", "b"] {
            store
                .begin_locked(&IdempotencyKey::new("account:busy:live", name), fingerprint(1), LOCK)
                .unwrap();
        }
        let error = store
            .begin_locked(&IdempotencyKey::new("account:busy:live", "c"), fingerprint(1), LOCK)
            .unwrap_err();
        assert!(error.to_string().contains("scope is an in-flight claim"), "{error}");
        complete_in(&store, "account:other:live", "o", b"{}");
    }

    #[test]
    fn the_store_ceiling_evicts_the_largest_consumers_oldest_records_first() {
        let (store, _clock) = store();
        let big: &'static [u8] = &[b'x'; 2000];
        let small_entry = ENTRY_OVERHEAD + "account:small:live".len() + 2 + response(b"{}").stored_size();
        let big_entry = ENTRY_OVERHEAD + "account:large:live".len() + 2 + response(big).stored_size();
        // Room for the small tenant's two records and three large ones.
        let store = store.with_max_bytes(small_entry * 2 + big_entry * 3);
        complete_in(&store, "account:small:live", "s0", b"{}");
        complete_in(&store, "account:small:live", "s1", b"{}");
        for n in 0..6 {
            complete_in(&store, "account:large:live", &format!("l{n}"), big);
            assert!(store.bytes() <= small_entry * 2 + big_entry * 3);
        }
        assert!(
            replays(&store, "account:small:live", "s0"),
            "the small tenant keeps its oldest"
        );
        assert!(replays(&store, "account:small:live", "s1"));
        for n in 3..6 {
            assert!(replays(&store, "account:large:live", &format!("l{n}")));
        }
        // Asked last: asking claims the key anew.
        assert!(
            !replays(&store, "account:large:live", "l2"),
            "the largest consumer's oldest went"
        );
    }

    #[test]
    fn in_flight_claims_survive_the_ceiling_whoever_is_largest() {
        let (store, _clock) = store();
        let store = store.with_max_entries(3);
        for name in ["a", "b"] {
            store
                .begin_locked(&IdempotencyKey::new("account:large:live", name), fingerprint(1), LOCK)
                .unwrap();
        }
        complete_in(&store, "account:small:live", "s", b"{}");
        // Full: the only completed record is the small tenant's, so it goes;
        // the large tenant's claims are never touched.
        complete_in(&store, "account:third:live", "t", b"{}");
        assert!(!replays(&store, "account:small:live", "s"));
        for name in ["a", "b"] {
            assert_eq!(
                store
                    .begin_locked(&IdempotencyKey::new("account:large:live", name), fingerprint(1), LOCK)
                    .unwrap(),
                BeginOutcome::InProgress
            );
        }
    }

    #[test]
    fn a_clock_stepping_back_keeps_entries_alive() {
        let (store, clock) = store();
        claim(&store, "k");
        clock.set(SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000));
        assert_eq!(
            store.begin_locked(&key("k"), fingerprint(1), LOCK).unwrap(),
            BeginOutcome::InProgress
        );
    }

    #[test]
    fn enormous_ttls_do_not_overflow() {
        let (store, _clock) = store();
        let token = claim(&store, "k");
        assert!(store
            .complete_locked(&key("k"), token, response(b"{}"), Duration::MAX)
            .unwrap());
        assert!(matches!(
            store.begin_locked(&key("k"), fingerprint(1), Duration::MAX).unwrap(),
            BeginOutcome::Completed(_)
        ));
    }
}
