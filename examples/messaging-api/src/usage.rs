//! Per-key request counts for today (`GET /v1/usage`), counted by a
//! middleware between authentication and rate limiting so refused requests
//! are counted too.
//!
//! In process memory by default; with a shared [`UsageStore`]
//! ([`Usage::with_store`]: the service's database) counts are kept in
//! process and added to the store in batches once a second and at
//! shutdown, so counting costs no round trip and every instance reads the
//! same totals. A crash forgets at most the last second's counts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use dashmap::DashMap;
use http::StatusCode;
use tollgate_core::usage::{Day, UsageDelta, UsageStore};
use tollgate_core::{unix_secs, Principal, SharedClock, StoreError};

// Counts not yet in the store, by key and day.
type Pending = HashMap<(String, Day), (u64, u64)>;

// The shared store and this instance's counts not yet added to it.
type Shared = (Arc<dyn UsageStore>, Arc<Mutex<Pending>>);

/// Today's counts for one key.
#[derive(Debug, Default)]
pub struct KeyUsage {
    /// Requests that reached the rate limiter.
    pub requests: AtomicU64,
    /// Of those, refused with 429.
    pub rate_limited: AtomicU64,
}

/// Counts per key for the current UTC day. Clones share the counts.
#[derive(Clone)]
pub struct Usage {
    // Key id → (the day the counts belong to, the counts).
    counts: Arc<DashMap<String, (u64, Arc<KeyUsage>)>>,
    clock: SharedClock,
    shared: Option<Shared>,
}

impl std::fmt::Debug for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Usage")
            .field("keys", &self.counts.len())
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

impl Usage {
    /// Empty counts on this clock.
    pub fn new(clock: SharedClock) -> Usage {
        Usage {
            counts: Arc::default(),
            clock,
            shared: None,
        }
    }

    /// Counts kept in `store`, shared by every instance using it.
    pub fn with_store(mut self, store: Arc<dyn UsageStore>) -> Usage {
        self.shared = Some((store, Arc::default()));
        self
    }

    fn note(&self, key_id: &str, rate_limited: bool) {
        if let Some((_, pending)) = &self.shared {
            let day = Day::from_unix_secs(unix_secs(self.clock.now()));
            let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
            let counts = pending.entry((key_id.to_owned(), day)).or_default();
            counts.0 += 1;
            counts.1 += u64::from(rate_limited);
        }
    }

    /// Adds the counts not yet in the store to it (a no-op in memory).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let Some((store, pending)) = &self.shared else {
            return Ok(());
        };
        let taken = std::mem::take(&mut *pending.lock().unwrap_or_else(PoisonError::into_inner));
        if taken.is_empty() {
            return Ok(());
        }
        let deltas = taken
            .iter()
            .map(|((key_id, day), (requests, rate_limited))| UsageDelta {
                key_id: key_id.clone(),
                day: *day,
                requests: *requests,
                rate_limited: *rate_limited,
            })
            .collect();
        if let Err(error) = store.add(deltas).await {
            // Kept for the next flush.
            let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
            for (key, (requests, rate_limited)) in taken {
                let counts = pending.entry(key).or_default();
                counts.0 += requests;
                counts.1 += rate_limited;
            }
            return Err(error);
        }
        Ok(())
    }

    /// Flushes once a second until the process ends.
    pub fn spawn_flusher(&self) {
        if self.shared.is_none() {
            return;
        }
        let usage = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Err(error) = usage.flush().await {
                    tracing::warn!(%error, "usage counts not written; retrying");
                }
            }
        });
    }

    /// Today's (requests, rate_limited) for a key: from the store (and this
    /// instance's counts not yet in it) when shared, else from memory.
    pub async fn requests_today(&self, key_id: &str) -> Result<(u64, u64), StoreError> {
        let Some((store, pending)) = &self.shared else {
            return Ok(self.today_for(key_id));
        };
        let day = Day::from_unix_secs(unix_secs(self.clock.now()));
        let stored = store.days(key_id, day, day).await?;
        let (mut requests, mut rate_limited) = stored
            .iter()
            .fold((0, 0), |(r, l), usage| (r + usage.requests, l + usage.rate_limited));
        if let Some((r, l)) = pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(key_id.to_owned(), day))
        {
            requests += r;
            rate_limited += l;
        }
        Ok((requests, rate_limited))
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
    let limited = response.status() == StatusCode::TOO_MANY_REQUESTS;
    if limited {
        counts.rate_limited.fetch_add(1, Ordering::Relaxed);
    }
    usage.note(principal.key_id(), limited);
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
