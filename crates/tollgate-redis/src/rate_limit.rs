//! [`RedisRateLimitStore`]: per-key GCRA and daily quota in Redis, so a
//! fleet of instances shares one limit per key.
//!
//! # Layout
//!
//! One hash per key, `<prefix>rl:{<key>}`, with the three integers of
//! [`KeyState`]: `tat` (nanoseconds), `day` and `used`.
//!
//! # One round trip, one script
//!
//! Each check is one `EVALSHA` of a Lua script (loaded on first use and
//! again after a `SCRIPT FLUSH` or a restart: `redis::Script` retries a
//! `NOSCRIPT` with the script's source). The script reads the state, takes
//! the time from Redis `TIME` (so instances with skewed clocks agree), and
//! admits or refuses with the exact integer arithmetic of
//! [`KeyState::check`] (nanoseconds held as two doubles, since Lua's numbers
//! are doubles). A refused request writes nothing. An admitted one writes the
//! new state with a TTL that ends when the state becomes
//! [idle](KeyState::is_idle_at): the TAT for the burst, the end of the UTC day
//! for a daily count. Idle keys vanish by themselves.
//!
//! The script returns the state it found and the time it used; the client
//! then runs [`KeyState::check`] on them to build the [`Decision`] (remaining,
//! reset, retry-after), so the headers follow the reference to the
//! nanosecond and the script stays small. The two must agree on the verdict;
//! a disagreement is reported as [`StoreError::Corrupt`] rather than guessed
//! at (the property test in this module checks they always agree).

use std::future::Future;
use std::sync::LazyLock;

use redis::Script;
use tollgate_core::rate_limit::{Decision, KeyState, Limits, RateLimitStore};
use tollgate_core::StoreError;

use crate::backend::{backend_error, Backend};

static CHECK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/rate_limit.lua")));

/// Rate-limit state in Redis. Cheap to clone; clones share the connection.
/// Made by [`crate::RedisStores::rate_limit_store`].
#[derive(Debug, Clone)]
pub struct RedisRateLimitStore {
    backend: Backend,
}

/// What the script needs beyond the state: the limits reduced to integers.
struct ScriptArgs {
    increment: u64,
    capacity: u64,
    quota: Option<u64>,
    cost: u32,
    impossible: bool,
}

impl ScriptArgs {
    fn new(limits: &Limits, cost: u32) -> ScriptArgs {
        let interval = limits.interval_nanos();
        let impossible = cost > limits.burst()
            // An interval of u64::MAX is a rate of zero: nothing is ever regained.
            || (interval == u64::MAX && cost > 0)
            || limits.daily_quota().is_some_and(|quota| u64::from(cost) > quota);
        ScriptArgs {
            increment: u64::from(cost).saturating_mul(interval),
            capacity: u64::from(limits.burst()).saturating_mul(interval),
            quota: limits.daily_quota(),
            cost,
            impossible,
        }
    }
}

/// The script's answer: the state before, the server's time, the verdict.
type ScriptReply = (String, String, String, u64, u64, i64);

impl RedisRateLimitStore {
    pub(crate) fn new(backend: Backend) -> RedisRateLimitStore {
        RedisRateLimitStore { backend }
    }

    /// The Redis key holding `key`'s state.
    pub fn state_key(&self, key: &str) -> String {
        self.backend.key("rl", key, "")
    }

    async fn check_once(&self, key: &str, limits: Limits, cost: u32) -> Result<Decision, StoreError> {
        let args = ScriptArgs::new(&limits, cost);
        let reply: ScriptReply = CHECK
            .key(self.state_key(key))
            .arg(args.increment)
            .arg(args.capacity)
            .arg(args.quota.map_or_else(|| "-".to_owned(), |quota| quota.to_string()))
            .arg(args.cost)
            .arg(u8::from(args.impossible))
            .invoke_async(&mut self.backend.connection())
            .await
            .map_err(backend_error)?;
        decide(&reply, &limits, cost)
    }
}

// Replays the script's verdict through the reference to get every figure.
fn decide(reply: &ScriptReply, limits: &Limits, cost: u32) -> Result<Decision, StoreError> {
    let (tat, day, used, secs, micros, admitted) = reply;
    let corrupt = |what: &str| StoreError::Corrupt(format!("rate-limit state: {what}"));
    let mut state = KeyState {
        tat_nanos: tat.parse().map_err(|_| corrupt("tat"))?,
        day: day.parse().map_err(|_| corrupt("day"))?,
        used: used.parse().map_err(|_| corrupt("used"))?,
    };
    let now_nanos = secs
        .checked_mul(1_000_000_000)
        .and_then(|nanos| nanos.checked_add(micros.checked_mul(1_000)?))
        .ok_or_else(|| corrupt("server time"))?;
    let decision = state.check(limits, now_nanos, cost);
    if decision.is_allowed() != (*admitted == 1) {
        return Err(corrupt("the script and the reference disagree"));
    }
    Ok(decision)
}

impl RateLimitStore for RedisRateLimitStore {
    fn check(
        &self,
        key: &str,
        limits: &Limits,
        cost: u32,
    ) -> impl Future<Output = Result<Decision, StoreError>> + Send {
        let key = key.to_owned();
        let limits = *limits;
        async move { self.backend.run(self.check_once(&key, limits, cost)).await }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn impossible_costs_are_worked_out_client_side() {
        let limits = Limits::per_second(10).with_daily_quota(Some(5));
        assert!(!ScriptArgs::new(&limits, 5).impossible);
        assert!(ScriptArgs::new(&limits, 6).impossible, "above the daily quota");
        assert!(ScriptArgs::new(&limits, 11).impossible, "above the burst");
        let never = Limits::new(0, Duration::from_secs(1)).with_burst(5);
        assert!(ScriptArgs::new(&never, 1).impossible);
        assert!(!ScriptArgs::new(&never, 0).impossible, "a query is always possible");
        let huge = Limits::new(1, Duration::MAX).with_burst(u32::MAX);
        assert_eq!(ScriptArgs::new(&huge, u32::MAX).capacity, u64::MAX, "saturated");
    }

    #[test]
    fn decisions_come_from_the_reference_and_must_agree() {
        let limits = Limits::per_second(10);
        let reply: ScriptReply = ("0".into(), "0".into(), "0".into(), 1_700_000_000, 250_000, 1);
        let decision = decide(&reply, &limits, 1).unwrap();
        assert!(decision.is_allowed());
        assert_eq!(decision.per_second.remaining, 9);
        let disagreeing: ScriptReply = ("0".into(), "0".into(), "0".into(), 1_700_000_000, 0, 0);
        assert!(matches!(decide(&disagreeing, &limits, 1), Err(StoreError::Corrupt(_))));
        let garbage: ScriptReply = ("x".into(), "0".into(), "0".into(), 1, 0, 1);
        assert!(matches!(decide(&garbage, &limits, 1), Err(StoreError::Corrupt(_))));
    }

    // xorshift64*: reproducible cases from a printed seed, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, bound: u64) -> u64 {
            self.next() % bound
        }

        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[self.below(items.len() as u64) as usize]
        }
    }

    fn random_limits(rng: &mut Rng) -> Limits {
        let period = rng.pick(&[
            Duration::from_millis(1),
            Duration::from_secs(1),
            Duration::from_secs(7),
            Duration::from_secs(1_000),
            Duration::from_secs(86_400 * 365),
            Duration::MAX,
        ]);
        let rate = rng.pick(&[0, 1, 3, 10, 1_000, u32::MAX]);
        let burst = rng.pick(&[0, 1, 2, 10, 100, u32::MAX]);
        let quota = rng.pick(&[None, Some(1), Some(5), Some(1_000), Some(u64::MAX)]);
        Limits::new(rate, period).with_burst(burst).with_daily_quota(quota)
    }

    async fn hmget_state(
        connection: &mut redis::aio::ConnectionManager,
        key: &str,
    ) -> (Option<String>, Option<String>, Option<String>) {
        redis::cmd("HMGET")
            .arg(key)
            .arg("tat")
            .arg("day")
            .arg("used")
            .query_async(connection)
            .await
            .unwrap()
    }

    /// The script against the reference, from arbitrary stored states
    /// (a TAT far ahead, yesterday's or tomorrow's count, counts near the
    /// quota, values near u64::MAX): same verdict, same state written, nothing
    /// written on refusal, a TTL on every written key.
    #[tokio::test]
    async fn the_script_matches_the_reference_from_any_state() {
        let Some(stores) = crate::test_redis::connect("script_matches_reference").await else {
            return;
        };
        let store = stores.rate_limit_store();
        let mut connection = stores.backend().connection();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        eprintln!("seed {seed}");
        let mut rng = Rng(seed);
        let (server_secs, _): (u64, u64) = redis::cmd("TIME").query_async(&mut connection).await.unwrap();
        let now = server_secs * 1_000_000_000;
        let today = now / tollgate_core::rate_limit::NANOS_PER_DAY;
        let (mut admitted, mut refused) = (0, 0);
        for case in 0..400 {
            let limits = random_limits(&mut rng);
            let cost = rng.pick(&[0, 1, 2, 5, limits.burst(), limits.burst().saturating_add(1)]);
            let key = store.state_key(&format!("case{case}"));
            let fresh = rng.below(4) == 0;
            let tats = [
                0,
                now - 5_000_000_000,
                now + rng.below(2_000_000_000),
                now + rng.below(1 << 62),
                u64::MAX - rng.below(1000),
            ];
            let before = KeyState {
                tat_nanos: rng.pick(&tats),
                day: rng.pick(&[0, today - 1, today, today + 1]) as u32,
                // Counts near u64::MAX are left out: the reference itself adds to
                // them unchecked (unreachable, since counts never pass the quota).
                used: rng.pick(&[0, 1, 4, 5, 999, 1_000, u64::MAX / 2]),
            };
            if !fresh {
                redis::cmd("HSET")
                    .arg(&key)
                    .arg("tat")
                    .arg(before.tat_nanos.to_string())
                    .arg("day")
                    .arg(before.day)
                    .arg("used")
                    .arg(before.used.to_string())
                    .query_async::<i64>(&mut connection)
                    .await
                    .unwrap();
            }
            let before = if fresh { KeyState::default() } else { before };
            let args = ScriptArgs::new(&limits, cost);
            let reply: ScriptReply = CHECK
                .key(&key)
                .arg(args.increment)
                .arg(args.capacity)
                .arg(args.quota.map_or_else(|| "-".to_owned(), |quota| quota.to_string()))
                .arg(args.cost)
                .arg(u8::from(args.impossible))
                .invoke_async(&mut connection)
                .await
                .unwrap();
            let context = format!("seed {seed} case {case}: {limits:?} cost {cost} from {before:?}");
            // The verdicts agree (decide() refuses a disagreement) ...
            let decision = decide(&reply, &limits, cost).unwrap_or_else(|error| panic!("{context}: {error}"));
            // ... and so do the states left behind.
            let script_now = reply.3 * 1_000_000_000 + reply.4 * 1_000;
            let mut expected = before;
            expected.check(&limits, script_now, cost);
            let stored = hmget_state(&mut connection, &key).await;
            let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut connection).await.unwrap();
            if decision.is_allowed() && cost > 0 {
                admitted += 1;
                assert_eq!(stored.0, Some(expected.tat_nanos.to_string()), "tat, {context}");
                if limits.daily_quota().is_some() {
                    assert_eq!(stored.1, Some(expected.day.to_string()), "day, {context}");
                    assert_eq!(stored.2, Some(expected.used.to_string()), "used, {context}");
                }
                assert!(ttl > 0 || ttl == -1, "a written key expires (PTTL {ttl}), {context}");
            } else {
                refused += u32::from(!decision.is_allowed());
                let unchanged = if fresh {
                    (None, None, None)
                } else {
                    (
                        Some(before.tat_nanos.to_string()),
                        Some(before.day.to_string()),
                        Some(before.used.to_string()),
                    )
                };
                assert_eq!(stored, unchanged, "nothing written, {context}");
                if fresh {
                    assert_eq!(ttl, -2, "a refused fresh key is not created, {context}");
                }
            }
        }
        assert!(
            admitted > 50 && refused > 50,
            "both paths exercised: {admitted} admitted, {refused} refused"
        );
    }

    #[tokio::test]
    async fn keys_expire_once_idle() {
        let Some(stores) = crate::test_redis::connect("keys_expire_once_idle").await else {
            return;
        };
        let store = stores.rate_limit_store();
        let connection = stores.backend().connection();
        let pttl = |key: String| {
            let mut connection = connection.clone();
            async move {
                redis::cmd("PTTL")
                    .arg(key)
                    .query_async::<i64>(&mut connection)
                    .await
                    .unwrap()
            }
        };
        // 2/s without a quota: idle 500 ms after one request (+1 ms of rounding).
        let slow = Limits::per_second(2);
        assert!(store.check("slow", &slow, 1).await.unwrap().is_allowed());
        let ttl = pttl(store.state_key("slow")).await;
        assert!((400..=501).contains(&ttl), "kept about 500 ms: {ttl}");
        // A refused request writes nothing, not even a longer TTL.
        assert!(store.check("slow", &slow, 1).await.unwrap().is_allowed());
        assert!(!store.check("slow", &slow, 1).await.unwrap().is_allowed());
        let ttl = pttl(store.state_key("slow")).await;
        assert!((400..=1_001).contains(&ttl), "kept about 1 s: {ttl}");
        // Under a daily quota the count is kept until 00:00 UTC.
        let daily = Limits::per_second(1_000).with_daily_quota(Some(10));
        assert!(store.check("daily", &daily, 1).await.unwrap().is_allowed());
        let (secs, _): (u64, u64) = redis::cmd("TIME").query_async(&mut connection.clone()).await.unwrap();
        let until_midnight_ms = (86_400 - secs % 86_400) as i64 * 1_000;
        let ttl = pttl(store.state_key("daily")).await;
        assert!(
            ttl > until_midnight_ms - 2_000 && ttl <= until_midnight_ms + 1,
            "{ttl} vs {until_midnight_ms}"
        );
    }
}
