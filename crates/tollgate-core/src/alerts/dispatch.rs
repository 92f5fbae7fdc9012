//! [`Alerts`]: the request path's side of alerting, and [`AlertWorker`],
//! which de-duplicates across the fleet and feeds the sink.

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, SystemTime};

use dashmap::DashMap;

use super::{network_of, Alert, AlertSink, AlertStore, MemoryAlertStore, NetworkUse};
use crate::clock::{unix_secs, SharedClock};
use crate::keys::KeyRecord;
use crate::metrics;
use crate::rate_limit::Usage;

/// How many alerts wait for the sink at most, by default.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// Keys older than this are due for rotation, by default: the seed's 90 days.
pub const DEFAULT_ROTATION_AGE: Duration = Duration::from_secs(90 * 86_400);
/// A network unused for this long is new again.
pub const DEFAULT_NETWORK_MEMORY: Duration = Duration::from_secs(30 * 86_400);
/// How many networks each key's history keeps, by default.
pub const DEFAULT_NETWORKS_PER_KEY: usize = 64;
/// 401s from one address within [`DEFAULT_AUTH_FAILURE_WINDOW`] that make a burst.
pub const DEFAULT_AUTH_FAILURE_BURST: u32 = 20;
/// The window of [`DEFAULT_AUTH_FAILURE_BURST`].
pub const DEFAULT_AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(60);

const DAY: Duration = Duration::from_secs(86_400);
// How often one instance re-reports a key's network to the shared history.
const NETWORK_REFRESH: Duration = Duration::from_secs(3_600);
// Bounds of the per-instance maps on the request path; past them they are
// cleared, which costs only extra store checks (or a burst counted anew).
const MAX_LOCAL_EVENTS: usize = 100_000;
const MAX_FAILURE_ADDRESSES: usize = 100_000;

/// Raises alerts from the layers (clones share one queue). Built with
/// [`Alerts::new`] (or [`Alerts::builder`]), which also returns the
/// [`AlertWorker`] to spawn; give
/// clones to `BearerAuthLayer::alerts` and `RateLimitLayer::alerts`.
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Inner>,
}

/// Delivers queued alerts: spawn [`run`](Self::run) once
/// (`tokio::spawn(worker.run())`). It ends when every [`Alerts`] clone is
/// dropped and the queue is empty.
pub struct AlertWorker {
    inner: Arc<Inner>,
    sink: Arc<dyn AlertSink>,
}

struct Inner {
    queue: Mutex<Queue>,
    config: Config,
    // Per instance, before the queue: what this instance already reported.
    local: MemoryAlertStore,
    // The same for conditions checked on every authenticated request, by a
    // hash of the condition, so checking formats and allocates nothing.
    recent: DashMap<u64, SystemTime>,
    failures: DashMap<IpAddr, (u64, u32)>,
}

struct Queue {
    pending: VecDeque<Pending>,
    waker: Option<Waker>,
}

#[derive(Clone)]
struct Config {
    store: Arc<dyn AlertStore>,
    clock: SharedClock,
    capacity: usize,
    rotation_age: Duration,
    network_memory: Duration,
    networks_per_key: usize,
    burst: u32,
    burst_window: Duration,
}

enum Pending {
    // Sent if the store says it is the fleet's first in its window.
    Once {
        event: String,
        window: Duration,
        alert: Alert,
    },
    // Sent if the store says the network is new to the key.
    Network {
        key_id: String,
        network: String,
        alert: Alert,
    },
}

impl Alerts {
    /// Alerts for `sink`, with the defaults: one instance's memory store,
    /// the system clock, a queue of 1024, rotation at 90 days, networks
    /// remembered 30 days and 64 per key, a burst of 20 401s in a minute.
    pub fn new(sink: impl AlertSink) -> (Alerts, AlertWorker) {
        Alerts::builder().build(sink)
    }

    /// Alerts with other settings than [`new`](Self::new)'s.
    pub fn builder() -> AlertsBuilder {
        AlertsBuilder {
            config: Config {
                store: Arc::new(MemoryAlertStore::new()),
                clock: SharedClock::default(),
                capacity: DEFAULT_QUEUE_CAPACITY,
                rotation_age: DEFAULT_ROTATION_AGE,
                network_memory: DEFAULT_NETWORK_MEMORY,
                networks_per_key: DEFAULT_NETWORKS_PER_KEY,
                burst: DEFAULT_AUTH_FAILURE_BURST,
                burst_window: DEFAULT_AUTH_FAILURE_WINDOW,
            },
        }
    }
}

/// The settings of [`Alerts`], from [`Alerts::builder`].
#[must_use]
pub struct AlertsBuilder {
    config: Config,
}

impl AlertsBuilder {
    /// The store that de-duplicates across the fleet (a Redis store shared
    /// by every instance); default: one instance's memory.
    pub fn store(mut self, store: Arc<dyn AlertStore>) -> Self {
        self.config.store = store;
        self
    }

    /// The clock of every window (the memory store's is its own): any
    /// [`Clock`](crate::Clock), or a [`SharedClock`] the application already holds.
    pub fn clock(mut self, clock: impl Into<SharedClock>) -> Self {
        self.config.clock = clock.into();
        self
    }

    /// How many alerts may wait for the sink; more are dropped and counted.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.config.capacity = capacity;
        self
    }

    /// The age past which a key in use is due for rotation.
    pub fn rotation_age(mut self, age: Duration) -> Self {
        self.config.rotation_age = age;
        self
    }

    /// How long a network is remembered, and how many per key.
    pub fn network_history(mut self, memory: Duration, per_key: usize) -> Self {
        self.config.network_memory = memory;
        self.config.networks_per_key = per_key.max(1);
        self
    }

    /// How many 401s from one address within `window` (whole seconds, at
    /// least one) make a burst.
    pub fn auth_failure_burst(mut self, failures: u32, window: Duration) -> Self {
        self.config.burst = failures.max(1);
        self.config.burst_window = window.max(Duration::from_secs(1));
        self
    }

    /// The alerts, and the worker that feeds `sink`.
    pub fn build(self, sink: impl AlertSink) -> (Alerts, AlertWorker) {
        let inner = Inner::new(self.config);
        (
            Alerts {
                inner: Arc::clone(&inner),
            },
            AlertWorker {
                inner,
                sink: Arc::new(sink),
            },
        )
    }
}

impl fmt::Debug for AlertsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertsBuilder").finish_non_exhaustive()
    }
}

impl Inner {
    fn new(config: Config) -> Arc<Inner> {
        Arc::new(Inner {
            queue: Mutex::new(Queue {
                pending: VecDeque::new(),
                waker: None,
            }),
            local: MemoryAlertStore::new()
                .with_clock(config.clock.clone())
                .max_events(MAX_LOCAL_EVENTS),
            config,
            recent: DashMap::new(),
            failures: DashMap::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn enqueue(&self, pending: Pending) {
        let mut queue = self.lock();
        if queue.pending.len() >= self.config.capacity {
            drop(queue);
            metrics::alert_dropped();
            return;
        }
        queue.pending.push_back(pending);
        if let Some(waker) = queue.waker.take() {
            waker.wake();
        }
    }

    // Whether this instance has not reported the condition hashed from
    // `parts` in `window` yet. A hash collision only delays an alert.
    fn recently_unseen(&self, parts: impl std::hash::Hash, window: Duration, now: SystemTime) -> bool {
        use std::hash::{BuildHasher, RandomState};
        static HASHER: std::sync::LazyLock<RandomState> = std::sync::LazyLock::new(RandomState::new);
        let hash = HASHER.hash_one(parts);
        if let Some(until) = self.recent.get(&hash) {
            if *until > now {
                return false;
            }
        }
        if self.recent.len() >= MAX_LOCAL_EVENTS {
            self.recent.retain(|_, until| *until > now);
            if self.recent.len() >= MAX_LOCAL_EVENTS {
                self.recent.clear();
            }
        }
        let mut first = false;
        self.recent
            .entry(hash)
            .and_modify(|until| {
                if *until <= now {
                    *until = now + window;
                    first = true;
                }
            })
            .or_insert_with(|| {
                first = true;
                now + window
            });
        first
    }

    // Whether this instance has not reported `event` in `window` yet.
    fn locally_first(&self, event: &str, window: Duration) -> bool {
        self.local.first_now(event, window)
    }
}

impl Alerts {
    /// After the rate-limit decision of a request by `key_id` of
    /// `account_id`: raises the 80% and 100% alerts of the daily quota
    /// once per key and quota day. Below 80% this is arithmetic only.
    pub fn daily_usage(&self, account_id: &str, key_id: &str, daily: &Usage) {
        let used = daily.limit.saturating_sub(daily.remaining);
        if daily.limit == 0 || used.saturating_mul(100) < daily.limit.saturating_mul(80) {
            return;
        }
        let now = self.inner.config.clock.now();
        // The quota day is named by its end, the same on every instance.
        let day_ends = unix_secs(now + daily.reset) / 86_400;
        let mut percents = vec![80];
        if daily.remaining == 0 {
            percents.push(100);
        }
        for percent in percents {
            let event = format!("quota_{percent}:{}:{key_id}:{day_ends}", key_id.len());
            // Until the quota day ends, and a little after for clock skew.
            let window = daily.reset + Duration::from_secs(60);
            if self.inner.locally_first(&event, window) {
                let alert = Alert::Quota {
                    account_id: account_id.to_owned(),
                    key_id: key_id.to_owned(),
                    percent,
                    limit: daily.limit,
                    used,
                    at: now,
                };
                self.inner.enqueue(Pending::Once { event, window, alert });
            }
        }
    }

    /// After a 401 to `client_ip`: counts it, and raises one alert when the
    /// address's count in the burst window reaches the burst.
    pub fn auth_failure(&self, client_ip: IpAddr) {
        let config = &self.inner.config;
        let now = config.clock.now();
        let window_secs = config.burst_window.as_secs();
        let window_index = unix_secs(now) / window_secs;
        let failures = &self.inner.failures;
        if failures.len() >= MAX_FAILURE_ADDRESSES && !failures.contains_key(&client_ip) {
            failures.retain(|_, (index, _)| *index == window_index);
            if failures.len() >= MAX_FAILURE_ADDRESSES {
                failures.clear();
            }
        }
        let count = {
            let mut entry = failures.entry(client_ip).or_insert((window_index, 0));
            if entry.0 != window_index {
                *entry = (window_index, 0);
            }
            entry.1 += 1;
            entry.1
        };
        if count == config.burst {
            let event = format!("auth_failures:{client_ip}:{window_index}");
            let alert = Alert::AuthFailures {
                client_ip,
                failures: count,
                window: config.burst_window,
                at: now,
            };
            self.inner.enqueue(Pending::Once {
                event,
                window: config.burst_window,
                alert,
            });
        }
    }

    /// After a key authenticated a request from `client_ip` (if known):
    /// raises the rotation alert (once per key and day) for a key past the
    /// rotation age, and reports the client's network to the key's
    /// history, which raises the new-network alert.
    pub fn key_used(&self, record: &KeyRecord, client_ip: Option<IpAddr>, now: SystemTime) {
        let config = &self.inner.config;
        let key_id = record.id();
        if now
            .duration_since(record.created_at)
            .is_ok_and(|age| age >= config.rotation_age)
        {
            let day = unix_secs(now) / 86_400;
            if self.inner.recently_unseen(("rotation_due", key_id, day), DAY, now) {
                let event = format!("rotation_due:{key_id}:{day}");
                let alert = Alert::RotationDue {
                    account_id: record.account_id().to_owned(),
                    key_id: key_id.to_owned(),
                    created_at: record.created_at,
                    at: now,
                };
                self.inner.enqueue(Pending::Once {
                    event,
                    window: DAY,
                    alert,
                });
            }
        }
        let Some(client_ip) = client_ip else { return };
        let network = network_of(client_ip);
        // Each instance reports a key's network at most once an hour, so
        // the shared history is touched rarely.
        if self
            .inner
            .recently_unseen(("network", key_id, network), NETWORK_REFRESH, now)
        {
            let alert = Alert::NewNetwork {
                account_id: record.account_id().to_owned(),
                key_id: key_id.to_owned(),
                client_ip,
                network,
                at: now,
            };
            self.inner.enqueue(Pending::Network {
                key_id: key_id.to_owned(),
                network: network.to_string(),
                alert,
            });
        }
    }
}

impl AlertWorker {
    /// Delivers alerts until every [`Alerts`] clone is dropped.
    pub async fn run(self) {
        while let Some(pending) = self.next().await {
            self.handle(pending).await;
        }
    }

    /// Delivers every alert queued now, then returns (for tests, and for
    /// a shutdown that wants the queue empty).
    pub async fn drain(&self) {
        loop {
            let next = self.inner.lock().pending.pop_front();
            match next {
                Some(pending) => self.handle(pending).await,
                None => return,
            }
        }
    }

    // The next queued alert; `None` once nobody can queue one any more.
    async fn next(&self) -> Option<Pending> {
        std::future::poll_fn(|cx| {
            let mut queue = self.inner.lock();
            if let Some(pending) = queue.pending.pop_front() {
                return Poll::Ready(Some(pending));
            }
            // Only this worker holds the state: no alert can come.
            if Arc::strong_count(&self.inner) == 1 {
                return Poll::Ready(None);
            }
            queue.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    async fn handle(&self, pending: Pending) {
        let config = &self.inner.config;
        let alert = match pending {
            Pending::Once { event, window, alert } => match config.store.first(&event, window).await {
                Ok(true) => alert,
                Ok(false) => return,
                Err(error) => {
                    tracing::warn!(%error, kind = alert.kind(), "alert store failed; the alert is not sent");
                    return;
                }
            },
            Pending::Network { key_id, network, alert } => {
                let at = match &alert {
                    Alert::NewNetwork { at, .. } => *at,
                    _ => config.clock.now(),
                };
                let recorded = config
                    .store
                    .record_network(&key_id, &network, at, config.network_memory, config.networks_per_key)
                    .await;
                match recorded {
                    Ok(NetworkUse::New) => alert,
                    Ok(NetworkUse::FirstUse | NetworkUse::Known) => return,
                    Err(error) => {
                        tracing::warn!(%error, "alert store failed; a key's network is not recorded");
                        return;
                    }
                }
            }
        };
        metrics::alert_sent(alert.kind());
        self.sink.deliver(alert).await;
    }
}

impl fmt::Debug for Alerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.inner.config;
        f.debug_struct("Alerts")
            .field("queue_capacity", &config.capacity)
            .field("rotation_age", &config.rotation_age)
            .field("network_memory", &config.network_memory)
            .field("networks_per_key", &config.networks_per_key)
            .field("auth_failure_burst", &(config.burst, config.burst_window))
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for AlertWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertWorker").finish_non_exhaustive()
    }
}
