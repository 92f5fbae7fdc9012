//! Coalesced rate-limit checks: while one script call is on its way to
//! Redis, the checks that arrive meanwhile wait in a queue, and go together
//! in the next call (at most [`MAX_BATCH`]), which checks them in arrival
//! order. So under concurrency a store sends one `EVALSHA` per batch
//! instead of one per request, and Redis runs the script's setup (and
//! reads `TIME`) once per batch. Each check stays exact and atomic: the
//! whole batch is one script run, and a key named twice in it sees the
//! first check's result. A lone request costs what it did: its batch is
//! itself.
//!
//! No task runs while nothing waits: the check that finds no call on its
//! way spawns the sender, which sends batches until the queue is empty.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;
use tollgate_core::rate_limit::{Decision, Limits};
use tollgate_core::StoreError;

use crate::backend::Backend;

/// The most checks in one script call: enough to absorb a burst of
/// concurrent requests, small enough that one call stays short (Redis runs
/// nothing else while a script runs).
pub(crate) const MAX_BATCH: usize = 64;

/// One check waiting for its batch.
pub(crate) struct Waiting {
    pub(crate) state_key: String,
    pub(crate) limits: Limits,
    pub(crate) cost: u32,
    answer: oneshot::Sender<Result<Decision, StoreError>>,
}

/// The queue shared by the rate-limit stores of one connection.
#[derive(Default)]
pub(crate) struct Coalescer {
    queue: Mutex<Queue>,
}

impl std::fmt::Debug for Coalescer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("waiting", &self.lock().waiting.len())
            .finish()
    }
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    // Whether a sender task is running (it empties the queue before it ends).
    sending: bool,
}

impl Waiting {
    /// Hands the check its answer (nobody may be waiting any more: a
    /// request dropped or timed out meanwhile).
    pub(crate) fn answer(self, answer: Result<Decision, StoreError>) {
        let _ = self.answer.send(answer);
    }
}

impl Coalescer {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Every change to the queue is one step: a poisoned lock is used as is.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a check and waits for its batch's answer. Must be polled
    /// within a Tokio runtime (it may spawn the sender).
    pub(crate) async fn check(
        self: Arc<Self>,
        backend: Backend,
        state_key: String,
        limits: Limits,
        cost: u32,
    ) -> Result<Decision, StoreError> {
        let (answer, answered) = oneshot::channel();
        let lead = {
            let mut queue = self.lock();
            queue.waiting.push_back(Waiting {
                state_key,
                limits,
                cost,
                answer,
            });
            !std::mem::replace(&mut queue.sending, true)
        };
        if lead {
            tokio::spawn(self.send_all(backend));
        }
        answered
            .await
            .unwrap_or_else(|_| Err(StoreError::backend("the rate-limit batch was dropped")))
    }

    // Sends batches until none waits.
    async fn send_all(self: Arc<Self>, backend: Backend) {
        let mut guard = Sending(Some(self.clone()));
        loop {
            let batch: Vec<Waiting> = {
                let mut queue = self.lock();
                if queue.waiting.is_empty() {
                    queue.sending = false;
                    guard.0 = None;
                    return;
                }
                let n = queue.waiting.len().min(MAX_BATCH);
                queue.waiting.drain(..n).collect()
            };
            crate::rate_limit::send_batch(&backend, batch).await;
        }
    }
}

// Should the sender be dropped half-way (its runtime shut down), the next
// check starts another instead of waiting for it forever.
struct Sending(Option<Arc<Coalescer>>);

impl Drop for Sending {
    fn drop(&mut self) {
        if let Some(coalescer) = self.0.take() {
            coalescer.lock().sending = false;
        }
    }
}

/// A copy of a batch's error for each of its checks.
pub(crate) fn copy_error(error: &StoreError) -> StoreError {
    match error {
        StoreError::Timeout => StoreError::Timeout,
        StoreError::Corrupt(what) => StoreError::Corrupt(what.clone()),
        other => StoreError::backend(other.to_string()),
    }
}
