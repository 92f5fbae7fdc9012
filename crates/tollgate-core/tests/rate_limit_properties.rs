//! Properties of the GCRA + daily quota math, for any arrival sequence,
//! limits and costs: the admitted units in any interval of length t never
//! exceed burst + rate·t, those in one UTC day never exceed the quota, a
//! refused request changes no state, and `KeyState::check`, the memory
//! store and a plain reference written here agree step by step.
//!
//! The same comparison against the Redis script is in
//! crates/tollgate-redis/tests/rate_limit_properties.rs.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;
use tollgate_core::rate_limit::{
    Decision, KeyState, LimitKind, Limits, MemoryRateLimitStore, RateLimitStore, Usage, Verdict, NANOS_PER_DAY,
};
use tollgate_core::{ManualClock, StoreError};

const T0: u64 = 1_700_000_000_000_000_000; // 2023-11-14T22:13:20Z

/// Limits whose emission interval is exact: `rate` per `rate × interval`.
#[derive(Debug, Clone, Copy)]
struct Case {
    rate: u32,
    interval: u64,
    burst: u32,
    quota: Option<u64>,
}

impl Case {
    fn limits(&self) -> Limits {
        Limits::new(self.rate, Duration::from_nanos(self.interval * u64::from(self.rate)))
            .with_burst(self.burst)
            .with_daily_quota(self.quota)
    }
}

fn cases() -> impl Strategy<Value = Case> {
    (
        1u32..50,
        prop_oneof![1_000u64..1_000_000, 1_000_000u64..2_000_000_000],
        1u32..20,
        prop_oneof![Just(None), (1u64..60).prop_map(Some)],
    )
        .prop_map(|(rate, interval, burst, quota)| Case {
            rate,
            interval,
            burst,
            quota,
        })
}

/// Gaps between arrivals: bursts, around the interval, and hours (to cross midnights).
fn arrivals(case: Case, len: usize) -> impl Strategy<Value = Vec<(u64, u32)>> {
    let interval = case.interval;
    let gap = prop_oneof![
        4 => Just(0u64),
        4 => 0..interval.saturating_mul(3),
        1 => 0..NANOS_PER_DAY / 3,
    ];
    proptest::collection::vec((gap, 0..case.burst + 3), 1..len)
}

fn case_and_arrivals(len: usize) -> impl Strategy<Value = (Case, Vec<(u64, u32)>)> {
    cases().prop_flat_map(move |case| (Just(case), arrivals(case, len)))
}

/// The reference, written plainly: u128, no saturation, one branch per rule.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Reference {
    tat: u128,
    day: u64,
    used: u64,
}

impl Reference {
    fn check(&mut self, case: &Case, now: u64, cost: u32) -> Decision {
        let (now, interval, cost_units) = (u128::from(now), u128::from(case.interval), u64::from(cost));
        let capacity = u128::from(case.burst) * interval;
        let day = (now / u128::from(NANOS_PER_DAY)) as u64;
        let until_midnight = u128::from(NANOS_PER_DAY) - now % u128::from(NANOS_PER_DAY);
        let used_today = if self.day >= day { self.used } else { 0 };
        let tat = self.tat.max(now);
        let new_tat = tat + u128::from(cost) * interval;
        let wait = (new_tat.saturating_sub(capacity)).saturating_sub(now);
        let nanos = |n: u128| Duration::from_nanos(n as u64);
        let verdict = if cost > case.burst {
            Verdict::CostExceedsLimit {
                limit: LimitKind::PerSecond,
            }
        } else if case.quota.is_some_and(|quota| cost_units > quota) {
            Verdict::CostExceedsLimit {
                limit: LimitKind::Daily,
            }
        } else if case.quota.is_some_and(|quota| used_today + cost_units > quota) {
            Verdict::Limited {
                limit: LimitKind::Daily,
                retry_after: nanos(until_midnight.max(wait)),
            }
        } else if wait > 0 {
            Verdict::Limited {
                limit: LimitKind::PerSecond,
                retry_after: nanos(wait),
            }
        } else {
            Verdict::Allowed
        };
        let (tat_after, used_after) = if verdict == Verdict::Allowed {
            self.tat = new_tat;
            if case.quota.is_some() && cost > 0 {
                self.day = self.day.max(day);
                self.used = used_today + cost_units;
            }
            (new_tat, used_today + cost_units)
        } else {
            (tat, used_today)
        };
        Decision {
            verdict,
            per_second: Usage {
                limit: case.burst.into(),
                remaining: ((now + capacity - tat_after) / interval) as u64,
                reset: nanos(tat_after - now),
            },
            daily: case.quota.map(|quota| Usage {
                limit: quota,
                remaining: quota.saturating_sub(used_after),
                reset: nanos(until_midnight),
            }),
        }
    }
}

fn answer(store: &MemoryRateLimitStore, key: &str, limits: &Limits, cost: u32) -> Result<Decision, StoreError> {
    store
        .check(key, limits, cost)
        .into_ready()
        .expect("the memory store answers at once")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn admitted_units_in_any_interval_stay_within_burst_plus_rate_times_length(
        (case, arrivals) in case_and_arrivals(120)
    ) {
        let limits = case.limits();
        let mut state = KeyState::default();
        let mut now = T0;
        let mut admitted: Vec<(u64, u64)> = Vec::new();
        for (gap, cost) in arrivals {
            now += gap;
            if state.check(&limits, now, cost).is_allowed() && cost > 0 {
                admitted.push((now, cost.into()));
            }
        }
        for start in 0..admitted.len() {
            let mut units = 0;
            for &(at, cost) in &admitted[start..] {
                units += cost;
                let length = at - admitted[start].0;
                // rate·t = t / interval: the interval is exactly period / rate here.
                let bound = u64::from(case.burst) + length / case.interval;
                prop_assert!(units <= bound, "{} units in {} ns, bound {}", units, length, bound);
            }
        }
    }

    #[test]
    fn admitted_units_in_a_utc_day_stay_within_the_quota((case, arrivals) in case_and_arrivals(200)) {
        let limits = case.limits();
        let mut state = KeyState::default();
        let mut now = T0;
        let mut per_day: HashMap<u64, u64> = HashMap::new();
        for (gap, cost) in arrivals {
            now += gap;
            if state.check(&limits, now, cost).is_allowed() {
                *per_day.entry(now / NANOS_PER_DAY).or_default() += u64::from(cost);
            }
        }
        if let Some(quota) = case.quota {
            for (day, units) in per_day {
                prop_assert!(units <= quota, "{} units on day {}, quota {}", units, day, quota);
            }
        }
    }

    #[test]
    fn a_refused_request_changes_no_state((case, arrivals) in case_and_arrivals(120)) {
        let limits = case.limits();
        let mut state = KeyState::default();
        let mut now = T0;
        for (gap, cost) in arrivals {
            now += gap;
            let before = state;
            let decision = state.check(&limits, now, cost);
            if !decision.is_allowed() {
                prop_assert_eq!(state, before);
            } else if cost == 0 {
                // A query consumes nothing: a TAT in the past may only be
                // brought up to now, which means the same.
                prop_assert_eq!((state.tat_nanos.max(now), state.day, state.used), (before.tat_nanos.max(now), before.day, before.used));
            }
        }
    }

    #[test]
    fn the_memory_store_key_state_and_the_reference_agree_step_by_step(
        (case, arrivals) in case_and_arrivals(120),
        keys in proptest::collection::vec(0usize..3, 120),
    ) {
        let limits = case.limits();
        let clock = ManualClock::at_unix_secs(T0 / 1_000_000_000);
        let store = MemoryRateLimitStore::new().with_clock(clock.clone());
        let mut states = [KeyState::default(); 3];
        let mut references = [Reference::default(); 3];
        let mut now = T0;
        for (step, ((gap, cost), key)) in arrivals.into_iter().zip(keys).enumerate() {
            now += gap;
            clock.set(UNIX_EPOCH + Duration::from_nanos(now));
            let expected = references[key].check(&case, now, cost);
            let reference = states[key].check(&limits, now, cost);
            prop_assert_eq!(reference, expected, "KeyState::check, step {}", step);
            let stored = answer(&store, &format!("key_{key}"), &limits, cost).unwrap();
            prop_assert_eq!(stored, expected, "the memory store, step {}", step);
        }
    }

    // With a cap of one key per shard and many keys: every answer is the
    // reference's, except refusals for capacity, and those only ever hit a
    // key whose state is that of a fresh one (never a key in debt).
    #[test]
    fn a_capped_memory_store_agrees_or_refuses_only_fresh_keys(
        (case, arrivals) in case_and_arrivals(200),
        keys in proptest::collection::vec(0usize..200, 200),
    ) {
        let limits = case.limits();
        let clock = ManualClock::at_unix_secs(T0 / 1_000_000_000);
        let store = MemoryRateLimitStore::new().with_clock(clock.clone()).with_capacity(64);
        let mut states: HashMap<usize, KeyState> = HashMap::new();
        let mut now = T0;
        for ((gap, cost), key) in arrivals.into_iter().zip(keys) {
            now += gap;
            clock.set(UNIX_EPOCH + Duration::from_nanos(now));
            let state = states.entry(key).or_default();
            let mut next = *state;
            let expected = next.check(&limits, now, cost);
            match answer(&store, &format!("key_{key}"), &limits, cost) {
                Ok(decision) => {
                    prop_assert_eq!(decision, expected);
                    *state = next;
                }
                Err(StoreError::CapacityReached { capacity }) => {
                    prop_assert_eq!(capacity, 64);
                    prop_assert!(state.is_idle_at(now), "a key in debt was refused for capacity: {:?}", state);
                    prop_assert!(expected.is_allowed(), "only a key to be tracked needs room");
                    // Refused: it consumed nothing, and the key stays fresh.
                    *state = KeyState::default();
                }
                Err(other) => prop_assert!(false, "{}", other),
            }
        }
        prop_assert!(store.len() <= 64);
    }
}
