//! Per-key usage per UTC day (`GET /v1/usage`): every request of a key
//! that reaches the rate limiter, and its 429s, counted in process by the
//! rate-limit layer's [`UsageRecorder`] and added to a [`UsageStore`] in
//! batches once a second and at shutdown, so counting costs no round trip.
//! The store is the process's memory on its own, the database on a single
//! node, Redis in a fleet (every instance reads the same totals). A crash
//! forgets at most the last second's counts; the store keeps 90 days.

use std::sync::Arc;
use std::time::Duration;

use tollgate_core::usage::{Day, DayUsage, UsageRecorder, UsageStore};
use tollgate_core::{unix_secs, SharedClock, StoreError};

/// How often counts are added to the store.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// The counts of this instance and the store they go to. Clones share both.
#[derive(Clone)]
pub struct Usage {
    recorder: UsageRecorder,
    store: Arc<dyn UsageStore>,
    clock: SharedClock,
}

impl std::fmt::Debug for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Usage")
            .field("unsent_requests", &self.recorder.unsent_requests())
            .finish_non_exhaustive()
    }
}

impl Usage {
    /// Counts kept in `store`, on `clock`.
    pub fn new(store: Arc<dyn UsageStore>, clock: SharedClock) -> Usage {
        Usage {
            recorder: UsageRecorder::new(store.clone()).clock(clock.clone()),
            store,
            clock,
        }
    }

    /// What the rate-limit layer counts with.
    pub fn recorder(&self) -> &UsageRecorder {
        &self.recorder
    }

    /// Adds this instance's counts to the store.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.recorder.flush().await.map(drop)
    }

    /// Flushes every [`FLUSH_INTERVAL`] while the process lives.
    pub fn spawn_flusher(&self) {
        tokio::spawn(self.recorder.clone().flush_every(FLUSH_INTERVAL, tokio::time::sleep));
    }

    /// A key's usage on each of the last `days` UTC days that has any,
    /// today included, oldest first, as the store has it: [`flush`](Usage::flush)
    /// first (once for all the keys read) to include this instance's counts.
    pub async fn last_days(&self, key_id: &str, days: u32) -> Result<Vec<DayUsage>, StoreError> {
        let today = Day::from_unix_secs(unix_secs(self.clock.now()));
        let from = Day(today.0.saturating_sub(days.saturating_sub(1)));
        self.store.days(key_id, from, today).await
    }

    /// Today's (requests, rate_limited) for a key, as the store has it (see
    /// [`last_days`](Usage::last_days)).
    pub async fn requests_today(&self, key_id: &str) -> Result<(u64, u64), StoreError> {
        let today = self.last_days(key_id, 1).await?;
        Ok(today.iter().fold((0, 0), |(requests, limited), day| {
            (requests + day.requests, limited + day.rate_limited)
        }))
    }
}
