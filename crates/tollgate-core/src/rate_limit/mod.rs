//! Rate limits by plan: the [`Plan`] configuration, the compact [`Limits`]
//! a store enforces, the [`Decision`] it answers, and the
//! [`RateLimitStore`] trait every backend implements.
//!
//! Each key has two limits, checked and consumed together in one atomic
//! store call:
//!
//! - a **per-second** rate with a burst, enforced with GCRA (the generic
//!   cell rate algorithm, as in `governor` and `redis-cell`): one
//!   *theoretical arrival time* (TAT) per key;
//! - an optional **daily quota**, a counter that resets at 00:00 UTC.
//!
//! A request refused by either limit consumes neither.
//!
//! [`KeyState::check`] is the reference implementation of that step: a pure
//! function of the stored state, the limits, the time and the cost. The
//! in-memory store runs it under a shard lock; another backend may run it in
//! its own transaction or mirror it in a server-side script (a Redis Lua
//! script keeps `tat`, `day` and `used` in one hash, takes the time from
//! Redis `TIME` so every instance agrees, and expires the hash once it is
//! [idle](KeyState::is_idle_at)). The conformance suite holds every backend
//! to the same answers.
//!
//! ```
//! use std::time::Duration;
//! use tollgate_core::rate_limit::{KeyState, LimitKind, Limits, Plan, Verdict};
//!
//! let limits = Plan::free().limits(); // 10/s, burst 10, 1,000 a day
//! let mut state = KeyState::default();
//! let now = 1_700_000_000_000_000_000; // nanoseconds since the epoch
//! for _ in 0..10 {
//!     assert!(state.check(&limits, now, 1).is_allowed());
//! }
//! let refused = state.check(&limits, now, 1);
//! assert_eq!(
//!     refused.verdict,
//!     Verdict::Limited { limit: LimitKind::PerSecond, retry_after: Duration::from_millis(100) }
//! );
//! assert_eq!(refused.daily.unwrap().remaining, 990, "the refused request consumed nothing");
//! ```

#[cfg(any(test, feature = "conformance"))]
pub(crate) mod conformance;
mod memory;
mod refusal_cache;

pub use memory::*;
pub use refusal_cache::{RefusalCache, DEFAULT_REFUSED_KEYS};

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::maybe_ready::StoreFuture;

/// Nanoseconds in a day: the daily quota resets every multiple of this since the epoch (00:00 UTC).
pub const NANOS_PER_DAY: u64 = 86_400 * 1_000_000_000;

// The emission interval of a rate of 0: nothing is ever regained.
const NEVER: u64 = u64::MAX;

/// A plan's limits as configuration: what the seed API sells as Free,
/// Premium and Enterprise, or your own.
///
/// Deserialises from e.g. `{"name": "free", "per_second": 10, "daily_quota": 1000}`;
/// `burst` defaults to `per_second`, `daily_quota` to unlimited, `cost` to 1.
/// Rates, bursts and costs of zero are refused when deserialising.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "PlanConfig")]
pub struct Plan {
    /// The plan's name, as in [`Principal::plan`](crate::Principal::plan).
    pub name: String,
    /// Sustained requests (cost units) per second.
    pub per_second: u32,
    /// How many units may be spent at once after an idle period.
    pub burst: u32,
    /// Units per day (UTC), or `None` for no daily limit.
    pub daily_quota: Option<u64>,
    /// The cost of a request unless the layer is told otherwise.
    pub cost: u32,
}

impl Plan {
    /// The seed's highest Enterprise rate, requests per second.
    pub const ENTERPRISE_MAX_PER_SECOND: u32 = 1_000;

    /// A plan of `per_second` requests a second, burst equal to the rate,
    /// no daily limit, cost 1.
    pub fn new(name: impl Into<String>, per_second: u32) -> Plan {
        Plan {
            name: name.into(),
            per_second,
            burst: per_second,
            daily_quota: None,
            cost: 1,
        }
    }

    /// The seed's Free plan: 10 requests a second, 1,000 a day.
    pub fn free() -> Plan {
        Plan::new("free", 10).with_daily_quota(Some(1_000))
    }

    /// The seed's Premium plan: 100 requests a second, 100,000 a day.
    pub fn premium() -> Plan {
        Plan::new("premium", 100).with_daily_quota(Some(100_000))
    }

    /// The seed's Enterprise plan: a custom rate, at most
    /// [`ENTERPRISE_MAX_PER_SECOND`](Plan::ENTERPRISE_MAX_PER_SECOND) (larger
    /// values are capped, 0 becomes 1), and no daily limit.
    pub fn enterprise(per_second: u32) -> Plan {
        Plan::new("enterprise", per_second.clamp(1, Plan::ENTERPRISE_MAX_PER_SECOND))
    }

    /// Sets the burst.
    pub fn with_burst(mut self, burst: u32) -> Plan {
        self.burst = burst;
        self
    }

    /// Sets the daily quota (`None`: unlimited).
    pub fn with_daily_quota(mut self, daily_quota: Option<u64>) -> Plan {
        self.daily_quota = daily_quota;
        self
    }

    /// Sets the default cost of a request.
    pub fn with_cost(mut self, cost: u32) -> Plan {
        self.cost = cost;
        self
    }

    /// The limits a store enforces for this plan.
    pub fn limits(&self) -> Limits {
        Limits::new(self.per_second, Duration::from_secs(1))
            .with_burst(self.burst)
            .with_daily_quota(self.daily_quota)
    }
}

// The wire form of a plan, validated into `Plan`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanConfig {
    name: String,
    per_second: u32,
    #[serde(default)]
    burst: Option<u32>,
    #[serde(default)]
    daily_quota: Option<u64>,
    #[serde(default)]
    cost: Option<u32>,
}

impl TryFrom<PlanConfig> for Plan {
    type Error = String;

    fn try_from(config: PlanConfig) -> Result<Plan, String> {
        let name = config.name;
        let positive = |what: &str, value: u64| {
            if value == 0 {
                Err(format!("plan {name:?}: {what} must be at least 1"))
            } else {
                Ok(())
            }
        };
        positive("per_second", config.per_second.into())?;
        let burst = config.burst.unwrap_or(config.per_second);
        positive("burst", burst.into())?;
        let cost = config.cost.unwrap_or(1);
        positive("cost", cost.into())?;
        if let Some(daily) = config.daily_quota {
            positive("daily_quota", daily)?;
        }
        Ok(Plan {
            name,
            per_second: config.per_second,
            burst,
            daily_quota: config.daily_quota,
            cost,
        })
    }
}

/// The limits a store enforces for one key, in the form the algorithm
/// uses: the GCRA emission interval (time to regain one unit), the burst,
/// and the daily quota. Small and `Copy`.
///
/// A rate of 0 or a burst of 0 admits nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    interval_nanos: u64,
    burst: u32,
    daily_quota: Option<u64>,
}

impl Limits {
    /// `rate` units every `period`, burst equal to `rate`, no daily quota.
    /// `Limits::new(1, Duration::from_secs(1000))` is one request per 1,000 s.
    pub fn new(rate: u32, period: Duration) -> Limits {
        let period = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
        let interval_nanos = match rate {
            0 => NEVER,
            // At least a nanosecond, so every unit costs some time.
            rate => (period / u64::from(rate)).max(1),
        };
        Limits {
            interval_nanos,
            burst: rate,
            daily_quota: None,
        }
    }

    /// `rate` units a second, burst equal to `rate`, no daily quota.
    pub fn per_second(rate: u32) -> Limits {
        Limits::new(rate, Duration::from_secs(1))
    }

    /// Sets the burst: how many units may be spent at once.
    pub fn with_burst(mut self, burst: u32) -> Limits {
        self.burst = burst;
        self
    }

    /// Sets the daily quota (`None`: unlimited).
    pub fn with_daily_quota(mut self, daily_quota: Option<u64>) -> Limits {
        self.daily_quota = daily_quota;
        self
    }

    /// The time it takes to regain one unit.
    pub fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.interval_nanos)
    }

    /// The GCRA emission interval in nanoseconds.
    pub fn interval_nanos(&self) -> u64 {
        self.interval_nanos
    }

    /// The burst.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The daily quota, `None` when unlimited.
    pub fn daily_quota(&self) -> Option<u64> {
        self.daily_quota
    }
}

/// Which of a key's two limits a decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// The per-second rate and its burst.
    PerSecond,
    /// The daily quota.
    Daily,
}

impl LimitKind {
    /// `per-second` or `daily`: the policy names used in `RateLimit` headers and bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::PerSecond => "per-second",
            LimitKind::Daily => "daily",
        }
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a request was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted; its cost was consumed from both limits.
    Allowed,
    /// Refused by `limit`; the same request is admitted after `retry_after`
    /// (exact; if both limits refuse, the daily one is named and the wait
    /// covers both). Nothing was consumed.
    Limited {
        /// The limit that refused.
        limit: LimitKind,
        /// How long until the same request would be admitted.
        retry_after: Duration,
    },
    /// The request's cost is larger than `limit` can ever admit (its burst or
    /// its daily quota): retrying cannot help. Nothing was consumed.
    CostExceedsLimit {
        /// The limit the cost exceeds.
        limit: LimitKind,
    },
}

/// One limit's state after a check, for response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// The limit's capacity: the burst, or the daily quota.
    pub limit: u64,
    /// Units that could be spent right now.
    pub remaining: u64,
    /// Time until the limit is whole again: the burst fully refilled, or the
    /// next 00:00 UTC for the daily quota.
    pub reset: Duration,
}

/// A store's answer: the verdict, and both limits' state afterwards, so a
/// layer can write its headers without another call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Admitted or which limit refused.
    pub verdict: Verdict,
    /// The per-second limit.
    pub per_second: Usage,
    /// The daily quota, `None` when unlimited.
    pub daily: Option<Usage>,
}

impl Decision {
    /// Whether the request was admitted.
    pub fn is_allowed(&self) -> bool {
        self.verdict == Verdict::Allowed
    }

    /// The limit that refused, if any.
    pub fn refused_by(&self) -> Option<LimitKind> {
        match self.verdict {
            Verdict::Allowed => None,
            Verdict::Limited { limit, .. } | Verdict::CostExceedsLimit { limit } => Some(limit),
        }
    }

    /// How long until the request would be admitted; `None` when it was, or never will be.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.verdict {
            Verdict::Limited { retry_after, .. } => Some(retry_after),
            Verdict::Allowed | Verdict::CostExceedsLimit { .. } => None,
        }
    }
}

/// What a store keeps per key: the GCRA theoretical arrival time and the
/// daily counter. Three integers, so any backend can hold it.
///
/// A Redis Lua script mirrors [`check`](KeyState::check) in one round trip:
/// `now` from `TIME`, the three fields in one hash, written back only when
/// the request is admitted, and `PEXPIREAT` set to when the state turns
/// [idle](KeyState::is_idle_at). Lua numbers are doubles, exact to 2⁵³, so
/// a script keeps times in microseconds rather than nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct KeyState {
    /// Theoretical arrival time, nanoseconds since the epoch: when the burst
    /// is fully refilled. At or before now, the key is idle.
    pub tat_nanos: u64,
    /// The UTC day (days since the epoch) that `used` counts.
    pub day: u32,
    /// Units consumed on `day` (only counted under a daily quota).
    pub used: u64,
}

impl KeyState {
    /// Checks a request of `cost` units at `now_nanos` (since the epoch)
    /// against `limits`, and consumes the cost from both limits only when
    /// both admit it. This is the reference semantics every store follows.
    ///
    /// A cost of 0 is a query: it is always allowed and consumes nothing.
    /// A clock that steps back never refills anything: the TAT stays ahead
    /// and the later day's count is kept.
    pub fn check(&mut self, limits: &Limits, now_nanos: u64, cost: u32) -> Decision {
        let now = now_nanos;
        let interval = limits.interval_nanos;
        let cost_units = u64::from(cost);
        let capacity = u64::from(limits.burst).saturating_mul(interval);
        let today = day_of(now);
        let until_midnight = NANOS_PER_DAY - now % NANOS_PER_DAY;
        let used_today = if self.day >= today { self.used } else { 0 };

        // GCRA: admit if the TAT after this request is within `capacity` of now.
        let tat = self.tat_nanos.max(now);
        let new_tat = tat.saturating_add(cost_units.saturating_mul(interval));
        let per_second_wait = new_tat.saturating_sub(capacity).saturating_sub(now);
        let daily_refuses = limits
            .daily_quota
            .is_some_and(|quota| used_today.saturating_add(cost_units) > quota);

        let never_refills = limits.interval_nanos == NEVER && cost > 0;
        let verdict = if cost > limits.burst || never_refills {
            Verdict::CostExceedsLimit {
                limit: LimitKind::PerSecond,
            }
        } else if limits.daily_quota.is_some_and(|quota| cost_units > quota) {
            Verdict::CostExceedsLimit {
                limit: LimitKind::Daily,
            }
        } else if daily_refuses {
            Verdict::Limited {
                limit: LimitKind::Daily,
                retry_after: Duration::from_nanos(until_midnight.max(per_second_wait)),
            }
        } else if per_second_wait > 0 {
            Verdict::Limited {
                limit: LimitKind::PerSecond,
                retry_after: Duration::from_nanos(per_second_wait),
            }
        } else {
            Verdict::Allowed
        };

        let (tat_after, used_after) = if verdict == Verdict::Allowed {
            self.tat_nanos = new_tat;
            if limits.daily_quota.is_some() && cost > 0 {
                self.day = self.day.max(today);
                self.used = used_today.saturating_add(cost_units);
            }
            (new_tat, used_today.saturating_add(cost_units))
        } else {
            (tat, used_today)
        };

        let per_second = Usage {
            limit: limits.burst.into(),
            remaining: now.saturating_add(capacity).saturating_sub(tat_after) / interval,
            reset: Duration::from_nanos(tat_after - now),
        };
        let daily = limits.daily_quota.map(|quota| Usage {
            limit: quota,
            remaining: quota.saturating_sub(used_after),
            reset: Duration::from_nanos(until_midnight),
        });
        Decision {
            verdict,
            per_second,
            daily,
        }
    }

    /// Whether the state is indistinguishable from a fresh one at
    /// `now_nanos`: the burst is full and nothing counts against today's
    /// quota. A store may then forget the key.
    pub fn is_idle_at(&self, now_nanos: u64) -> bool {
        self.tat_nanos <= now_nanos && (self.used == 0 || self.day < day_of(now_nanos))
    }
}

fn day_of(nanos: u64) -> u32 {
    // u64 nanoseconds end in 2554, day 213,503: it fits.
    (nanos / NANOS_PER_DAY) as u32
}

/// Where rate-limit state lives. Implemented in memory
/// ([`MemoryRateLimitStore`]) and on Redis; every implementation runs
/// [`crate::conformance::rate_limit_store`].
///
/// The store owns its time source (the memory store a
/// [`SharedClock`](crate::SharedClock), Redis its server time), so
/// instances sharing a backend agree on time.
pub trait RateLimitStore: Send + Sync + 'static {
    /// Checks a request of `cost` units for `key` against `limits` and, only
    /// if both the per-second and the daily limit admit it, consumes the
    /// cost from both: one atomic step with the semantics of
    /// [`KeyState::check`].
    fn check(&self, key: &str, limits: &Limits, cost: u32) -> StoreFuture<Decision>;
}

/// Whole seconds, rounded up: what `Retry-After` and the body's `retry_after` show.
pub fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000_000_000; // 2023-11-14T22:13:20Z
    const MS: u64 = 1_000_000;

    #[test]
    fn seed_plans_have_the_seed_limits() {
        let free = Plan::free();
        assert_eq!((free.per_second, free.burst, free.daily_quota), (10, 10, Some(1_000)));
        let premium = Plan::premium();
        assert_eq!(
            (premium.per_second, premium.burst, premium.daily_quota),
            (100, 100, Some(100_000))
        );
        assert_eq!(Plan::enterprise(5_000).per_second, 1_000);
        assert_eq!(Plan::enterprise(250).daily_quota, None);
        assert_eq!(Plan::free().limits().emission_interval(), Duration::from_millis(100));
    }

    #[test]
    fn plans_deserialise_with_defaults_and_refuse_zeros() {
        let plan: Plan = serde_json::from_str(r#"{"name":"free","per_second":10,"daily_quota":1000}"#).unwrap();
        assert_eq!(plan, Plan::free());
        let plan: Plan = serde_json::from_str(r#"{"name":"bulk","per_second":5,"burst":50,"cost":2}"#).unwrap();
        assert_eq!(plan, Plan::new("bulk", 5).with_burst(50).with_cost(2));
        for bad in [
            r#"{"name":"x","per_second":0}"#,
            r#"{"name":"x","per_second":1,"burst":0}"#,
            r#"{"name":"x","per_second":1,"cost":0}"#,
            r#"{"name":"x","per_second":1,"daily_quota":0}"#,
            r#"{"name":"x","per_second":1,"brust":3}"#,
        ] {
            let error = serde_json::from_str::<Plan>(bad).unwrap_err().to_string();
            assert!(
                error.contains("must be at least 1") || error.contains("unknown field"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn the_burst_then_exactly_one_unit_per_interval() {
        let limits = Plan::free().limits();
        let mut state = KeyState::default();
        for i in 0..10 {
            let decision = state.check(&limits, T0, 1);
            assert!(decision.is_allowed(), "request {i}");
            assert_eq!(decision.per_second.remaining, 9 - i);
            assert_eq!(decision.per_second.reset, Duration::from_millis(100 * (i + 1)));
        }
        let refused = state.check(&limits, T0, 1);
        assert_eq!(refused.retry_after(), Some(Duration::from_millis(100)));
        assert_eq!(refused.refused_by(), Some(LimitKind::PerSecond));
        assert!(!state.check(&limits, T0 + 100 * MS - 1, 1).is_allowed());
        assert!(state.check(&limits, T0 + 100 * MS, 1).is_allowed());
        assert!(!state.check(&limits, T0 + 100 * MS, 1).is_allowed());
    }

    #[test]
    fn weighted_costs_and_impossible_costs() {
        let limits = Limits::per_second(10).with_daily_quota(Some(15));
        let mut state = KeyState::default();
        assert_eq!(state.check(&limits, T0, 4).per_second.remaining, 6);
        assert_eq!(state.check(&limits, T0, 6).per_second.remaining, 0);
        let refused = state.check(&limits, T0, 3);
        assert_eq!(refused.retry_after(), Some(Duration::from_millis(300)));
        assert_eq!(
            state.check(&limits, T0, 11).verdict,
            Verdict::CostExceedsLimit {
                limit: LimitKind::PerSecond
            }
        );
        let small_daily = Limits::per_second(100).with_daily_quota(Some(5));
        assert_eq!(
            KeyState::default().check(&small_daily, T0, 6).verdict,
            Verdict::CostExceedsLimit {
                limit: LimitKind::Daily
            }
        );
    }

    #[test]
    fn the_daily_quota_resets_at_midnight_utc() {
        let limits = Limits::per_second(1_000).with_daily_quota(Some(3));
        let midnight = (T0 / NANOS_PER_DAY + 1) * NANOS_PER_DAY;
        let mut state = KeyState::default();
        for _ in 0..3 {
            assert!(state.check(&limits, T0, 1).is_allowed());
        }
        let refused = state.check(&limits, T0, 1);
        assert_eq!(
            refused.verdict,
            Verdict::Limited {
                limit: LimitKind::Daily,
                retry_after: Duration::from_nanos(midnight - T0)
            }
        );
        assert_eq!(refused.daily.unwrap().reset, Duration::from_nanos(midnight - T0));
        assert!(!state.check(&limits, midnight - 1, 1).is_allowed());
        let next_day = state.check(&limits, midnight, 1);
        assert!(next_day.is_allowed());
        assert_eq!(next_day.daily.unwrap().remaining, 2);
        assert_eq!(next_day.daily.unwrap().reset, Duration::from_secs(86_400));
    }

    #[test]
    fn refusals_change_no_state() {
        let limits = Limits::per_second(5).with_daily_quota(Some(3));
        let mut state = KeyState::default();
        assert!(state.check(&limits, T0, 3).is_allowed());
        let before = state;
        assert_eq!(state.check(&limits, T0, 1).refused_by(), Some(LimitKind::Daily));
        assert_eq!(state, before, "a daily refusal takes no per-second units");

        let tight = Limits::per_second(2).with_daily_quota(Some(100));
        let mut state = KeyState::default();
        assert!(state.check(&tight, T0, 2).is_allowed());
        let before = state;
        assert_eq!(state.check(&tight, T0, 1).refused_by(), Some(LimitKind::PerSecond));
        assert_eq!(state.check(&tight, T0, 3).refused_by(), Some(LimitKind::PerSecond));
        assert_eq!(state, before, "a per-second refusal takes no daily units");
    }

    #[test]
    fn a_clock_stepping_back_refills_nothing() {
        let limits = Limits::per_second(1).with_daily_quota(Some(1));
        let mut state = KeyState::default();
        let tomorrow = T0 + NANOS_PER_DAY;
        assert!(state.check(&limits, tomorrow, 1).is_allowed());
        assert!(!state.check(&limits, T0, 1).is_allowed(), "yesterday's clock");
    }

    #[test]
    fn idleness() {
        let limits = Limits::per_second(10).with_daily_quota(Some(100));
        let mut state = KeyState::default();
        assert!(state.is_idle_at(T0));
        state.check(&limits, T0, 1);
        assert!(!state.is_idle_at(T0 + 100 * MS), "today's count is kept");
        assert!(state.is_idle_at(T0 + NANOS_PER_DAY));
        let mut unlimited = KeyState::default();
        unlimited.check(&Limits::per_second(10), T0, 1);
        assert!(!unlimited.is_idle_at(T0 + 100 * MS - 1));
        assert!(unlimited.is_idle_at(T0 + 100 * MS));
    }

    #[test]
    fn cost_zero_is_a_query() {
        let limits = Limits::per_second(2).with_daily_quota(Some(5));
        let mut state = KeyState::default();
        state.check(&limits, T0, 2);
        let query = state.check(&limits, T0, 0);
        assert!(query.is_allowed());
        assert_eq!(query.per_second.remaining, 0);
        assert_eq!(query.daily.unwrap().remaining, 3);
    }

    #[test]
    fn degenerate_limits_do_not_panic() {
        let mut state = KeyState::default();
        let never = Limits::new(0, Duration::from_secs(1));
        assert_eq!(
            state.check(&never, T0, 1).verdict,
            Verdict::CostExceedsLimit {
                limit: LimitKind::PerSecond
            }
        );
        let never_refills = Limits::new(0, Duration::from_secs(1)).with_burst(5);
        assert!(!state.check(&never_refills, T0, 1).is_allowed());
        let huge = Limits::new(1, Duration::from_secs(100 * 365 * 86_400)).with_burst(u32::MAX);
        assert!(state.check(&huge, T0, u32::MAX).is_allowed());
        state.check(&huge, u64::MAX, u32::MAX);
    }

    #[test]
    fn ceil_secs_rounds_up() {
        assert_eq!(ceil_secs(Duration::from_millis(100)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(1)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1001)), 2);
        assert_eq!(ceil_secs(Duration::ZERO), 0);
    }
}
