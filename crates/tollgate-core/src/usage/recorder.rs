//! [`UsageRecorder`]: counts requests per key and UTC day in process
//! memory, on the request path, and adds them to a [`UsageStore`] in
//! batches.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

use super::{Day, UsageDelta, UsageStore};
use crate::clock::{unix_secs, SharedClock};
use crate::error::StoreError;

/// How often [`UsageRecorder::flush_every`] is meant to run: at most this
/// much counting is lost if the process dies.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Counts requests and rate-limited requests per key and UTC day in memory,
/// and adds them to a [`UsageStore`] when [flushed](UsageRecorder::flush).
/// Clones share the counts.
///
/// # Cost on the request path
///
/// [`record`](UsageRecorder::record) is a read of the clock, a lookup in a
/// sharded map under a shared (read) lock of one shard, and one or two
/// atomic additions: no allocation once a key has been counted today, no
/// exclusive lock, no await. Only a key's first request of a day takes its
/// shard's write lock (and allocates its id the first time it is seen).
///
/// # Flush policy
///
/// Run [`flush_every`](UsageRecorder::flush_every) on a task with
/// [`DEFAULT_FLUSH_INTERVAL`] (one second), and call
/// [`flush`](UsageRecorder::flush) once more on graceful shutdown (the loop
/// also flushes once all other handles are dropped). A flush takes every
/// count made so far and sends it as one batch, one [`UsageDelta`] per key
/// and day.
///
/// - **If the process dies**, what was counted since the last successful
///   flush is lost: about one interval's requests, more only while the store
///   was failing.
/// - **A failed flush loses nothing**: its counts are put back and go with
///   the next flush, also when the flush's future is dropped half-way. A
///   flush that failed after the store applied part of it may therefore
///   count that part twice (the store cannot say): usage is counted at
///   least once while the process lives.
/// - **Memory is bounded** by the keys counted: one small entry per key and
///   day, kept while its day is today or it still has counts to send. A
///   failing store makes counts wait, not grow in number.
///
/// ```
/// use std::sync::Arc;
/// use tollgate_core::usage::{Day, MemoryUsageStore, UsageRecorder, UsageStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MemoryUsageStore::new();
/// let recorder = UsageRecorder::new(Arc::new(store.clone()));
/// // In a service: tokio::spawn(recorder.clone().flush_every(DEFAULT_FLUSH_INTERVAL, tokio::time::sleep));
/// recorder.record("key_1", false);
/// recorder.record("key_1", true);
/// assert_eq!(recorder.flush().await.unwrap(), 1, "one key on one day");
/// let today = Day::from_unix_secs(tollgate_core::unix_secs(std::time::SystemTime::now()));
/// let usage = store.days("key_1", today, today).await.unwrap();
/// assert_eq!((usage[0].requests, usage[0].rate_limited), (2, 1));
/// # }
/// ```
#[derive(Clone)]
pub struct UsageRecorder {
    inner: Arc<Recorder>,
}

struct Recorder {
    store: Arc<dyn UsageStore>,
    clock: SharedClock,
    // foldhash rather than SipHash: key ids are the server's own, not an
    // attacker's choice, and SipHash was a third of a count's cost.
    counts: DashMap<String, KeyCounts, foldhash::fast::RandomState>,
    flush_failures: AtomicU64,
}

// One key's counts by day: today's, and earlier days' until sent.
#[derive(Default)]
struct KeyCounts {
    days: Vec<DayCounts>,
}

struct DayCounts {
    day: Day,
    requests: AtomicU64,
    rate_limited: AtomicU64,
}

impl DayCounts {
    fn new(day: Day) -> DayCounts {
        DayCounts {
            day,
            requests: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
        }
    }

    fn add(&self, requests: u64, rate_limited: u64) {
        self.requests.fetch_add(requests, Ordering::Relaxed);
        if rate_limited > 0 {
            self.rate_limited.fetch_add(rate_limited, Ordering::Relaxed);
        }
    }

    fn take(&self) -> (u64, u64) {
        (
            self.requests.swap(0, Ordering::Relaxed),
            self.rate_limited.swap(0, Ordering::Relaxed),
        )
    }

    fn is_empty(&self) -> bool {
        self.requests.load(Ordering::Relaxed) == 0 && self.rate_limited.load(Ordering::Relaxed) == 0
    }
}

impl UsageRecorder {
    /// Counts for `store`, on the system clock.
    pub fn new(store: Arc<dyn UsageStore>) -> UsageRecorder {
        UsageRecorder {
            inner: Arc::new(Recorder {
                store,
                clock: SharedClock::default(),
                counts: DashMap::default(),
                flush_failures: AtomicU64::new(0),
            }),
        }
    }

    /// The clock that says which UTC day a request is counted on. Call
    /// before cloning: the recorder starts with no counts.
    pub fn clock(self, clock: impl Into<SharedClock>) -> Self {
        UsageRecorder {
            inner: Arc::new(Recorder {
                store: self.inner.store.clone(),
                clock: clock.into(),
                counts: DashMap::default(),
                flush_failures: AtomicU64::new(0),
            }),
        }
    }

    /// Counts one request by `key_id`, and whether a rate limit or quota
    /// refused it.
    pub fn record(&self, key_id: &str, rate_limited: bool) {
        let day = Day::from_unix_secs(unix_secs(self.inner.clock.approximate_now()));
        self.inner.add(key_id, day, 1, u64::from(rate_limited));
    }

    /// Sends every count made so far to the store as one batch; answers
    /// how many deltas (keys and days) it sent. On failure the counts are
    /// kept for the next flush.
    pub fn flush(&self) -> impl Future<Output = Result<usize, StoreError>> + Send + 'static {
        let today = Day::from_unix_secs(unix_secs(self.inner.clock.now()));
        let deltas = self.inner.take(today);
        let sent = deltas.len();
        let inner = self.inner.clone();
        async move {
            if deltas.is_empty() {
                return Ok(0);
            }
            let answer = inner.store.add(deltas.clone());
            // Puts the counts back unless the store took them, also when
            // this future is dropped while waiting.
            let mut unsent = Unsent {
                recorder: inner.clone(),
                deltas: Some(deltas),
            };
            match answer.await {
                Ok(()) => {
                    unsent.deltas = None;
                    Ok(sent)
                }
                Err(error) => {
                    inner.flush_failures.fetch_add(1, Ordering::Relaxed);
                    Err(error)
                }
            }
        }
    }

    /// Flushes every `interval` (see the flush policy above), sleeping with
    /// `sleep` (`tokio::time::sleep` on tokio), until every other handle to
    /// this recorder is dropped; then flushes once more and ends. A failed
    /// flush is retried with the next one.
    pub async fn flush_every<S, F>(self, interval: Duration, mut sleep: S)
    where
        S: FnMut(Duration) -> F,
        F: Future<Output = ()>,
    {
        loop {
            sleep(interval).await;
            let last = Arc::strong_count(&self.inner) == 1;
            let _ = self.flush().await;
            if last {
                return;
            }
        }
    }

    /// Requests counted and not yet sent.
    pub fn unsent_requests(&self) -> u64 {
        let mut requests = 0;
        for counts in self.inner.counts.iter() {
            requests += counts
                .days
                .iter()
                .map(|slot| slot.requests.load(Ordering::Relaxed))
                .sum::<u64>();
        }
        requests
    }

    /// How many flushes have failed so far (their counts were kept).
    pub fn flush_failures(&self) -> u64 {
        self.inner.flush_failures.load(Ordering::Relaxed)
    }
}

impl Recorder {
    fn add(&self, key_id: &str, day: Day, requests: u64, rate_limited: u64) {
        // The common case: the key was counted today already.
        if let Some(counts) = self.counts.get(key_id) {
            if let Some(slot) = counts.days.iter().find(|slot| slot.day == day) {
                slot.add(requests, rate_limited);
                return;
            }
        }
        self.add_slow(key_id, day, requests, rate_limited);
    }

    #[cold]
    fn add_slow(&self, key_id: &str, day: Day, requests: u64, rate_limited: u64) {
        let mut counts = match self.counts.get_mut(key_id) {
            Some(counts) => counts,
            None => self.counts.entry(key_id.to_owned()).or_default(),
        };
        match counts.days.iter().find(|slot| slot.day == day) {
            Some(slot) => slot.add(requests, rate_limited),
            None => {
                let slot = DayCounts::new(day);
                slot.add(requests, rate_limited);
                counts.days.push(slot);
            }
        }
    }

    // Every count so far, as deltas; then forgets the days before `today`
    // left with nothing to send (a request counted meanwhile keeps its day).
    fn take(&self, today: Day) -> Vec<UsageDelta> {
        let mut deltas = Vec::new();
        for counts in self.counts.iter() {
            for slot in &counts.days {
                let (requests, rate_limited) = slot.take();
                if requests > 0 || rate_limited > 0 {
                    deltas.push(UsageDelta {
                        key_id: counts.key().clone(),
                        day: slot.day,
                        requests,
                        rate_limited,
                    });
                }
            }
        }
        let stale = |counts: &KeyCounts| counts.days.iter().any(|slot| slot.day < today);
        if self.counts.iter().any(|counts| stale(&counts)) {
            self.counts.retain(|_, counts| {
                counts.days.retain(|slot| slot.day >= today || !slot.is_empty());
                !counts.days.is_empty()
            });
        }
        deltas
    }
}

// The counts of a flush the store has not taken (yet): put back when dropped.
struct Unsent {
    recorder: Arc<Recorder>,
    deltas: Option<Vec<UsageDelta>>,
}

impl Drop for Unsent {
    fn drop(&mut self) {
        for delta in self.deltas.take().into_iter().flatten() {
            self.recorder
                .add(&delta.key_id, delta.day, delta.requests, delta.rate_limited);
        }
    }
}

impl fmt::Debug for UsageRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsageRecorder")
            .field("keys", &self.inner.counts.len())
            .field("unsent_requests", &self.unsent_requests())
            .field("flush_failures", &self.flush_failures())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::*;
    use crate::clock::ManualClock;
    use crate::conformance::{FakeStore, Gate};
    use crate::usage::{DayUsage, MemoryUsageStore};

    const DAY: u64 = 86_400;

    fn t0() -> SystemTime {
        // Noon on a day, on the system clock's side of the retention.
        let today = unix_secs(SystemTime::now()) / DAY;
        UNIX_EPOCH + Duration::from_secs(today * DAY + DAY / 2)
    }

    fn today() -> Day {
        Day::from_unix_secs(unix_secs(t0()))
    }

    type Probe = FakeStore<MemoryUsageStore>;

    fn recorder() -> (ManualClock, Probe, UsageRecorder) {
        let clock = ManualClock::new(t0());
        let probe = FakeStore::new(MemoryUsageStore::new());
        let recorder = UsageRecorder::new(Arc::new(probe.clone())).clock(clock.clone());
        (clock, probe, recorder)
    }

    async fn usage(probe: &Probe, key_id: &str) -> Vec<DayUsage> {
        probe
            .inner()
            .days(key_id, Day(today().0 - 5), Day(today().0 + 5))
            .await
            .unwrap()
    }

    fn day_usage(day: Day, requests: u64, rate_limited: u64) -> DayUsage {
        DayUsage {
            day,
            requests,
            rate_limited,
        }
    }

    #[tokio::test]
    async fn counts_per_key_are_sent_in_one_batch_and_only_once() {
        let (_, probe, recorder) = recorder();
        for _ in 0..5 {
            recorder.record("key_1", false);
        }
        recorder.record("key_1", true);
        recorder.record("key_2", true);
        assert_eq!(recorder.unsent_requests(), 7);
        assert_eq!(probe.calls("add"), 0, "nothing is sent per request");
        assert_eq!(recorder.flush().await.unwrap(), 2);
        assert_eq!(probe.calls("add"), 1, "one batch");
        assert_eq!(usage(&probe, "key_1").await, vec![day_usage(today(), 6, 1)]);
        assert_eq!(usage(&probe, "key_2").await, vec![day_usage(today(), 1, 1)]);
        assert_eq!(recorder.unsent_requests(), 0);

        assert_eq!(recorder.flush().await.unwrap(), 0, "nothing new");
        assert_eq!(probe.calls("add"), 1, "an empty flush asks nothing");
        recorder.record("key_1", false);
        assert_eq!(recorder.flush().await.unwrap(), 1);
        assert_eq!(usage(&probe, "key_1").await, vec![day_usage(today(), 7, 1)]);
    }

    #[tokio::test]
    async fn requests_are_counted_on_their_utc_day_and_past_days_are_forgotten_once_sent() {
        let (clock, probe, recorder) = recorder();
        recorder.record("key_1", false);
        clock.advance(Duration::from_secs(DAY / 2 - 1));
        recorder.record("key_1", true); // 23:59:59
        clock.advance(Duration::from_secs(1));
        recorder.record("key_1", false); // midnight: the next day
        recorder.record("key_1", false);
        let tomorrow = Day(today().0 + 1);
        assert_eq!(recorder.flush().await.unwrap(), 2);
        assert_eq!(
            usage(&probe, "key_1").await,
            vec![day_usage(today(), 2, 1), day_usage(tomorrow, 2, 0)]
        );
        let slots: usize = recorder.inner.counts.iter().map(|counts| counts.days.len()).sum();
        assert_eq!(slots, 1, "yesterday's entry is gone, today's kept for the next request");
    }

    #[tokio::test]
    async fn a_failed_flush_keeps_its_counts_for_the_next() {
        let (_, probe, recorder) = recorder();
        recorder.record("key_1", false);
        recorder.record("key_1", true);
        probe.fail("add");
        assert!(recorder.flush().await.unwrap_err().is_unavailable());
        assert_eq!(recorder.flush_failures(), 1);
        recorder.record("key_1", false);
        assert_eq!(recorder.unsent_requests(), 3, "kept, with what came since");
        probe.heal();
        assert_eq!(recorder.flush().await.unwrap(), 1);
        assert_eq!(usage(&probe, "key_1").await, vec![day_usage(today(), 3, 1)]);
    }

    #[tokio::test]
    async fn a_flush_dropped_while_waiting_keeps_its_counts() {
        let (_, probe, recorder) = recorder();
        recorder.record("key_1", true);
        let gate = Gate::closed();
        probe.gate(Some(gate.clone()));
        let mut flush = Box::pin(recorder.flush());
        assert!(futures_poll_once(&mut flush).is_pending());
        assert_eq!(recorder.unsent_requests(), 0, "taken by the flush");
        drop(flush);
        assert_eq!(recorder.unsent_requests(), 1, "put back");
        probe.gate(None);
        assert_eq!(recorder.flush().await.unwrap(), 1);
        // The dropped flush did reach the memory store: at least once.
        assert_eq!(usage(&probe, "key_1").await, vec![day_usage(today(), 2, 2)]);
    }

    fn futures_poll_once<F: Future + Unpin>(future: &mut F) -> std::task::Poll<F::Output> {
        let waker = std::task::Waker::noop();
        std::pin::Pin::new(future).poll(&mut std::task::Context::from_waker(waker))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn counts_from_many_threads_flushed_meanwhile_sum_exactly() {
        const THREADS: u64 = 4;
        const REQUESTS: u64 = 20_000;
        let (_, probe, _) = recorder();
        let probe = probe.asynchronous();
        let recorder = UsageRecorder::new(Arc::new(probe.clone())).clock(ManualClock::new(t0()));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flusher = {
            let (recorder, done) = (recorder.clone(), done.clone());
            tokio::spawn(async move {
                let mut flushes = 0;
                while !done.load(Ordering::SeqCst) {
                    recorder.flush().await.expect("flush");
                    flushes += 1;
                    tokio::task::yield_now().await;
                }
                flushes
            })
        };
        let counters: Vec<_> = (0..THREADS)
            .map(|thread| {
                let recorder = recorder.clone();
                tokio::task::spawn_blocking(move || {
                    for n in 0..REQUESTS {
                        recorder.record(&format!("key_{}", n % 3), (n + thread) % 4 == 0);
                    }
                })
            })
            .collect();
        for counter in counters {
            counter.await.unwrap();
        }
        done.store(true, Ordering::SeqCst);
        let flushes = flusher.await.unwrap();
        recorder.flush().await.expect("the last flush");
        assert!(flushes > 1, "flushed while counting ({flushes})");
        let mut requests = 0;
        let mut rate_limited = 0;
        for key in 0..3 {
            for day in usage(&probe, &format!("key_{key}")).await {
                requests += day.requests;
                rate_limited += day.rate_limited;
            }
        }
        assert_eq!(requests, THREADS * REQUESTS);
        assert_eq!(rate_limited, THREADS * REQUESTS / 4);
    }

    #[tokio::test(start_paused = true)]
    async fn flush_every_flushes_on_its_interval_and_once_more_when_the_recorder_is_dropped() {
        let (_, probe, recorder) = recorder();
        let flusher = tokio::spawn(recorder.clone().flush_every(DEFAULT_FLUSH_INTERVAL, tokio::time::sleep));
        recorder.record("key_1", false);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(probe.calls("add"), 1);
        assert_eq!(usage(&probe, "key_1").await, vec![day_usage(today(), 1, 0)]);
        recorder.record("key_1", false);
        drop(recorder);
        flusher.await.unwrap();
        assert_eq!(usage(&probe, "key_1").await, vec![day_usage(today(), 2, 0)]);
    }
}
