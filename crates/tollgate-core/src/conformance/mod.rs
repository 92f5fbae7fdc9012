//! Conformance suites: behaviour every backend of a storage trait must show,
//! so the memory and Redis (and SQL) stores are proven to behave alike; and
//! [`FakeStore`], the one test double for every store trait (failing,
//! gated, counting, answering only asynchronously).
//!
//! Each suite is an async function taking a store. It uses fresh random ids,
//! so it can run against a shared server; it panics on the first failure.
//!
//! ```ignore
//! #[tokio::test]
//! async fn my_store_conforms() {
//!     tollgate_core::conformance::key_store(&MyKeyStore::connect().await).await;
//! }
//! ```

mod fake;

pub use crate::alerts::conformance::*;
pub use crate::allowlist::conformance::*;
pub use crate::idempotency::conformance::*;
pub use crate::keys::conformance::*;
pub use crate::rate_limit::conformance::*;
pub use crate::replay::conformance::*;
pub use crate::usage::conformance::*;
pub use fake::{FakeStore, Gate};

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A name unique across processes and calls: `prefix` plus the process id,
/// a counter and the time, so suites never see each other's records.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

// Polls every future concurrently, without a runtime dependency.
pub(crate) async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|output| output.expect("every future finished"))
        .collect()
}
