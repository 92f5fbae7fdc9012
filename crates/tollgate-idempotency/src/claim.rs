//! [`ClaimGuard`]: a claim on a key that is released if nobody completes it.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tollgate_core::idempotency::{ClaimToken, IdempotencyKey, IdempotencyStore, StoredResponse};
use tollgate_core::StoreError;

/// Holds the claim that `begin` made until it is completed or released.
///
/// Dropped while still holding it (the response future was dropped because
/// the client went away, or the task was cancelled), it aborts the claim so
/// a retry can run at once. `Drop` cannot await, so the abort is polled once
/// in place, which finishes it for stores that answer without I/O such as
/// the memory store; if it is still pending it is spawned on the current
/// tokio runtime. Without a runtime it is given up, and the claim's lock
/// expiry releases the key instead.
pub(crate) struct ClaimGuard<St: IdempotencyStore> {
    claim: Option<Claim<St>>,
}

struct Claim<St> {
    store: Arc<St>,
    key: IdempotencyKey,
    token: ClaimToken,
}

impl<St: IdempotencyStore> ClaimGuard<St> {
    pub(crate) fn new(store: Arc<St>, key: IdempotencyKey, token: ClaimToken) -> ClaimGuard<St> {
        ClaimGuard {
            claim: Some(Claim { store, key, token }),
        }
    }

    /// Stores the response under the claim. The guard stays armed until the
    /// store answers, so a completion cut short still releases the claim.
    pub(crate) async fn complete(mut self, response: StoredResponse, ttl: Duration) -> Result<bool, StoreError> {
        let claim = self.claim.as_ref().expect("an armed guard");
        let result = claim.store.complete(&claim.key, claim.token, response, ttl).await;
        self.claim = None;
        result
    }

    /// Gives the claim up so a retry can run, logging a store failure (the
    /// lock expiry then releases the key).
    pub(crate) async fn release(mut self) {
        let claim = self.claim.as_ref().expect("an armed guard");
        let result = claim.store.abort(&claim.key, claim.token).await;
        self.claim = None;
        log_abort(&result);
    }
}

impl<St: IdempotencyStore> Drop for ClaimGuard<St> {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            abort_in_background(claim);
        }
    }
}

fn abort_in_background<St: IdempotencyStore>(claim: Claim<St>) {
    let mut abort = Box::pin(async move {
        let result = claim.store.abort(&claim.key, claim.token).await;
        log_abort(&result);
    });
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            if poll_once(abort.as_mut()).is_pending() {
                runtime.spawn(abort);
            }
        }
        Err(_) => {
            // Outside a runtime a store future that needs one (timers,
            // sockets) panics when polled: contain that, never unwind out
            // of a destructor.
            let polled = catch_unwind(AssertUnwindSafe(|| poll_once(abort.as_mut())));
            if !matches!(polled, Ok(Poll::Ready(()))) {
                tracing::warn!("idempotency claim left to its lock expiry: no runtime to finish the abort on");
            }
        }
    }
}

fn poll_once<F: Future<Output = ()> + ?Sized>(future: Pin<&mut F>) -> Poll<()> {
    // Any later poll (by the runtime, after a spawn) brings its own waker.
    future.poll(&mut Context::from_waker(Waker::noop()))
}

fn log_abort(result: &Result<bool, StoreError>) {
    match result {
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "could not release an idempotency claim; its lock expiry will"),
    }
}
