//! The refusals this layer answers with, in the seed API's words.

use http::header::{HeaderValue, RETRY_AFTER};
use tollgate_core::rate_limit::{ceil_secs, Decision, LimitKind, Plan, Verdict};
use tollgate_core::{Code, Rejection};

/// The 429 for a refused decision; `None` if it was allowed.
///
/// A per-second refusal is the seed's body exactly:
/// `{"error":{"code":"RATE_LIMITED","message":"Rate limit exceeded. Retry after 1 second.","retry_after":1}}`.
/// A daily refusal says so and adds `"limit":"daily"`. `retry_after` and
/// the `Retry-After` header are the real wait in whole seconds, rounded up.
pub fn rate_limited(plan: &Plan, decision: &Decision) -> Option<Rejection> {
    let rejection = match decision.verdict {
        Verdict::Allowed => return None,
        Verdict::Limited { limit, retry_after } => {
            let secs = ceil_secs(retry_after);
            let wait = format!("Retry after {secs} second{}.", if secs == 1 { "" } else { "s" });
            let rejection = match limit {
                LimitKind::PerSecond => too_many(format!("Rate limit exceeded. {wait}")),
                LimitKind::Daily => {
                    let quota = plan
                        .daily_quota
                        .or(decision.daily.map(|usage| usage.limit))
                        .unwrap_or(0);
                    too_many(format!("Daily quota of {quota} requests exceeded. {wait}"))
                }
            };
            let rejection = rejection.with_field("retry_after", secs);
            let rejection = match limit {
                LimitKind::PerSecond => rejection,
                LimitKind::Daily => rejection.with_field("limit", limit.as_str()),
            };
            rejection.with_header(RETRY_AFTER, HeaderValue::from(secs))
        }
        Verdict::CostExceedsLimit { limit } => {
            let capacity = match limit {
                LimitKind::PerSecond => decision.per_second.limit,
                LimitKind::Daily => decision.daily.map(|usage| usage.limit).unwrap_or(0),
            };
            too_many(format!(
                "This request costs more than the {limit} limit of {capacity} allows. It cannot succeed on this plan."
            ))
            .with_field("limit", limit.as_str())
        }
    };
    Some(rejection)
}

fn too_many(message: String) -> Rejection {
    Rejection::new(Code::RateLimited, message)
}

/// The 500 for a request no plan applies to: a configuration error.
pub(crate) fn no_plan() -> Rejection {
    Rejection::new(Code::InternalError, "No rate-limit plan applies to this request.")
}

/// The 503 for a new key a full store cannot track: the server is short of
/// capacity, not the client over its limit, so not a 429. Whatever the
/// failure policy, it is refused: admitting an untracked key would be
/// admitting it unlimited.
pub(crate) fn at_capacity() -> Rejection {
    Rejection::new(
        Code::ServiceUnavailable,
        "The rate limiter is at capacity. Retry shortly.",
    )
    .with_header(RETRY_AFTER, HeaderValue::from_static("1"))
}

/// The 500 for a store answer that is not a backend fault (corrupt state).
pub(crate) fn store_error() -> Rejection {
    Rejection::new(Code::InternalError, "The rate-limit state could not be read.")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::StatusCode;
    use tollgate_core::rate_limit::{KeyState, Limits};

    use super::*;

    const T0: u64 = 1_700_000_000_000_000_000;

    fn refused(limits: &Limits, spend: u32, cost: u32) -> Decision {
        let mut state = KeyState::default();
        if spend > 0 {
            assert!(state.check(limits, T0, spend).is_allowed());
        }
        state.check(limits, T0, cost)
    }

    #[test]
    fn the_per_second_refusal_is_the_seed_body_byte_for_byte() {
        let free = Plan::free();
        let rejection = rate_limited(&free, &refused(&free.limits(), 10, 1)).unwrap();
        assert_eq!(rejection.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            rejection.to_json(),
            r#"{"error":{"code":"RATE_LIMITED","message":"Rate limit exceeded. Retry after 1 second.","retry_after":1}}"#
        );
        assert_eq!(rejection.headers()[RETRY_AFTER], "1");
    }

    #[test]
    fn longer_waits_are_rounded_up_and_plural() {
        // One unit per 2.5 s: the wait is 2.5 s, shown as 3 seconds.
        let plan = Plan::new("slow", 1);
        let limits = Limits::new(2, Duration::from_secs(5)).with_burst(1);
        let rejection = rate_limited(&plan, &refused(&limits, 1, 1)).unwrap();
        assert_eq!(
            rejection.to_json(),
            r#"{"error":{"code":"RATE_LIMITED","message":"Rate limit exceeded. Retry after 3 seconds.","retry_after":3}}"#
        );
        assert_eq!(rejection.headers()[RETRY_AFTER], "3");
    }

    #[test]
    fn the_daily_refusal_names_the_quota() {
        let plan = Plan::new("tiny", 10).with_daily_quota(Some(2));
        let decision = refused(&plan.limits(), 2, 1);
        let secs = ceil_secs(decision.retry_after().unwrap());
        let rejection = rate_limited(&plan, &decision).unwrap();
        assert_eq!(
            String::from_utf8(rejection.to_json().to_vec()).unwrap(),
            format!(
                r#"{{"error":{{"code":"RATE_LIMITED","message":"Daily quota of 2 requests exceeded. Retry after {secs} seconds.","retry_after":{secs},"limit":"daily"}}}}"#
            )
        );
        assert_eq!(secs, 6_400, "22:13:20 UTC is 6,400 s before midnight");
    }

    #[test]
    fn an_impossible_cost_says_retrying_cannot_help() {
        let free = Plan::free();
        let rejection = rate_limited(&free, &refused(&free.limits(), 0, 11)).unwrap();
        assert_eq!(rejection.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            rejection.message(),
            "This request costs more than the per-second limit of 10 allows. It cannot succeed on this plan."
        );
        assert!(rejection.headers().get(RETRY_AFTER).is_none());
        assert!(rate_limited(&free, &refused(&free.limits(), 0, 1)).is_none());
    }
}
