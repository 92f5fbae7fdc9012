//! The Redis script, the memory store and a plain reference agree step by
//! step on any sequence of checks over a few keys.
//!
//! The script takes its time from Redis `TIME`, which a test cannot hold
//! still, so the limits here have a 1,000 s emission interval: the few
//! milliseconds a sequence takes change no verdict and no count, and the
//! memory store and the reference are checked at the Redis time read at the
//! start. Waits (`retry_after`, `reset`) are compared within that slack.
//! Arbitrary arrival times are covered against the memory store in
//! tollgate-core's tests/rate_limit_properties.rs, and `RefusalCache`'s
//! answers against the memory store in its own module's proptest.
//!
//! Here too `RefusalCache` in front of the Redis store: on random sequences
//! of weighted checks and plan changes, its decisions are the reference's,
//! and those it gives without asking Redis are refusals.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;
use tollgate_core::conformance::FakeStore;
use tollgate_core::rate_limit::{
    Decision, KeyState, Limits, MemoryRateLimitStore, RateLimitStore, RefusalCache, Verdict,
};
use tollgate_core::ManualClock;
use tollgate_redis::testing::TestRedis;

const INTERVAL: Duration = Duration::from_secs(1_000);
const SLACK: Duration = Duration::from_secs(5);

fn close(a: Duration, b: Duration) -> bool {
    a.abs_diff(b) <= SLACK
}

fn same(redis: &Decision, expected: &Decision) -> bool {
    let verdicts = match (redis.verdict, expected.verdict) {
        (
            Verdict::Limited { limit, retry_after },
            Verdict::Limited {
                limit: expected_limit,
                retry_after: expected_wait,
            },
        ) => limit == expected_limit && close(retry_after, expected_wait),
        (verdict, expected) => verdict == expected,
    };
    let usage = |a: &tollgate_core::rate_limit::Usage, b: &tollgate_core::rate_limit::Usage| {
        a.limit == b.limit && a.remaining == b.remaining && close(a.reset, b.reset)
    };
    verdicts
        && usage(&redis.per_second, &expected.per_second)
        && match (&redis.daily, &expected.daily) {
            (Some(a), Some(b)) => usage(a, b),
            (None, None) => true,
            _ => false,
        }
}

fn sequence() -> impl Strategy<Value = (u32, Option<u64>, Vec<(usize, u32)>)> {
    (1u32..8, prop_oneof![Just(None), (1u64..12).prop_map(Some)]).prop_flat_map(|(burst, quota)| {
        (
            Just(burst),
            Just(quota),
            proptest::collection::vec((0usize..3, 0..burst + 2), 1..25),
        )
    })
}

#[test]
fn the_redis_script_the_memory_store_and_the_reference_agree() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(redis) = runtime.block_on(TestRedis::connect("rate_limit_properties")) else {
        return;
    };
    let store = redis.rate_limit_store();
    // TestRedis connected, so REDIS_URL is set.
    let client = redis::Client::open(std::env::var("REDIS_URL").unwrap()).unwrap();
    let connection = runtime.block_on(client.get_multiplexed_async_connection()).unwrap();
    let cases = std::sync::atomic::AtomicUsize::new(0);
    let config = ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |((burst, quota, checks) in sequence())| {
        let case = cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut connection = connection.clone();
        let limits = Limits::new(1, INTERVAL).with_burst(burst).with_daily_quota(quota);
        let (secs, micros): (u64, u64) =
            runtime.block_on(redis::cmd("TIME").query_async(&mut connection)).unwrap();
        let now = secs * 1_000_000_000 + micros * 1_000;
        let clock = ManualClock::at_unix_secs(0);
        clock.set(UNIX_EPOCH + Duration::from_nanos(now));
        let memory = MemoryRateLimitStore::new().with_clock(clock);
        let mut states = [KeyState::default(); 3];
        for (step, (key, cost)) in checks.into_iter().enumerate() {
            let name = format!("case{case}_key{key}");
            let expected = states[key].check(&limits, now, cost);
            let in_memory = memory.check(&name, &limits, cost).into_ready().expect("at once").unwrap();
            prop_assert_eq!(in_memory, expected, "memory, step {}", step);
            let from_redis = runtime.block_on(store.check(&name, &limits, cost)).unwrap();
            prop_assert!(same(&from_redis, &expected), "step {}: redis {:?}, reference {:?}", step, from_redis, expected);
        }
    });
    runtime.block_on(redis.cleanup());
}

// Checks of three keys, each with a cost and one of two plans (the second
// a plan change: a larger burst, the same quota).
fn weighted_sequence() -> impl Strategy<Value = (u32, Option<u64>, Vec<(usize, u32, bool)>)> {
    (1u32..6, prop_oneof![Just(None), (1u64..10).prop_map(Some)]).prop_flat_map(|(burst, quota)| {
        (
            Just(burst),
            Just(quota),
            proptest::collection::vec((0usize..3, 0..burst + 3, proptest::bool::weighted(0.15)), 1..40),
        )
    })
}

#[test]
fn decisions_through_the_refusal_cache_on_redis_are_the_reference_s() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(redis) = runtime.block_on(TestRedis::connect("refusal_cache_properties")) else {
        return;
    };
    let client = redis::Client::open(std::env::var("REDIS_URL").unwrap()).unwrap();
    let connection = runtime.block_on(client.get_multiplexed_async_connection()).unwrap();
    let cases = std::sync::atomic::AtomicUsize::new(0);
    let (local, total) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let config = ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |((burst, quota, checks) in weighted_sequence())| {
        let case = cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut connection = connection.clone();
        let plans = [
            Limits::new(1, INTERVAL).with_burst(burst).with_daily_quota(quota),
            Limits::new(1, INTERVAL).with_burst(burst + 2).with_daily_quota(quota),
        ];
        let (secs, micros): (u64, u64) =
            runtime.block_on(redis::cmd("TIME").query_async(&mut connection)).unwrap();
        let now = secs * 1_000_000_000 + micros * 1_000;
        // The cache's clock stands at the Redis time read above; Redis's
        // own moves on by milliseconds, which change nothing here.
        let clock = ManualClock::at_unix_secs(0);
        clock.set(UNIX_EPOCH + Duration::from_nanos(now));
        let store = FakeStore::new(redis.rate_limit_store());
        let cached = RefusalCache::new(store.clone()).with_clock(clock);
        let mut states = [KeyState::default(); 3];
        for (step, (key, cost, changed)) in checks.into_iter().enumerate() {
            let name = format!("cached{case}_key{key}");
            let limits = plans[usize::from(changed)];
            let expected = states[key].check(&limits, now, cost);
            let asked = store.calls("check");
            // Within the runtime: the cache polls the store's future once in passing.
            let seen = runtime.block_on(async { cached.check(&name, &limits, cost).await }).unwrap();
            prop_assert!(same(&seen, &expected), "step {}: cached {:?}, reference {:?}", step, seen, expected);
            total.fetch_add(1, Ordering::Relaxed);
            if store.calls("check") == asked {
                local.fetch_add(1, Ordering::Relaxed);
                prop_assert!(!seen.is_allowed(), "step {}: only refusals are answered locally", step);
            }
        }
    });
    let (local, total) = (local.into_inner(), total.into_inner());
    assert!(local > 0, "some of {total} checks were answered locally");
    runtime.block_on(redis.cleanup());
}
