//! [`FakeStore`]: any store, with faults, a gate, call counts and
//! asynchronous answers switched on from the test. One wrapper for every
//! store trait, so tests need no hand-written doubles.

use std::collections::{HashMap, HashSet};
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use std::time::{Duration, SystemTime};

use crate::allowlist::{AllowlistStore, Allowlists, IpSet};
use crate::error::StoreError;
use crate::idempotency::{BeginOutcome, ClaimToken, Fingerprint, IdempotencyKey, IdempotencyStore, StoredResponse};
use crate::keys::{KeyHash, KeyRecord, KeyRegistry, KeyStore, RotateRefusal, Rotation};
use crate::maybe_ready::{MaybeReady, StoreFuture};
use crate::rate_limit::{Decision, Limits, RateLimitStore};
use crate::replay::ReplayStore;
use crate::usage::{Day, DayUsage, UsageDelta, UsageStore};

/// A store `S` seen through a test's controls. Clones share the controls.
///
/// Operations are named by their method (`"find_by_hash"`, `"check"`, …).
/// - [`fail`](FakeStore::fail): the operation answers
///   [`StoreError::Backend`] without reaching `S`.
/// - [`gate`](FakeStore::gate): answers wait until the [`Gate`] opens
///   (`S` is called at once; only its answer is held back).
/// - [`asynchronous`](FakeStore::asynchronous): answers come from a
///   future that is never ready when polled in passing with a no-op waker
///   and is ready on its second poll by a task, as a network store's are.
/// - [`calls`](FakeStore::calls): how often an operation was called.
///
/// ```
/// use tollgate_core::conformance::FakeStore;
/// use tollgate_core::rate_limit::{Limits, MemoryRateLimitStore, RateLimitStore};
///
/// let store = FakeStore::new(MemoryRateLimitStore::new());
/// store.fail("check");
/// let answer = store.check("key", &Limits::per_second(1), 1).into_ready().ok().unwrap();
/// assert!(answer.unwrap_err().is_unavailable());
/// assert_eq!(store.calls("check"), 1);
/// ```
#[derive(Debug, Clone)]
pub struct FakeStore<S> {
    inner: S,
    controls: Arc<Controls>,
}

#[derive(Debug, Default)]
struct Controls {
    failing: Mutex<HashSet<&'static str>>,
    fail_all: std::sync::atomic::AtomicBool,
    asynchronous: std::sync::atomic::AtomicBool,
    gate: Mutex<Option<Gate>>,
    calls: Mutex<HashMap<&'static str, usize>>,
    completed: Mutex<Vec<StoredResponse>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<S> FakeStore<S> {
    /// `inner`, with every control off.
    pub fn new(inner: S) -> FakeStore<S> {
        FakeStore {
            inner,
            controls: Arc::default(),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Makes `operation` fail from now on.
    pub fn fail(&self, operation: &'static str) {
        lock(&self.controls.failing).insert(operation);
    }

    /// Makes every operation fail from now on.
    pub fn fail_all(&self) {
        self.controls.fail_all.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Ends every failure.
    pub fn heal(&self) {
        lock(&self.controls.failing).clear();
        self.controls.fail_all.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Holds every answer until `gate` opens (`None`: no gate).
    pub fn gate(&self, gate: Option<Gate>) {
        *lock(&self.controls.gate) = gate;
    }

    /// Answers through futures that wait once, as a network store's do.
    pub fn asynchronous(self) -> FakeStore<S> {
        self.controls
            .asynchronous
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self
    }

    /// Every response an idempotency layer asked the store to keep
    /// (`complete`), in order, whether or not the store kept it.
    pub fn completed(&self) -> Vec<StoredResponse> {
        lock(&self.controls.completed).clone()
    }

    /// How many times `operation` was called.
    pub fn calls(&self, operation: &str) -> usize {
        lock(&self.controls.calls).get(operation).copied().unwrap_or(0)
    }

    fn intercept<T: Send + 'static>(
        &self,
        operation: &'static str,
        call: impl FnOnce() -> StoreFuture<T>,
    ) -> StoreFuture<T> {
        use std::sync::atomic::Ordering::SeqCst;
        *lock(&self.controls.calls).entry(operation).or_default() += 1;
        if self.controls.fail_all.load(SeqCst) || lock(&self.controls.failing).contains(operation) {
            return MaybeReady::ready(Err(StoreError::backend(format!("injected fault in {operation}"))));
        }
        let answer = call();
        let gate = lock(&self.controls.gate).clone();
        let asynchronous = self.controls.asynchronous.load(SeqCst);
        if gate.is_none() && !asynchronous {
            return answer;
        }
        MaybeReady::boxed(async move {
            if asynchronous {
                // Like a network round trip: never done when polled in
                // passing (with a no-op waker, as `MaybeReady::into_ready`
                // does), and done on the second poll by a task.
                let mut waited = false;
                poll_fn(|cx| {
                    if cx.waker().will_wake(Waker::noop()) {
                        return Poll::Pending;
                    }
                    if !std::mem::replace(&mut waited, true) {
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    Poll::Ready(())
                })
                .await;
            }
            if let Some(gate) = gate {
                gate.opened().await;
            }
            answer.await
        })
    }
}

/// A gate that holds [`FakeStore`] answers until it opens. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<Mutex<GateState>>);

#[derive(Debug, Default)]
struct GateState {
    open: bool,
    waiting: Vec<Waker>,
}

impl Gate {
    /// A closed gate.
    pub fn closed() -> Gate {
        Gate::default()
    }

    /// Opens the gate and wakes everything waiting at it.
    pub fn open(&self) {
        let mut state = lock(&self.0);
        state.open = true;
        for waker in state.waiting.drain(..) {
            waker.wake();
        }
    }

    /// How many answers are waiting at the gate.
    pub fn waiting(&self) -> usize {
        lock(&self.0).waiting.len()
    }

    async fn opened(&self) {
        poll_fn(|cx| {
            let mut state = lock(&self.0);
            if state.open {
                return Poll::Ready(());
            }
            // A poll in passing (a no-op waker) waits for nobody.
            if !cx.waker().will_wake(Waker::noop()) {
                state.waiting.retain(|waker| !waker.will_wake(cx.waker()));
                state.waiting.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await;
    }
}

// Each method counts, fails or delays, then asks the wrapped store.
macro_rules! fake {
    ($trait:ident { $( fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $out:ty; )* }) => {
        impl<S: $trait> $trait for FakeStore<S> {
            $(
                fn $name(&self $(, $arg: $ty)*) -> StoreFuture<$out> {
                    self.intercept(stringify!($name), || self.inner.$name($($arg),*))
                }
            )*
        }
    };
}

fake!(KeyStore {
    fn find_by_hash(&self, hash: &KeyHash) -> Option<Arc<KeyRecord>>;
    fn record_last_use(&self, key_id: &str, at: SystemTime) -> ();
});

fake!(KeyRegistry {
    fn find_by_id(&self, key_id: &str) -> Option<Arc<KeyRecord>>;
    fn insert(&self, record: KeyRecord, max_active: Option<usize>, now: SystemTime) -> ();
    fn list_by_account(&self, account_id: &str) -> Vec<Arc<KeyRecord>>;
    fn revoke(&self, key_id: &str, at: SystemTime) -> Option<Arc<KeyRecord>>;
    fn rotate(&self, rotation: Rotation) -> Result<Arc<KeyRecord>, RotateRefusal>;
});

fake!(RateLimitStore {
    fn check(&self, key: &str, limits: &Limits, cost: u32) -> Decision;
});

// By hand: `complete` also records what it was asked to keep.
impl<S: IdempotencyStore> IdempotencyStore for FakeStore<S> {
    fn begin(&self, key: &IdempotencyKey, fingerprint: Fingerprint, lock_ttl: Duration) -> StoreFuture<BeginOutcome> {
        self.intercept("begin", || self.inner.begin(key, fingerprint, lock_ttl))
    }

    fn complete(
        &self,
        key: &IdempotencyKey,
        token: ClaimToken,
        stored: StoredResponse,
        ttl: Duration,
    ) -> StoreFuture<bool> {
        lock(&self.controls.completed).push(stored.clone());
        self.intercept("complete", || self.inner.complete(key, token, stored, ttl))
    }

    fn abort(&self, key: &IdempotencyKey, token: ClaimToken) -> StoreFuture<bool> {
        self.intercept("abort", || self.inner.abort(key, token))
    }
}

fake!(AllowlistStore {
    fn account_allowlist(&self, account_id: &str) -> Option<Arc<IpSet>>;
    fn set_account_allowlist(&self, account_id: &str, list: IpSet) -> ();
    fn clear_account_allowlist(&self, account_id: &str) -> bool;
    fn key_allowlist(&self, key_id: &str) -> Option<Arc<IpSet>>;
    fn set_key_allowlist(&self, key_id: &str, list: IpSet) -> ();
    fn clear_key_allowlist(&self, key_id: &str) -> bool;
    fn allowlists(&self, account_id: &str, key_id: &str) -> Allowlists;
});

fake!(ReplayStore {
    fn check_and_remember(&self, id: &str, ttl: Duration) -> bool;
    fn forget(&self, id: &str) -> ();
});

fake!(UsageStore {
    fn add(&self, deltas: Vec<UsageDelta>) -> ();
    fn days(&self, key_id: &str, from: Day, to: Day) -> Vec<DayUsage>;
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::MemoryRateLimitStore;

    #[tokio::test]
    async fn a_gated_store_answers_when_the_gate_opens() {
        let store = FakeStore::new(MemoryRateLimitStore::new());
        let gate = Gate::closed();
        store.gate(Some(gate.clone()));
        let pending = store
            .check("k", &Limits::per_second(5), 1)
            .into_ready()
            .expect_err("held");
        let pending = pending.into_ready().expect_err("still held");
        gate.open();
        assert_eq!(pending.await.unwrap().per_second.remaining, 4);
        assert_eq!(store.calls("check"), 1);
    }

    #[tokio::test]
    async fn an_asynchronous_store_waits_once_then_answers() {
        let store = FakeStore::new(MemoryRateLimitStore::new()).asynchronous();
        let pending = store
            .check("k", &Limits::per_second(5), 1)
            .into_ready()
            .expect_err("waits");
        assert!(pending.await.unwrap().is_allowed());
        store.fail_all();
        assert!(store.check("k", &Limits::per_second(5), 1).await.is_err());
        store.heal();
        assert!(store.check("k", &Limits::per_second(5), 1).await.is_ok());
    }
}
