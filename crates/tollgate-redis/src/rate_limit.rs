//! [`RedisRateLimitStore`]: per-key GCRA and daily quota in Redis, so a
//! fleet of instances shares one limit per key.
//!
//! # Layout
//!
//! One string per key, `<prefix>rl:{<key>}`, holding the three integers of
//! [`KeyState`] as `<tat secs> <tat nanos> <day> <used hi> <used lo>`
//! (`used` = `hi` × 10⁹ + `lo`: u64 values split so Lua's doubles hold them
//! exactly). A string rather than a hash, so one `SET … PX` writes the
//! state and its TTL together.
//!
//! # One round trip, one script, many checks
//!
//! Each check is part of one `EVALSHA` of a Lua script (loaded on first use and
//! again after a `SCRIPT FLUSH` or a restart: `redis::Script` retries a
//! `NOSCRIPT` with the script's source). The script reads the state, takes
//! the time from Redis `TIME` (so instances with skewed clocks agree), and
//! admits or refuses with the exact integer arithmetic of
//! [`KeyState::check`] (nanoseconds held as two doubles, since Lua's numbers
//! are doubles). A refused request writes nothing. An admitted one writes the
//! new state with a TTL that ends when the state becomes
//! [idle](KeyState::is_idle_at): the TAT for the burst, the end of the UTC day
//! for a daily count. Idle keys vanish by themselves. Inside the script:
//! one `TIME`, then per check a `GET` and, when admitting, one `SET … PX`.
//!
//! Concurrent checks are coalesced (`coalesce.rs`): while a call is on its
//! way, the checks arriving meanwhile wait and go in the next call, at
//! most 64, checked in arrival order within the one atomic script run. On
//! a Redis Cluster each check is a call of its own, since the keys of
//! different checks lie on different slots.
//!
//! The script returns the state it found and the time it used; the client
//! then runs [`KeyState::check`] on them to build the [`Decision`] (remaining,
//! reset, retry-after), so the headers follow the reference to the
//! nanosecond and the script stays small. The two must agree on the verdict;
//! a disagreement is reported as [`StoreError::Corrupt`] rather than guessed
//! at (the property test in this module checks they always agree).

use std::sync::{Arc, LazyLock};

use redis::Script;
use tollgate_core::rate_limit::{Decision, KeyState, Limits, RateLimitStore};
use tollgate_core::{MaybeReady, StoreError, StoreFuture};

use crate::backend::{backend_error, Backend};
use crate::coalesce::{copy_error, Coalescer, Waiting};

static CHECK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/rate_limit.lua")));

/// Rate-limit state in Redis. Cheap to clone; clones share the connection.
/// Made by [`crate::RedisStores::rate_limit_store`].
#[derive(Debug, Clone)]
pub struct RedisRateLimitStore {
    backend: Backend,
    coalescer: Arc<Coalescer>,
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

    /// A call of the script for this one check.
    #[cfg(test)]
    fn invocation(&self, key: &str) -> redis::ScriptInvocation<'static> {
        let mut invocation = CHECK.prepare_invoke();
        self.add_to(&mut invocation, key);
        invocation
    }

    /// Adds this check to a call of the script.
    fn add_to(&self, invocation: &mut redis::ScriptInvocation<'static>, key: &str) {
        invocation.key(key);
        let (increment, capacity, cost) = (split(self.increment), split(self.capacity), split(self.cost.into()));
        invocation
            .arg(increment.0)
            .arg(increment.1)
            .arg(capacity.0)
            .arg(capacity.1);
        match self.quota.map(split) {
            Some((hi, lo)) => invocation.arg(hi).arg(lo),
            None => invocation.arg("-").arg("-"),
        };
        invocation.arg(cost.0).arg(cost.1).arg(u8::from(self.impossible));
    }
}

const BILLION: u64 = 1_000_000_000;

// A u64 as two numbers a Lua double holds exactly: units of 10⁹ and the rest.
fn split(value: u64) -> (u64, u64) {
    (value / BILLION, value % BILLION)
}

/// The stored form of a state (see the module docs); the script writes it,
/// tests write it to set up a state.
#[cfg(test)]
fn encode_state(state: &KeyState) -> String {
    let (tat_hi, tat_lo) = split(state.tat_nanos);
    let (used_hi, used_lo) = split(state.used);
    format!("{tat_hi} {tat_lo} {} {used_hi} {used_lo}", state.day)
}

/// Parses [`encode_state`]'s output.
fn decode_state(text: &str) -> Option<KeyState> {
    let mut numbers = text.split(' ').map(|part| part.parse::<u64>().ok());
    let mut next = || numbers.next().flatten();
    let (tat_hi, tat_lo, day, used_hi, used_lo) = (next()?, next()?, next()?, next()?, next()?);
    let join = |hi: u64, lo: u64| hi.checked_mul(BILLION)?.checked_add(lo);
    Some(KeyState {
        tat_nanos: join(tat_hi, tat_lo)?,
        day: u32::try_from(day).ok()?,
        used: join(used_hi, used_lo)?,
    })
}

/// The script's answer for one check: the state before (if any), the
/// server's time, the verdict.
type ScriptReply = (Option<String>, u64, u64, i64);

impl RedisRateLimitStore {
    pub(crate) fn new(backend: Backend, coalescer: Arc<Coalescer>) -> RedisRateLimitStore {
        RedisRateLimitStore { backend, coalescer }
    }

    /// The Redis key holding `key`'s state.
    pub fn state_key(&self, key: &str) -> String {
        self.backend.key("rl", key, "")
    }
}

async fn check_once(backend: &Backend, state_key: &str, limits: Limits, cost: u32) -> Result<Decision, StoreError> {
    let mut invocation = CHECK.prepare_invoke();
    ScriptArgs::new(&limits, cost).add_to(&mut invocation, state_key);
    let replies: Vec<ScriptReply> = invocation
        .invoke_async(&mut backend.connection())
        .await
        .map_err(backend_error)?;
    match replies.as_slice() {
        [reply] => decide(reply, &limits, cost),
        _ => Err(StoreError::Corrupt(format!(
            "{} rate-limit replies for one check",
            replies.len()
        ))),
    }
}

/// Checks a batch in one script call (within the operation timeout) and
/// answers each check.
pub(crate) async fn send_batch(backend: &Backend, batch: Vec<Waiting>) {
    let mut invocation = CHECK.prepare_invoke();
    for waiting in &batch {
        ScriptArgs::new(&waiting.limits, waiting.cost).add_to(&mut invocation, &waiting.state_key);
    }
    let sent = backend
        .run("check_batch", async {
            let replies: Vec<ScriptReply> = invocation
                .invoke_async(&mut backend.connection())
                .await
                .map_err(backend_error)?;
            if replies.len() == batch.len() {
                Ok(replies)
            } else {
                Err(StoreError::Corrupt(format!(
                    "{} rate-limit replies for {} checks",
                    replies.len(),
                    batch.len()
                )))
            }
        })
        .await;
    match sent {
        Ok(replies) => {
            for (waiting, reply) in batch.into_iter().zip(&replies) {
                let decision = decide(reply, &waiting.limits, waiting.cost);
                waiting.answer(decision);
            }
        }
        Err(error) => batch
            .into_iter()
            .for_each(|waiting| waiting.answer(Err(copy_error(&error)))),
    }
}

// Replays the script's verdict through the reference to get every figure.
fn decide(reply: &ScriptReply, limits: &Limits, cost: u32) -> Result<Decision, StoreError> {
    let (stored, secs, micros, admitted) = reply;
    let corrupt = |what: &str| StoreError::Corrupt(format!("rate-limit state: {what}"));
    let mut state = match stored {
        Some(text) => decode_state(text).ok_or_else(|| corrupt(text))?,
        None => KeyState::default(),
    };
    let now_nanos = secs
        .checked_mul(BILLION)
        .and_then(|nanos| nanos.checked_add(micros.checked_mul(1_000)?))
        .ok_or_else(|| corrupt("server time"))?;
    let decision = state.check(limits, now_nanos, cost);
    if decision.is_allowed() != (*admitted == 1) {
        return Err(corrupt("the script and the reference disagree"));
    }
    Ok(decision)
}

impl RateLimitStore for RedisRateLimitStore {
    fn check(&self, key: &str, limits: &Limits, cost: u32) -> StoreFuture<Decision> {
        // The state key is named here, so the future owns all it needs.
        let (backend, state_key, limits) = (self.backend.clone(), self.state_key(key), *limits);
        if backend.is_cluster() {
            return MaybeReady::boxed(async move {
                backend
                    .run("check", check_once(&backend, &state_key, limits, cost))
                    .await
            });
        }
        let coalescer = self.coalescer.clone();
        MaybeReady::boxed(async move {
            let queued = coalescer.check(backend.clone(), state_key, limits, cost);
            backend.run("check", queued).await
        })
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
    fn states_round_trip_through_their_stored_form() {
        for state in [
            KeyState::default(),
            KeyState {
                tat_nanos: 1_700_000_000_123_456_789,
                day: 19_675,
                used: 999,
            },
            KeyState {
                tat_nanos: u64::MAX,
                day: u32::MAX,
                used: u64::MAX,
            },
        ] {
            assert_eq!(decode_state(&encode_state(&state)), Some(state));
        }
        let state = KeyState {
            tat_nanos: 1_500_000_000,
            day: 3,
            used: 7,
        };
        assert_eq!(encode_state(&state), "1 500000000 3 0 7");
        assert_eq!(decode_state("1 2 3 4"), None);
        assert_eq!(decode_state("18446744074 0 0 0 0"), None, "beyond u64");
    }

    #[test]
    fn decisions_come_from_the_reference_and_must_agree() {
        let limits = Limits::per_second(10);
        let decision = decide(&(None, 1_700_000_000, 250_000, 1), &limits, 1).unwrap();
        assert!(decision.is_allowed());
        assert_eq!(decision.per_second.remaining, 9);
        let disagreeing = (None, 1_700_000_000, 0, 0);
        assert!(matches!(decide(&disagreeing, &limits, 1), Err(StoreError::Corrupt(_))));
        let garbage = (Some("1 2 x".to_owned()), 1, 0, 1);
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

    /// The script against the reference, from arbitrary stored states
    /// (a TAT far ahead, yesterday's or tomorrow's count, counts near the
    /// quota, values near u64::MAX): same verdict, same state written, nothing
    /// written on refusal, a TTL on every written key.
    #[tokio::test]
    async fn the_script_matches_the_reference_from_any_state() {
        let Some(stores) = crate::testing::TestRedis::connect("script_matches_reference").await else {
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
        let now = server_secs * BILLION;
        let today = now / tollgate_core::rate_limit::NANOS_PER_DAY;
        let (mut admitted, mut refused) = (0, 0);
        for case in 0..400 {
            let limits = random_limits(&mut rng);
            let cost = rng.pick(&[0, 1, 2, 5, limits.burst(), limits.burst().saturating_add(1)]);
            let key = store.state_key(&format!("case{case}"));
            let fresh = rng.below(4) == 0;
            let tats = [
                0,
                now - 5 * BILLION,
                now + rng.below(2 * BILLION),
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
                redis::cmd("SET")
                    .arg(&key)
                    .arg(encode_state(&before))
                    .query_async::<()>(&mut connection)
                    .await
                    .unwrap();
            }
            let before = if fresh { KeyState::default() } else { before };
            let mut replies: Vec<ScriptReply> = ScriptArgs::new(&limits, cost)
                .invocation(&key)
                .invoke_async(&mut connection)
                .await
                .unwrap();
            assert_eq!(replies.len(), 1);
            let reply = replies.remove(0);
            let context = format!("seed {seed} case {case}: {limits:?} cost {cost} from {before:?}");
            // The verdicts agree (decide() refuses a disagreement) ...
            let decision = decide(&reply, &limits, cost).unwrap_or_else(|error| panic!("{context}: {error}"));
            // ... and so do the states left behind.
            let script_now = reply.1 * BILLION + reply.2 * 1_000;
            let mut expected = before;
            expected.check(&limits, script_now, cost);
            let stored: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut connection).await.unwrap();
            let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut connection).await.unwrap();
            if decision.is_allowed() && cost > 0 {
                admitted += 1;
                let stored = decode_state(&stored.expect("a written state")).expect("a valid state");
                assert_eq!(stored.tat_nanos, expected.tat_nanos, "tat, {context}");
                if limits.daily_quota().is_some() {
                    assert_eq!(
                        (stored.day, stored.used),
                        (expected.day, expected.used),
                        "count, {context}"
                    );
                }
                assert!(ttl > 0 || ttl == -1, "a written key expires (PTTL {ttl}), {context}");
            } else {
                refused += u32::from(!decision.is_allowed());
                let unchanged = (!fresh).then(|| encode_state(&before));
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
        let Some(stores) = crate::testing::TestRedis::connect("keys_expire_once_idle").await else {
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
        assert!((200..=501).contains(&ttl), "kept about 500 ms: {ttl}");
        assert!(store.check("slow", &slow, 1).await.unwrap().is_allowed());
        assert!(!store.check("slow", &slow, 1).await.unwrap().is_allowed());
        let ttl = pttl(store.state_key("slow")).await;
        assert!((600..=1_001).contains(&ttl), "kept about 1 s: {ttl}");
        // Under a daily quota the count is kept until 00:00 UTC.
        let daily = Limits::per_second(1_000).with_daily_quota(Some(10));
        assert!(store.check("daily", &daily, 1).await.unwrap().is_allowed());
        let (secs, _): (u64, u64) = redis::cmd("TIME").query_async(&mut connection.clone()).await.unwrap();
        let until_midnight_ms = (86_400 - secs % 86_400) as i64 * 1_000;
        let ttl = pttl(store.state_key("daily")).await;
        // TIME was read after the check: up to a second of it may have passed.
        assert!(
            ttl > until_midnight_ms - 2_000 && ttl <= until_midnight_ms + 1_001,
            "{ttl} vs {until_midnight_ms}"
        );
    }
}
