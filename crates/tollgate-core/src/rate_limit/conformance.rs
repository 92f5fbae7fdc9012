//! The [`RateLimitStore`] conformance suite.
//!
//! Backends keep their own time (a Redis store uses the server's), so the
//! suite uses no manual clock: its limits refill one unit per 1,000 s, and
//! the seconds a run takes cannot change an outcome. (A run that crosses
//! 00:00 UTC can fail the daily checks: the quota resets under it.)

use std::time::Duration;

use super::{Decision, LimitKind, Limits, RateLimitStore, Verdict};
use crate::conformance::{join_all, unique_name};

// One unit regained every 1,000 s.
const SLOW: Duration = Duration::from_secs(1_000);
// Wall-clock time a run may take without failing the timing assertions.
const SLACK: Duration = Duration::from_secs(60);

fn slow(burst: u32) -> Limits {
    Limits::new(1, SLOW).with_burst(burst)
}

async fn check<S: RateLimitStore>(store: &S, key: &str, limits: &Limits, cost: u32) -> Decision {
    store.check(key, limits, cost).await.expect("the store answers")
}

fn assert_about(actual: Duration, expected: Duration, what: &str) {
    assert!(
        actual <= expected && actual + SLACK >= expected,
        "{what}: {actual:?}, expected just under {expected:?}"
    );
}

/// The [`RateLimitStore`] conformance suite: bursts, refusals that consume
/// nothing, weighted costs, the daily quota, independent keys, and
/// concurrent checks that never admit more than the limit.
pub async fn rate_limit_store<S: RateLimitStore>(store: &S) {
    the_burst_is_admitted_then_refused(store).await;
    a_refused_request_consumes_nothing(store).await;
    costs_are_weighed(store).await;
    the_daily_quota_is_enforced(store).await;
    an_unlimited_daily_quota_reports_nothing(store).await;
    keys_are_independent(store).await;
    concurrent_checks_never_admit_more_than_the_limit(store).await;
}

async fn the_burst_is_admitted_then_refused<S: RateLimitStore>(store: &S) {
    let key = unique_name("rl");
    let limits = slow(3);
    for remaining in [2, 1, 0] {
        let decision = check(store, &key, &limits, 1).await;
        assert!(decision.is_allowed(), "within the burst: {decision:?}");
        assert_eq!(decision.per_second.limit, 3);
        assert_eq!(decision.per_second.remaining, remaining);
        assert_about(
            decision.per_second.reset,
            SLOW * (3 - remaining as u32),
            "time until the burst is whole",
        );
    }
    let refused = check(store, &key, &limits, 1).await;
    match refused.verdict {
        Verdict::Limited {
            limit: LimitKind::PerSecond,
            retry_after,
        } => assert_about(retry_after, SLOW, "retry after"),
        other => panic!("the 4th request must be refused by the per-second limit, got {other:?}"),
    }
    assert_eq!(refused.per_second.remaining, 0);
}

async fn a_refused_request_consumes_nothing<S: RateLimitStore>(store: &S) {
    // Refused by the burst: the daily count does not move.
    let key = unique_name("rl");
    let limits = slow(2).with_daily_quota(Some(10));
    check(store, &key, &limits, 2).await;
    for _ in 0..3 {
        let refused = check(store, &key, &limits, 1).await;
        assert_eq!(refused.refused_by(), Some(LimitKind::PerSecond));
        assert_eq!(refused.daily.expect("a daily quota").remaining, 8);
    }
    // Refused by the daily quota: the burst does not move.
    let key = unique_name("rl");
    let limits = slow(10).with_daily_quota(Some(2));
    check(store, &key, &limits, 2).await;
    for _ in 0..3 {
        let refused = check(store, &key, &limits, 1).await;
        assert_eq!(refused.refused_by(), Some(LimitKind::Daily));
        assert_eq!(refused.per_second.remaining, 8);
    }
    // A cost of 0 is a query: allowed, consuming nothing.
    let query = check(store, &key, &limits, 0).await;
    assert!(query.is_allowed());
    assert_eq!(query.per_second.remaining, 8);
    assert_eq!(query.daily.expect("a daily quota").remaining, 0);
}

async fn costs_are_weighed<S: RateLimitStore>(store: &S) {
    let key = unique_name("rl");
    let limits = slow(10);
    assert_eq!(check(store, &key, &limits, 4).await.per_second.remaining, 6);
    assert_eq!(check(store, &key, &limits, 4).await.per_second.remaining, 2);
    let refused = check(store, &key, &limits, 3).await;
    match refused.verdict {
        Verdict::Limited {
            limit: LimitKind::PerSecond,
            retry_after,
        } => assert_about(retry_after, SLOW, "one more unit is one interval away"),
        other => panic!("a cost above the remaining units is refused, got {other:?}"),
    }
    assert_eq!(refused.per_second.remaining, 2);
    assert_eq!(check(store, &key, &limits, 2).await.per_second.remaining, 0);
    assert_eq!(
        check(store, &unique_name("rl"), &limits, 11).await.verdict,
        Verdict::CostExceedsLimit {
            limit: LimitKind::PerSecond
        }
    );
    assert_eq!(
        check(store, &unique_name("rl"), &slow(10).with_daily_quota(Some(5)), 6)
            .await
            .verdict,
        Verdict::CostExceedsLimit {
            limit: LimitKind::Daily
        }
    );
}

async fn the_daily_quota_is_enforced<S: RateLimitStore>(store: &S) {
    let key = unique_name("rl");
    let limits = slow(100).with_daily_quota(Some(5));
    for remaining in [3, 1] {
        let decision = check(store, &key, &limits, 2).await;
        let daily = decision.daily.expect("a daily quota");
        assert_eq!((daily.limit, daily.remaining), (5, remaining));
        assert!(daily.reset > Duration::ZERO && daily.reset <= Duration::from_secs(86_400));
    }
    let refused = check(store, &key, &limits, 2).await;
    let daily = refused.daily.expect("a daily quota");
    match refused.verdict {
        Verdict::Limited {
            limit: LimitKind::Daily,
            retry_after,
        } => assert_eq!(retry_after, daily.reset, "a daily refusal waits until 00:00 UTC"),
        other => panic!("the quota is spent, got {other:?}"),
    }
    assert!(check(store, &key, &limits, 1).await.is_allowed(), "one unit is left");
}

async fn an_unlimited_daily_quota_reports_nothing<S: RateLimitStore>(store: &S) {
    let key = unique_name("rl");
    let decision = check(store, &key, &slow(5), 5).await;
    assert!(decision.is_allowed());
    assert_eq!(decision.daily, None);
}

async fn keys_are_independent<S: RateLimitStore>(store: &S) {
    let (first, second) = (unique_name("rl"), unique_name("rl"));
    let limits = slow(2).with_daily_quota(Some(2));
    assert!(check(store, &first, &limits, 2).await.is_allowed());
    assert!(!check(store, &first, &limits, 1).await.is_allowed());
    let other = check(store, &second, &limits, 1).await;
    assert!(other.is_allowed(), "another key has its own limits");
    assert_eq!(other.per_second.remaining, 1);
    assert_eq!(other.daily.expect("a daily quota").remaining, 1);
}

async fn concurrent_checks_never_admit_more_than_the_limit<S: RateLimitStore>(store: &S) {
    let key = unique_name("rl");
    let limits = slow(20);
    let decisions = join_all((0..50).map(|_| store.check(&key, &limits, 1))).await;
    let admitted = decisions
        .iter()
        .filter(|decision| decision.as_ref().expect("the store answers").is_allowed())
        .count();
    assert_eq!(admitted, 20, "exactly the burst is admitted");

    let key = unique_name("rl");
    let limits = slow(100).with_daily_quota(Some(7));
    let decisions = join_all((0..30).map(|_| store.check(&key, &limits, 1))).await;
    let admitted = decisions
        .iter()
        .filter(|decision| decision.as_ref().expect("the store answers").is_allowed())
        .count();
    assert_eq!(admitted, 7, "exactly the daily quota is admitted");
}
