//! [`MemoryUsageStore`]: usage counts in process memory, for one instance
//! and for tests, kept for a bounded number of days.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{Day, DayUsage, UsageDelta, UsageStore};
use crate::clock::{unix_secs, SharedClock};
use crate::maybe_ready::{MaybeReady, StoreFuture};

/// How many days of usage a store keeps by default (today included): the
/// "last 30 days" a dashboard shows, with room to spare.
pub const DEFAULT_USAGE_RETENTION_DAYS: u32 = 90;

/// Usage counts in process memory. Clones share the counts.
///
/// Bounded by time: a day's counts are kept for
/// [`retention_days`](Self::retention_days) days (today included, default
/// [`DEFAULT_USAGE_RETENTION_DAYS`]) on the store's clock, then dropped;
/// older days are never answered and deltas for them are ignored. Memory is
/// therefore at most one small record per key that made requests and
/// retained day. Days past their retention are swept on the first
/// [`add`](UsageStore::add) of each new day, so no background task is needed.
#[derive(Debug, Clone)]
pub struct MemoryUsageStore {
    clock: SharedClock,
    retention_days: u32,
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    by_key: HashMap<String, BTreeMap<Day, Counts>>,
    // The day of the last sweep: older days are gone.
    swept_on: Option<Day>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    requests: u64,
    rate_limited: u64,
}

impl MemoryUsageStore {
    /// An empty store on the system clock, keeping
    /// [`DEFAULT_USAGE_RETENTION_DAYS`] days.
    pub fn new() -> MemoryUsageStore {
        MemoryUsageStore {
            clock: SharedClock::default(),
            retention_days: DEFAULT_USAGE_RETENTION_DAYS,
            state: Arc::default(),
        }
    }

    /// How many days are kept, today included (at least one).
    pub fn retention_days(mut self, days: u32) -> Self {
        self.retention_days = days.max(1);
        self
    }

    /// The clock that says which day is today, for retention.
    pub fn clock(mut self, clock: impl Into<SharedClock>) -> Self {
        self.clock = clock.into();
        self
    }

    /// How many (key, day) records are held now.
    pub fn records(&self) -> usize {
        self.lock().by_key.values().map(BTreeMap::len).sum()
    }

    // The oldest day still kept.
    fn first_kept(&self) -> Day {
        let today = Day::from_unix_secs(unix_secs(self.clock.now()));
        Day(today.0.saturating_sub(self.retention_days - 1))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Each operation leaves the maps consistent before it can panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MemoryUsageStore {
    fn default() -> Self {
        MemoryUsageStore::new()
    }
}

impl UsageStore for MemoryUsageStore {
    fn add(&self, deltas: Vec<UsageDelta>) -> StoreFuture<()> {
        let first_kept = self.first_kept();
        let mut state = self.lock();
        if state.swept_on != Some(first_kept) {
            state.by_key.retain(|_, days| {
                days.retain(|day, _| *day >= first_kept);
                !days.is_empty()
            });
            state.swept_on = Some(first_kept);
        }
        for delta in deltas {
            if delta.day < first_kept || (delta.requests == 0 && delta.rate_limited == 0) {
                continue;
            }
            let counts = state
                .by_key
                .entry(delta.key_id)
                .or_default()
                .entry(delta.day)
                .or_default();
            counts.requests = counts.requests.saturating_add(delta.requests);
            counts.rate_limited = counts.rate_limited.saturating_add(delta.rate_limited);
        }
        MaybeReady::ready(Ok(()))
    }

    fn days(&self, key_id: &str, from: Day, to: Day) -> StoreFuture<Vec<DayUsage>> {
        let from = from.max(self.first_kept());
        let state = self.lock();
        let days = match state.by_key.get(key_id) {
            Some(days) if from <= to => days
                .range(from..=to)
                .map(|(day, counts)| DayUsage {
                    day: *day,
                    requests: counts.requests,
                    rate_limited: counts.rate_limited,
                })
                .collect(),
            _ => Vec::new(),
        };
        MaybeReady::ready(Ok(days))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;
    use crate::conformance::FakeStore;

    #[tokio::test]
    async fn conforms() {
        crate::conformance::usage_store(&MemoryUsageStore::new()).await;
    }

    #[tokio::test]
    async fn conforms_asynchronously() {
        crate::conformance::usage_store(&FakeStore::new(MemoryUsageStore::new()).asynchronous()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn adds_from_many_threads_sum_exactly() {
        let store = FakeStore::new(MemoryUsageStore::new()).asynchronous();
        crate::conformance::usage_in_parallel(&store, |task| {
            let handle = tokio::spawn(task);
            Box::pin(async move { handle.await.expect("the task finished") })
        })
        .await;
    }

    fn delta(key_id: &str, day: u32, requests: u64) -> UsageDelta {
        UsageDelta {
            key_id: key_id.into(),
            day: Day(day),
            requests,
            rate_limited: 0,
        }
    }

    fn days(store: &MemoryUsageStore, key_id: &str, from: u32, to: u32) -> Vec<u32> {
        let days = store
            .days(key_id, Day(from), Day(to))
            .into_ready()
            .ok()
            .unwrap()
            .unwrap();
        days.iter().map(|usage| usage.day.0).collect()
    }

    #[test]
    fn days_past_retention_are_neither_answered_nor_kept() {
        let clock = ManualClock::at_unix_secs(20_000 * 86_400 + 3600);
        let store = MemoryUsageStore::new().retention_days(3).clock(clock.clone());
        let add = |deltas| store.add(deltas).into_ready().ok().unwrap().unwrap();
        add(vec![
            delta("a", 19_997, 1),
            delta("a", 19_998, 1),
            delta("b", 20_000, 1),
        ]);
        assert_eq!(days(&store, "a", 0, 30_000), vec![19_998], "19 997 is four days old");
        assert_eq!(store.records(), 2);

        clock.advance(Duration::from_secs(86_400));
        assert_eq!(days(&store, "a", 0, 30_000), Vec::<u32>::new(), "19 998 aged out");
        assert_eq!(store.records(), 2, "swept on the next add, not on a read");
        add(vec![]);
        assert_eq!(store.records(), 1, "only b's day is left");
        assert_eq!(days(&store, "b", 20_000, 20_000), vec![20_000]);
    }
}
