//! RateLimit header rendering: for any plan and decision the headers are
//! valid, parse back as `"<policy>";r=<n>;t=<n>`, name the refusing limit
//! (or the one closest to exhaustion) with its exact numbers, and the
//! legacy headers say the same.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tollgate_core::rate_limit::{ceil_secs, Decision, LimitKind, Plan, Usage, Verdict};
use tollgate_ratelimit::fuzzing::render;

#[derive(Arbitrary, Debug)]
struct Input {
    per_second: u32,
    burst: u32,
    daily_quota: Option<u64>,
    verdict: u8,
    retry_after_nanos: u64,
    per_second_usage: (u64, u64),
    daily_usage: (u64, u64),
    legacy: bool,
}

fn usage(limit: u64, (remaining, reset): (u64, u64)) -> Usage {
    Usage {
        limit,
        remaining,
        reset: Duration::from_nanos(reset),
    }
}

fn number(headers: &http::HeaderMap, name: &str) -> u64 {
    headers[name].to_str().unwrap().parse().unwrap()
}

fuzz_target!(|input: Input| {
    let plan = Plan::new("fuzz", input.per_second)
        .with_burst(input.burst)
        .with_daily_quota(input.daily_quota);
    let per_second = usage(input.burst.into(), input.per_second_usage);
    let daily = input.daily_quota.map(|quota| usage(quota, input.daily_usage));
    let daily_kind = if daily.is_some() {
        LimitKind::Daily
    } else {
        LimitKind::PerSecond
    };
    let retry_after = Duration::from_nanos(input.retry_after_nanos);
    let verdict = match input.verdict % 5 {
        0 => Verdict::Allowed,
        1 => Verdict::Limited {
            limit: LimitKind::PerSecond,
            retry_after,
        },
        2 => Verdict::Limited {
            limit: daily_kind,
            retry_after,
        },
        3 => Verdict::CostExceedsLimit {
            limit: LimitKind::PerSecond,
        },
        _ => Verdict::CostExceedsLimit { limit: daily_kind },
    };
    let decision = Decision {
        verdict,
        per_second,
        daily,
    };
    let headers = render(&plan, &decision, input.legacy);

    let mut policy = format!("\"per-second\";q={};w=1", input.per_second);
    if let Some(quota) = input.daily_quota {
        policy.push_str(&format!(", \"daily\";q={quota};w=86400"));
    }
    assert_eq!(headers["ratelimit-policy"], policy.as_str());

    let (kind, named) = match verdict {
        Verdict::Limited { limit, .. } | Verdict::CostExceedsLimit { limit } => (limit, limit),
        Verdict::Allowed => match daily {
            Some(d) if d.remaining <= per_second.remaining => (LimitKind::Daily, LimitKind::Daily),
            _ => (LimitKind::PerSecond, LimitKind::PerSecond),
        },
    };
    let state = if named == LimitKind::Daily {
        daily.unwrap()
    } else {
        per_second
    };
    let quota = if kind == LimitKind::Daily {
        state.limit
    } else {
        u64::from(input.per_second)
    };
    let reset = match verdict {
        Verdict::Limited { retry_after, .. } => ceil_secs(retry_after),
        _ => ceil_secs(state.reset),
    };
    let value = headers["ratelimit"].to_str().unwrap();
    assert_eq!(
        value,
        format!("\"{}\";r={};t={}", kind.as_str(), state.remaining, reset)
    );
    if input.legacy {
        assert_eq!(number(&headers, "x-ratelimit-limit"), quota);
        assert_eq!(number(&headers, "x-ratelimit-remaining"), state.remaining);
        assert_eq!(number(&headers, "x-ratelimit-reset"), reset);
    } else {
        assert!(!headers.contains_key("x-ratelimit-limit"));
    }
});
