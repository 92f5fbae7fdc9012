//! Rate-limit response headers: `RateLimit-Policy` and `RateLimit` as in
//! draft-ietf-httpapi-ratelimit-headers-10, and optionally the legacy
//! `X-RateLimit-Limit`/`-Remaining`/`-Reset`.
//!
//! ```text
//! RateLimit-Policy: "per-second";q=10;w=1, "daily";q=1000;w=86400
//! RateLimit: "per-second";r=9;t=1
//! ```
//!
//! `RateLimit` names one policy: the one that refused, or else the one
//! with the fewest units left (the daily quota on a tie, as its wait is
//! longer). `t` is whole seconds rounded up: until the burst is whole
//! again, until 00:00 UTC for the daily quota, or the `Retry-After` wait of
//! a refusal.
//!
//! Every response that had a decision carries them, admitted or refused.
//! Responses made without one — 401 for a request without a key, 503 when
//! the store fails — carry none.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use tollgate_core::rate_limit::{ceil_secs, Decision, LimitKind, Plan, Verdict};

/// `RateLimit-Policy`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `X-RateLimit-Limit` (legacy).
pub const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `X-RateLimit-Remaining` (legacy).
pub const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `X-RateLimit-Reset` (legacy), seconds from now.
pub const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

const DAY_SECS: u64 = 86_400;

/// The `RateLimit-Policy` value for a plan.
pub(crate) fn policy(plan: &Plan) -> HeaderValue {
    let mut value = format!("\"{}\";q={};w=1", LimitKind::PerSecond, plan.per_second);
    if let Some(quota) = plan.daily_quota {
        value.push_str(&format!(", \"{}\";q={quota};w={DAY_SECS}", LimitKind::Daily));
    }
    header_value(value)
}

// Digits, quotes, letters and punctuation only: always a valid header value.
fn header_value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// One policy's service limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ServiceLimit {
    kind: LimitKind,
    quota: u64,
    remaining: u64,
    reset_secs: u64,
}

/// The headers a decision puts on its response, computed when the decision
/// is made and written when the response is.
#[derive(Debug, Clone)]
pub(crate) struct RateLimitHeaders {
    policy: HeaderValue,
    current: ServiceLimit,
    legacy: bool,
}

impl RateLimitHeaders {
    pub(crate) fn new(policy: HeaderValue, plan: &Plan, decision: &Decision, legacy: bool) -> RateLimitHeaders {
        let per_second = ServiceLimit {
            kind: LimitKind::PerSecond,
            quota: plan.per_second.into(),
            remaining: decision.per_second.remaining,
            reset_secs: ceil_secs(decision.per_second.reset),
        };
        let daily = decision.daily.map(|usage| ServiceLimit {
            kind: LimitKind::Daily,
            quota: usage.limit,
            remaining: usage.remaining,
            reset_secs: ceil_secs(usage.reset),
        });
        let of_kind = |kind| match (kind, daily) {
            (LimitKind::Daily, Some(daily)) => daily,
            _ => per_second,
        };
        let current = match decision.verdict {
            Verdict::Limited { limit, retry_after } => ServiceLimit {
                // Retry-After must not point before the reset.
                reset_secs: ceil_secs(retry_after),
                ..of_kind(limit)
            },
            Verdict::CostExceedsLimit { limit } => of_kind(limit),
            Verdict::Allowed => match daily {
                Some(daily) if daily.remaining <= per_second.remaining => daily,
                _ => per_second,
            },
        };
        RateLimitHeaders {
            policy,
            current,
            legacy,
        }
    }

    /// Adds the headers; the IETF fields are lists, so they are appended to
    /// any set by another limiter.
    pub(crate) fn write_to(&self, headers: &mut HeaderMap) {
        let current = &self.current;
        headers.append(RATELIMIT_POLICY, self.policy.clone());
        headers.append(
            RATELIMIT,
            header_value(format!(
                "\"{}\";r={};t={}",
                current.kind, current.remaining, current.reset_secs
            )),
        );
        if self.legacy {
            headers.insert(X_RATELIMIT_LIMIT, HeaderValue::from(current.quota));
            headers.insert(X_RATELIMIT_REMAINING, HeaderValue::from(current.remaining));
            headers.insert(X_RATELIMIT_RESET, HeaderValue::from(current.reset_secs));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tollgate_core::rate_limit::Usage;

    use super::*;

    fn decision(verdict: Verdict, per_second: (u64, u64), daily: Option<(u64, u64)>) -> Decision {
        Decision {
            verdict,
            per_second: Usage {
                limit: 10,
                remaining: per_second.0,
                reset: Duration::from_millis(per_second.1),
            },
            daily: daily.map(|(remaining, reset_secs)| Usage {
                limit: 1_000,
                remaining,
                reset: Duration::from_secs(reset_secs),
            }),
        }
    }

    fn written(plan: &Plan, decision: &Decision, legacy: bool) -> HeaderMap {
        let mut headers = HeaderMap::new();
        RateLimitHeaders::new(policy(plan), plan, decision, legacy).write_to(&mut headers);
        headers
    }

    #[test]
    fn policies_follow_the_plan() {
        assert_eq!(
            policy(&Plan::free()),
            r#""per-second";q=10;w=1, "daily";q=1000;w=86400"#
        );
        assert_eq!(policy(&Plan::enterprise(500)), r#""per-second";q=500;w=1"#);
    }

    #[test]
    fn an_allowed_request_reports_the_limit_closest_to_exhaustion() {
        let free = Plan::free();
        let fresh = decision(Verdict::Allowed, (9, 100), Some((999, 3_600)));
        let headers = written(&free, &fresh, false);
        assert_eq!(headers[RATELIMIT], r#""per-second";r=9;t=1"#);
        assert_eq!(
            headers[RATELIMIT_POLICY],
            r#""per-second";q=10;w=1, "daily";q=1000;w=86400"#
        );
        assert!(headers.get(X_RATELIMIT_LIMIT).is_none());

        let late_in_the_day = decision(Verdict::Allowed, (9, 100), Some((4, 3_600)));
        let headers = written(&free, &late_in_the_day, true);
        assert_eq!(headers[RATELIMIT], r#""daily";r=4;t=3600"#);
        assert_eq!(headers[X_RATELIMIT_LIMIT], "1000");
        assert_eq!(headers[X_RATELIMIT_REMAINING], "4");
        assert_eq!(headers[X_RATELIMIT_RESET], "3600");
    }

    #[test]
    fn a_refusal_reports_the_refusing_limit_and_its_wait() {
        let free = Plan::free();
        let limited = decision(
            Verdict::Limited {
                limit: LimitKind::PerSecond,
                retry_after: Duration::from_millis(100),
            },
            (0, 1_000),
            Some((990, 3_600)),
        );
        assert_eq!(written(&free, &limited, false)[RATELIMIT], r#""per-second";r=0;t=1"#);
        let daily = decision(
            Verdict::Limited {
                limit: LimitKind::Daily,
                retry_after: Duration::from_millis(3_599_001),
            },
            (10, 0),
            Some((0, 3_600)),
        );
        assert_eq!(written(&free, &daily, false)[RATELIMIT], r#""daily";r=0;t=3600"#);
    }
}
