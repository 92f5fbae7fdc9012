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

use crate::static_values::StaticValues;
use crate::text::Text;

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

/// The `RateLimit-Policy` value for a plan, built once per plan of a
/// [`Plans`](crate::Plans) table and cloned into each response (a reference
/// count, not a copy).
pub(crate) fn policy(plan: &Plan) -> HeaderValue {
    header_value(policy_text(plan).as_bytes())
}

fn policy_text(plan: &Plan) -> Text<96> {
    let mut value = Text::<96>::new();
    value.push_str("\"per-second\";q=");
    value.push_u64(plan.per_second.into());
    value.push_str(";w=1");
    if let Some(quota) = plan.daily_quota {
        value.push_str(", \"daily\";q=");
        value.push_u64(quota);
        value.push_str(";w=");
        value.push_u64(DAY_SECS);
    }
    value
}

// Digits, quotes, letters and punctuation only: always a valid header value.
fn header_value(text: &[u8]) -> HeaderValue {
    HeaderValue::from_bytes(text).unwrap_or_else(|_| HeaderValue::from_static(""))
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
    pub(crate) fn write_to(self, headers: &mut HeaderMap) {
        let current = self.current;
        headers.append(RATELIMIT_POLICY, self.policy);
        headers.append(RATELIMIT, current.value());
        if self.legacy {
            headers.insert(X_RATELIMIT_LIMIT, number(current.quota));
            headers.insert(X_RATELIMIT_REMAINING, number(current.remaining));
            headers.insert(X_RATELIMIT_RESET, number(current.reset_secs));
        }
    }
}

// Allowed at full speed under a plan whose burst is its rate, the per-second
// limit refills within a second: most responses carry one of these.
static PER_SECOND_WITHIN_A_SECOND: StaticValues = StaticValues::new(|text, remaining| {
    text.push_str("\"per-second\";r=");
    text.push_u64(remaining);
    text.push_str(";t=1");
});

static NUMBERS: StaticValues = StaticValues::new(Text::push_u64);

impl ServiceLimit {
    /// The `RateLimit` value, `"<policy>";r=<remaining>;t=<reset>`.
    fn value(&self) -> HeaderValue {
        if self.kind == LimitKind::PerSecond && self.reset_secs == 1 {
            if let Some(value) = PER_SECOND_WITHIN_A_SECOND.get(self.remaining) {
                return value;
            }
        }
        let mut value = Text::<64>::new();
        value.push_str("\"");
        value.push_str(self.kind.as_str());
        value.push_str("\";r=");
        value.push_u64(self.remaining);
        value.push_str(";t=");
        value.push_u64(self.reset_secs);
        header_value(value.as_bytes())
    }
}

fn number(number: u64) -> HeaderValue {
    NUMBERS.get(number).unwrap_or_else(|| HeaderValue::from(number))
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
        let huge = Plan::new("huge", u32::MAX).with_daily_quota(Some(u64::MAX));
        assert_eq!(
            policy(&huge),
            r#""per-second";q=4294967295;w=1, "daily";q=18446744073709551615;w=86400"#
        );
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
    fn values_from_the_static_tables_read_as_formatted_ones() {
        for remaining in [0, 1, 9, 99, 999, 1_023, 1_024, 1_000_000] {
            for (kind, reset_secs) in [
                (LimitKind::PerSecond, 1),
                (LimitKind::PerSecond, 2),
                (LimitKind::Daily, 1),
                (LimitKind::Daily, 3_600),
            ] {
                let limit = ServiceLimit {
                    kind,
                    quota: remaining,
                    remaining,
                    reset_secs,
                };
                assert_eq!(limit.value(), format!("\"{kind}\";r={remaining};t={reset_secs}"));
            }
            assert_eq!(number(remaining), remaining.to_string());
        }
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
