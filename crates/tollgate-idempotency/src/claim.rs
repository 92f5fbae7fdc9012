//! [`ClaimGuard`]: a claim on a key that is released if nobody completes it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use tollgate_core::idempotency::{ClaimToken, IdempotencyKey, IdempotencyStore, StoredResponse};
use tollgate_core::{MaybeReady, StoreError};

/// Holds the claim that `begin` made until it is completed or released.
///
/// Dropped while still holding it (the response future was dropped because
/// the client went away, or the task was cancelled), it aborts the claim so
/// a retry can run at once. `Drop` cannot await, so the abort is taken at
/// once if the store answers without I/O, such as the memory store; if it
/// is still pending it is spawned on the current tokio runtime. Without a
/// runtime it is given up, and the claim's lock expiry releases the key
/// instead.
pub(crate) struct ClaimGuard {
    claim: Option<Claim>,
}

struct Claim {
    store: Arc<dyn IdempotencyStore>,
    key: IdempotencyKey,
    token: ClaimToken,
}

impl Claim {
    fn abort(&self) -> MaybeReady<Result<bool, StoreError>> {
        self.store.abort(&self.key, self.token)
    }
}

impl ClaimGuard {
    pub(crate) fn new(store: Arc<dyn IdempotencyStore>, key: IdempotencyKey, token: ClaimToken) -> ClaimGuard {
        ClaimGuard {
            claim: Some(Claim { store, key, token }),
        }
    }

    /// Stores the response under the claim. The guard stays armed until the
    /// store answers, so a completion cut short still releases the claim.
    pub(crate) fn complete(mut self, response: StoredResponse, ttl: Duration) -> MaybeReady<Result<bool, StoreError>> {
        let claim = self.claim.as_ref().expect("an armed guard");
        let completing = claim.store.complete(&claim.key, claim.token, response, ttl);
        completing.map(move |result| {
            self.disarm();
            result
        })
    }

    /// Gives the claim up so a retry can run, logging a store failure (the
    /// lock expiry then releases the key). Armed until the store answers, too.
    pub(crate) fn release(mut self) -> MaybeReady<()> {
        let aborting = self.claim.as_ref().expect("an armed guard").abort();
        aborting.map(move |result| {
            self.disarm();
            log_abort(&result);
        })
    }

    // The store answered: nothing is left for `Drop` to release.
    fn disarm(&mut self) {
        self.claim = None;
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            abort_in_background(claim);
        }
    }
}

fn abort_in_background(claim: Claim) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => match claim.abort().into_ready() {
            Ok(result) => log_abort(&result),
            Err(pending) => {
                runtime.spawn(async move { log_abort(&pending.await) });
            }
        },
        Err(_) => {
            // Outside a runtime a store that needs one (timers, sockets)
            // panics when called or polled: contain that, never unwind out
            // of a destructor.
            match catch_unwind(AssertUnwindSafe(|| claim.abort().into_ready())) {
                Ok(Ok(result)) => log_abort(&result),
                _ => tracing::warn!("idempotency claim left to its lock expiry: no runtime to finish the abort on"),
            }
        }
    }
}

fn log_abort(result: &Result<bool, StoreError>) {
    match result {
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "could not release an idempotency claim; its lock expiry will"),
    }
}
