//! [`RefusalCache`]: a local, bounded memory of keys over their limit, in
//! front of any [`RateLimitStore`], so a caller hammering past its limit is
//! refused without a round trip to a shared store.
//!
//! # Why it is exact
//!
//! A refused request consumes nothing, and nothing but admissions changes a
//! key's state ([`KeyState::check`]). So once the store refuses, the key's
//! state is known from the refusal itself: its theoretical arrival time is
//! `now + per_second.reset` and today's count is `daily.limit -
//! daily.remaining` (when the quota is spent, any count at or over the quota
//! decides the same way for a cost of 1 or more). Until this process sends
//! the key to the store again, the cache runs the reference
//! [`KeyState::check`] on that state, at the current time and with the
//! request's own cost: while it refuses, its answer is the store's answer,
//! verdict, `retry_after`, remaining and reset alike, for any cost. The
//! first time it would admit, the request goes to the store (and the entry
//! is dropped). Weighted costs are exact too: a cheaper request that the
//! remembered state admits is never refused locally.
//!
//! Answered locally: only requests of cost 1 or more, under the very limits
//! the refusal was made with, at a time no earlier than that refusal and on
//! the same UTC day (a clock that steps back, or a new day, goes to the
//! store).
//!
//! # With a shared store
//!
//! Other instances can only add to a key's state (their admissions move the
//! TAT and the count forward), so a local refusal is one the shared store
//! would also make; its `retry_after` and `remaining` may then be an
//! underestimate of the store's by what the others consumed. Time is read
//! from this cache's clock, the store (e.g. Redis `TIME`) may differ from it
//! by the instances' clock skew.
//!
//! ```
//! use tollgate_core::rate_limit::{Limits, MemoryRateLimitStore, RateLimitStore, RefusalCache};
//!
//! # tokio_test::block_on(async {
//! let limits = Limits::per_second(1);
//! let store = RefusalCache::new(MemoryRateLimitStore::new());
//! assert!(store.check("key_1", &limits, 1).await.unwrap().is_allowed());
//! let refused = store.check("key_1", &limits, 1).await.unwrap();
//! assert!(!refused.is_allowed());
//! // The next refusal is answered from the cache, the same as the store's.
//! assert!(!store.check("key_1", &limits, 1).await.unwrap().is_allowed());
//! assert_eq!(store.len(), 1);
//! # });
//! ```

use std::fmt;
use std::sync::Arc;

use quick_cache::sync::Cache;

use super::{Decision, KeyState, Limits, RateLimitStore, NANOS_PER_DAY};
use crate::clock::{unix_nanos, SharedClock};
use crate::maybe_ready::{MaybeReady, StoreFuture};
use crate::StoreError;

/// How many refused keys a [`RefusalCache`] remembers by default.
pub const DEFAULT_REFUSED_KEYS: usize = 100_000;

/// A refusal, as the state it proves.
#[derive(Debug, Clone, Copy)]
struct Refused {
    limits: Limits,
    state: KeyState,
    /// When the store refused, nanoseconds since the epoch.
    at: u64,
}

impl Refused {
    /// The state behind `decision`, a refusal made at `now` under `limits`.
    fn of(decision: &Decision, limits: Limits, now: u64) -> Refused {
        let tat_nanos = now.saturating_add(u64::try_from(decision.per_second.reset.as_nanos()).unwrap_or(u64::MAX));
        let used = decision
            .daily
            .map_or(0, |daily| daily.limit.saturating_sub(daily.remaining));
        Refused {
            limits,
            state: KeyState {
                tat_nanos,
                day: u32::try_from(now / NANOS_PER_DAY).unwrap_or(u32::MAX),
                used,
            },
            at: now,
        }
    }

    /// The store's answer at `now`, if it is still a refusal.
    fn refusal_at(&self, limits: &Limits, now: u64, cost: u32) -> Option<Decision> {
        // The count is known for the refusal's UTC day only: after a clock
        // stepped back, the store may be counting a later day.
        let same_day = now / NANOS_PER_DAY == self.at / NANOS_PER_DAY;
        if cost == 0 || self.limits != *limits || now < self.at || !same_day {
            return None;
        }
        let mut state = self.state;
        let decision = state.check(limits, now, cost);
        (!decision.is_allowed()).then_some(decision)
    }
}

/// Remembers which keys `S` refused and refuses them locally, exactly as
/// `S` would, until the remembered state would admit (see the module docs).
/// Clones share the memory.
pub struct RefusalCache<S> {
    inner: Arc<S>,
    refused: Arc<Cache<String, Refused>>,
    clock: SharedClock,
}

impl<S> Clone for RefusalCache<S> {
    fn clone(&self) -> RefusalCache<S> {
        RefusalCache {
            inner: Arc::clone(&self.inner),
            refused: Arc::clone(&self.refused),
            clock: self.clock.clone(),
        }
    }
}

impl<S> fmt::Debug for RefusalCache<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefusalCache")
            .field("refused_keys", &self.refused.len())
            .field("capacity", &self.refused.capacity())
            .finish_non_exhaustive()
    }
}

impl<S: RateLimitStore> RefusalCache<S> {
    /// Remembers up to [`DEFAULT_REFUSED_KEYS`] refused keys of `inner`, on
    /// the system clock.
    pub fn new(inner: S) -> RefusalCache<S> {
        RefusalCache {
            inner: Arc::new(inner),
            refused: Arc::new(Cache::new(DEFAULT_REFUSED_KEYS)),
            clock: SharedClock::default(),
        }
    }

    /// Remembers at most `keys` refused keys (the least recently refused
    /// go first): the bound on its memory.
    pub fn max_keys(mut self, keys: usize) -> RefusalCache<S> {
        self.refused = Arc::new(Cache::new(keys.max(1)));
        self
    }

    /// Reads time from `clock`: give it the store's clock (a memory store's)
    /// for answers identical to the store's to the nanosecond.
    pub fn with_clock(mut self, clock: impl Into<SharedClock>) -> RefusalCache<S> {
        self.clock = clock.into();
        self
    }

    /// How many refused keys it remembers now.
    pub fn len(&self) -> usize {
        self.refused.len()
    }

    /// Whether it remembers no refused key.
    pub fn is_empty(&self) -> bool {
        self.refused.is_empty()
    }
}

impl<S: RateLimitStore> RateLimitStore for RefusalCache<S> {
    fn check(&self, key: &str, limits: &Limits, cost: u32) -> StoreFuture<Decision> {
        // Read as the memory store reads it, so both see the same instant.
        let now = unix_nanos(self.clock.approximate_now());
        if let Some(refused) = self.refused.get(key) {
            if let Some(decision) = refused.refusal_at(limits, now, cost) {
                return MaybeReady::ready(Ok(decision));
            }
            self.refused.remove(key);
        }
        let limits = *limits;
        match self.inner.check(key, &limits, cost).into_ready() {
            Ok(result) => {
                if let Some(refused) = remembered(&result, limits, now, cost) {
                    self.refused.insert(key.to_owned(), refused);
                }
                MaybeReady::ready(result)
            }
            Err(pending) => {
                let (cache, key) = (Arc::clone(&self.refused), key.to_owned());
                pending.map(move |result| {
                    if let Some(refused) = remembered(&result, limits, now, cost) {
                        cache.insert(key, refused);
                    }
                    result
                })
            }
        }
    }
}

// What to remember of the store's answer: a refusal of a cost of 1 or more.
fn remembered(result: &Result<Decision, StoreError>, limits: Limits, now: u64, cost: u32) -> Option<Refused> {
    match result {
        Ok(decision) if !decision.is_allowed() && cost > 0 => Some(Refused::of(decision, limits, now)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use futures_util::FutureExt;
    use proptest::prelude::*;

    use super::*;
    use crate::conformance::FakeStore;
    use crate::rate_limit::{MemoryRateLimitStore, Verdict};
    use crate::{Clock, ManualClock};

    // Two seconds before a midnight (UTC), so sequences cross a day and the quota resets.
    const START_SECS: u64 = 19_700 * 86_400 - 2;

    fn limits(choice: u8) -> Limits {
        match choice % 3 {
            0 => Limits::per_second(5).with_daily_quota(Some(12)),
            1 => Limits::new(2, Duration::from_secs(1)).with_burst(3),
            _ => Limits::per_second(4).with_burst(2).with_daily_quota(Some(5)),
        }
    }

    fn now<S: RateLimitStore>(store: &S, key: &str, limits: &Limits, cost: u32) -> Decision {
        store
            .check(key, limits, cost)
            .now_or_never()
            .expect("memory stores answer at once")
            .expect("memory stores do not fail")
    }

    #[derive(Debug, Clone)]
    enum Step {
        Advance(u64),
        Rewind(u64),
        Check { key: u8, cost: u32, limits: u8 },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0u64..400_000_000).prop_map(Step::Advance),
            1 => (0u64..200_000_000).prop_map(Step::Rewind),
            12 => (0u8..3, 0u32..5, 0u8..10).prop_map(|(key, cost, limits)| Step::Check {
                key,
                cost,
                // Mostly one plan per key; sometimes another, as when a key changes plan.
                limits: if limits < 8 { key } else { limits },
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        // Random arrivals, costs, plan changes and clock steps on one
        // ManualClock: with and without the cache, every decision is the same.
        #[test]
        fn decisions_are_identical_with_and_without_the_cache(steps in prop::collection::vec(step(), 1..150)) {
            let clock = ManualClock::at_unix_secs(START_SECS);
            let bare = MemoryRateLimitStore::new().with_clock(clock.clone());
            let inner = FakeStore::new(MemoryRateLimitStore::new().with_clock(clock.clone()));
            // Room for two keys of three: evictions happen too.
            let cached = RefusalCache::new(inner.clone()).max_keys(2).with_clock(clock.clone());
            for step in steps {
                match step {
                    Step::Advance(nanos) => clock.advance(Duration::from_nanos(nanos)),
                    Step::Rewind(nanos) => clock.set(clock.now() - Duration::from_nanos(nanos)),
                    Step::Check { key, cost, limits: choice } => {
                        let (key, limits) = (format!("key_{key}"), limits(choice));
                        let asked = inner.calls("check");
                        let expected = now(&bare, &key, &limits, cost);
                        let seen = now(&cached, &key, &limits, cost);
                        prop_assert_eq!(seen, expected);
                        if inner.calls("check") == asked {
                            prop_assert!(!seen.is_allowed(), "only refusals are answered locally");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_key_over_its_limit_is_refused_locally_until_retry_after() {
        let clock = ManualClock::at_unix_secs(START_SECS - 3_600);
        let inner = FakeStore::new(MemoryRateLimitStore::new().with_clock(clock.clone()));
        let cached = RefusalCache::new(inner.clone()).with_clock(clock.clone());
        let limits = Limits::per_second(10);
        for _ in 0..10 {
            assert!(now(&cached, "key", &limits, 1).is_allowed());
        }
        let refused = now(&cached, "key", &limits, 1);
        assert_eq!(
            refused.verdict,
            Verdict::Limited {
                limit: crate::rate_limit::LimitKind::PerSecond,
                retry_after: Duration::from_millis(100)
            }
        );
        assert_eq!(inner.calls("check"), 11);
        clock.advance(Duration::from_millis(60));
        for _ in 0..1_000 {
            assert_eq!(
                now(&cached, "key", &limits, 1).retry_after(),
                Some(Duration::from_millis(40))
            );
        }
        assert_eq!(inner.calls("check"), 11, "a thousand refusals, none asked of the store");
        assert_eq!(cached.len(), 1);
        clock.advance(Duration::from_millis(40));
        assert!(
            now(&cached, "key", &limits, 1).is_allowed(),
            "at retry-after the store is asked"
        );
        assert_eq!(inner.calls("check"), 12);
        assert_eq!(cached.len(), 0, "the entry is gone once the key may pass");
    }

    #[test]
    fn admissions_errors_and_queries_are_never_remembered() {
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(START_SECS));
        let inner = FakeStore::new(MemoryRateLimitStore::new().with_clock(clock.clone()));
        let cached = RefusalCache::new(inner.clone()).with_clock(clock.clone());
        let limits = Limits::per_second(1);
        assert!(now(&cached, "key", &limits, 1).is_allowed());
        assert!(now(&cached, "key", &limits, 0).is_allowed(), "a query");
        assert!(cached.is_empty());
        inner.fail("check");
        let failed = cached.check("key", &limits, 1).now_or_never().expect("at once");
        assert!(failed.unwrap_err().is_unavailable());
        assert!(cached.is_empty(), "an error is not a refusal");
        inner.heal();
        assert!(!now(&cached, "key", &limits, 1).is_allowed());
        assert_eq!(cached.len(), 1);
        // Another plan for the same key is the store's to judge.
        assert!(now(&cached, "key", &Limits::per_second(1).with_burst(5), 1).is_allowed());
        assert_eq!(inner.calls("check"), 5);
    }

    #[tokio::test]
    async fn an_asynchronous_store_s_refusals_are_remembered_too() {
        let clock = ManualClock::at_unix_secs(START_SECS);
        let inner = FakeStore::new(MemoryRateLimitStore::new().with_clock(clock.clone())).asynchronous();
        let cached = RefusalCache::new(inner.clone()).with_clock(clock.clone());
        let limits = Limits::per_second(1);
        assert!(cached.check("key", &limits, 1).await.unwrap().is_allowed());
        assert!(!cached.check("key", &limits, 1).await.unwrap().is_allowed());
        let local = cached.check("key", &limits, 1).into_ready().expect("answered at once");
        assert!(!local.unwrap().is_allowed());
        assert_eq!(inner.calls("check"), 2);
    }
}
