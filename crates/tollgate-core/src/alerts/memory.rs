//! [`MemoryAlertStore`]: alert de-duplication for one instance.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dashmap::DashMap;

use super::{AlertStore, NetworkUse};
use crate::clock::SharedClock;
use crate::maybe_ready::{MaybeReady, StoreFuture};

/// How many alert events a memory store remembers at most, by default.
pub const DEFAULT_MAX_EVENTS: usize = 100_000;

/// [`AlertStore`] in memory: right for one instance, and the default of
/// [`Alerts`](super::Alerts). Events expire with their window on its clock;
/// past [`max_events`](Self::max_events) live events, new ones are not
/// recorded and report `false` (an alert lost rather than memory without bound).
#[derive(Clone)]
pub struct MemoryAlertStore {
    inner: Arc<Inner>,
}

struct Inner {
    events: DashMap<String, SystemTime>,
    networks: DashMap<String, Vec<(String, SystemTime)>>,
    clock: SharedClock,
    max_events: usize,
}

impl MemoryAlertStore {
    /// An empty store on the system clock.
    pub fn new() -> MemoryAlertStore {
        MemoryAlertStore::build(SharedClock::default(), DEFAULT_MAX_EVENTS)
    }

    /// The same store on `clock`, which decides when events expire.
    pub fn with_clock(self, clock: impl Into<SharedClock>) -> MemoryAlertStore {
        MemoryAlertStore::build(clock.into(), self.inner.max_events)
    }

    /// At most `max` live events.
    pub fn max_events(self, max: usize) -> MemoryAlertStore {
        MemoryAlertStore::build(self.inner.clock.clone(), max)
    }

    fn build(clock: SharedClock, max_events: usize) -> MemoryAlertStore {
        MemoryAlertStore {
            inner: Arc::new(Inner {
                events: DashMap::new(),
                networks: DashMap::new(),
                clock,
                max_events,
            }),
        }
    }

    /// Whether `event` was seen in its window, without recording it.
    pub(super) fn first_now(&self, event: &str, window: Duration) -> bool {
        let now = self.inner.clock.now();
        let events = &self.inner.events;
        if let Some(mut expires) = events.get_mut(event) {
            if *expires > now {
                return false;
            }
            *expires = now + window;
            return true;
        }
        if events.len() >= self.inner.max_events {
            events.retain(|_, expires| *expires > now);
            if events.len() >= self.inner.max_events {
                tracing::warn!(max = self.inner.max_events, "alert store full; an alert is not sent");
                return false;
            }
        }
        // Two racing first sightings: the entry API lets one insert.
        match events.entry(event.to_owned()) {
            dashmap::Entry::Vacant(vacant) => {
                vacant.insert(now + window);
                true
            }
            dashmap::Entry::Occupied(mut occupied) if *occupied.get() <= now => {
                occupied.insert(now + window);
                true
            }
            dashmap::Entry::Occupied(_) => false,
        }
    }

    fn record_now(&self, key_id: &str, network: &str, at: SystemTime, recent: Duration, capacity: usize) -> NetworkUse {
        let mut history = self.inner.networks.entry(key_id.to_owned()).or_default();
        let first_use = history.is_empty();
        let previous = history.iter().position(|(seen, _)| seen == network);
        let known = previous.is_some_and(|index| {
            at.duration_since(history[index].1)
                .map_or(true, |elapsed| elapsed <= recent)
        });
        match previous {
            Some(index) => history[index].1 = history[index].1.max(at),
            None => history.push((network.to_owned(), at)),
        }
        if history.len() > capacity {
            // Forgets the least recently used.
            history.sort_by_key(|entry| std::cmp::Reverse(entry.1));
            history.truncate(capacity);
        }
        if first_use {
            NetworkUse::FirstUse
        } else if known {
            NetworkUse::Known
        } else {
            NetworkUse::New
        }
    }
}

impl Default for MemoryAlertStore {
    fn default() -> MemoryAlertStore {
        MemoryAlertStore::new()
    }
}

impl std::fmt::Debug for MemoryAlertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryAlertStore")
            .field("events", &self.inner.events.len())
            .field("max_events", &self.inner.max_events)
            .finish_non_exhaustive()
    }
}

impl AlertStore for MemoryAlertStore {
    fn first(&self, event: &str, window: Duration) -> StoreFuture<bool> {
        MaybeReady::ready(Ok(self.first_now(event, window)))
    }

    fn record_network(
        &self,
        key_id: &str,
        network: &str,
        at: SystemTime,
        recent: Duration,
        capacity: usize,
    ) -> StoreFuture<NetworkUse> {
        MaybeReady::ready(Ok(self.record_now(key_id, network, at, recent, capacity)))
    }
}
