//! Per-key request counts for today (`GET /v1/usage`), counted by a
//! middleware between authentication and rate limiting so refused requests
//! are counted too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use dashmap::DashMap;
use http::StatusCode;
use tollgate_core::{unix_secs, Principal, SharedClock};

/// Today's counts for one key.
#[derive(Debug, Default)]
pub struct KeyUsage {
    /// Requests that reached the rate limiter.
    pub requests: AtomicU64,
    /// Of those, refused with 429.
    pub rate_limited: AtomicU64,
}

/// Counts per key for the current UTC day. Clones share the counts.
#[derive(Debug, Clone)]
pub struct Usage {
    // Key id → (the day the counts belong to, the counts).
    counts: Arc<DashMap<String, (u64, Arc<KeyUsage>)>>,
    clock: SharedClock,
}

impl Usage {
    /// Empty counts on this clock.
    pub fn new(clock: SharedClock) -> Usage {
        Usage {
            counts: Arc::default(),
            clock,
        }
    }

    fn today(&self) -> u64 {
        unix_secs(self.clock.now()) / 86_400
    }

    // Today's counts for a key; counts from an earlier day start over.
    fn entry(&self, key_id: &str) -> Arc<KeyUsage> {
        let day = self.today();
        if let Some(found) = self.counts.get(key_id).filter(|found| found.0 == day) {
            return found.1.clone();
        }
        let mut entry = self
            .counts
            .entry(key_id.to_owned())
            .or_insert_with(|| (day, Arc::default()));
        if entry.0 != day {
            *entry = (day, Arc::default());
        }
        entry.1.clone()
    }

    /// Today's (requests, rate_limited) for a key.
    pub fn today_for(&self, key_id: &str) -> (u64, u64) {
        let day = self.today();
        self.counts
            .get(key_id)
            .filter(|found| found.0 == day)
            .map(|found| {
                (
                    found.1.requests.load(Ordering::Relaxed),
                    found.1.rate_limited.load(Ordering::Relaxed),
                )
            })
            .unwrap_or((0, 0))
    }
}

/// The counting middleware.
pub async fn count(State(usage): State<Usage>, request: Request, next: Next) -> Response {
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return next.run(request).await;
    };
    let counts = usage.entry(principal.key_id());
    counts.requests.fetch_add(1, Ordering::Relaxed);
    let response = next.run(request).await;
    if response.status() == StatusCode::TOO_MANY_REQUESTS {
        counts.rate_limited.fetch_add(1, Ordering::Relaxed);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tollgate_core::ManualClock;

    #[test]
    fn counts_reset_each_utc_day() {
        let clock = ManualClock::at_unix_secs(86_400 * 100 + 3600);
        let usage = Usage::new(SharedClock::from(clock.clone()));
        usage.entry("key_a").requests.fetch_add(3, Ordering::Relaxed);
        usage.entry("key_a").rate_limited.fetch_add(1, Ordering::Relaxed);
        assert_eq!(usage.today_for("key_a"), (3, 1));
        assert_eq!(usage.today_for("key_b"), (0, 0));
        clock.advance(Duration::from_secs(86_400));
        assert_eq!(usage.today_for("key_a"), (0, 0));
        usage.entry("key_a").requests.fetch_add(1, Ordering::Relaxed);
        assert_eq!(usage.today_for("key_a"), (1, 0), "a new day starts from zero");
    }
}
