//! [`RedisUsageStore`]: usage counts per key and UTC day in Redis, summed
//! across the fleet.
//!
//! # Layout
//!
//! One hash per key and day, `<prefix>usage:{<key id>}:<day>` (the day as
//! days since 1970-01-01), fields `requests` and `rate_limited`. A batch is
//! one pipelined round trip of `HINCRBY`s (so concurrent batches from any
//! number of instances add up exactly) and an `EXPIREAT` per hash, at the
//! end of the day's retention. The key id is the hash tag: every day of one
//! key lives on one cluster slot, and commands of a batch are independent,
//! so a cluster-aware pipeline can route each to its slot.
//!
//! Reading a range is one pipelined round trip of `HMGET`s, one per day,
//! clamped to the days that can still exist (the retention, and at most a
//! day ahead of this instance's clock).

use std::time::SystemTime;

use tollgate_core::usage::{Day, DayUsage, UsageDelta, UsageStore, DEFAULT_USAGE_RETENTION_DAYS};
use tollgate_core::{unix_secs, MaybeReady, StoreFuture};

use crate::backend::{backend_error, Backend};

const SECS_PER_DAY: u64 = 86_400;

/// Usage counts in Redis. Cheap to clone; clones share the connection.
/// Made by [`crate::RedisStores::usage_store`].
#[derive(Debug, Clone)]
pub struct RedisUsageStore {
    backend: Backend,
    retention_days: u32,
}

impl RedisUsageStore {
    pub(crate) fn new(backend: Backend) -> RedisUsageStore {
        RedisUsageStore {
            backend,
            retention_days: DEFAULT_USAGE_RETENTION_DAYS,
        }
    }

    /// How many days a day's counts are kept, that day included (default
    /// [`DEFAULT_USAGE_RETENTION_DAYS`], at least one): each hash expires at
    /// the end of its last day.
    pub fn retention_days(mut self, days: u32) -> Self {
        self.retention_days = days.max(1);
        self
    }

    fn day_key(&self, key_id: &str, day: Day) -> String {
        self.backend.key("usage", key_id, &format!(":{}", day.0))
    }

    // The first second of the day after the last one `day` is kept.
    fn expires_at(&self, day: Day) -> u64 {
        (u64::from(day.0) + u64::from(self.retention_days)) * SECS_PER_DAY
    }
}

// Counts as Redis increments take them (signed 64 bits).
fn increment(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

fn count(value: Option<i64>) -> u64 {
    value.and_then(|value| u64::try_from(value).ok()).unwrap_or(0)
}

impl UsageStore for RedisUsageStore {
    fn add(&self, deltas: Vec<UsageDelta>) -> StoreFuture<()> {
        let mut pipeline = redis::pipe();
        let mut commands = 0;
        for delta in &deltas {
            if delta.requests == 0 && delta.rate_limited == 0 {
                continue;
            }
            let key = self.day_key(&delta.key_id, delta.day);
            for (field, value) in [("requests", delta.requests), ("rate_limited", delta.rate_limited)] {
                if value > 0 {
                    pipeline
                        .cmd("HINCRBY")
                        .arg(&key)
                        .arg(field)
                        .arg(increment(value))
                        .ignore();
                }
            }
            pipeline
                .cmd("EXPIREAT")
                .arg(&key)
                .arg(self.expires_at(delta.day))
                .ignore();
            commands += 1;
        }
        if commands == 0 {
            return MaybeReady::ready(Ok(()));
        }
        let backend = self.backend.clone();
        MaybeReady::boxed(async move {
            backend
                .run("add", async {
                    pipeline
                        .query_async::<()>(&mut backend.connection())
                        .await
                        .map_err(backend_error)
                })
                .await
        })
    }

    fn days(&self, key_id: &str, from: Day, to: Day) -> StoreFuture<Vec<DayUsage>> {
        let today = Day::from_unix_secs(unix_secs(SystemTime::now()));
        let from = from.max(Day(today.0.saturating_sub(self.retention_days)));
        let to = to.min(Day(today.0.saturating_add(1)));
        if from > to {
            return MaybeReady::ready(Ok(Vec::new()));
        }
        let days: Vec<Day> = (from.0..=to.0).map(Day).collect();
        let mut pipeline = redis::pipe();
        for day in &days {
            pipeline
                .cmd("HMGET")
                .arg(self.day_key(key_id, *day))
                .arg("requests")
                .arg("rate_limited");
        }
        let backend = self.backend.clone();
        MaybeReady::boxed(async move {
            let counts: Vec<(Option<i64>, Option<i64>)> = backend
                .run("days", async {
                    pipeline
                        .query_async(&mut backend.connection())
                        .await
                        .map_err(backend_error)
                })
                .await?;
            Ok(days
                .into_iter()
                .zip(counts)
                .filter(|(_, (requests, rate_limited))| requests.is_some() || rate_limited.is_some())
                .map(|(day, (requests, rate_limited))| DayUsage {
                    day,
                    requests: count(requests),
                    rate_limited: count(rate_limited),
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestRedis;

    #[tokio::test]
    async fn each_day_expires_at_the_end_of_its_retention() {
        let Some(redis) = TestRedis::connect("usage_expiry").await else {
            return;
        };
        let store = redis.usage_store().retention_days(3);
        let now = unix_secs(SystemTime::now());
        let today = Day::from_unix_secs(now);
        let delta = |day: Day| UsageDelta {
            key_id: "key_1".into(),
            day,
            requests: 1,
            rate_limited: 0,
        };
        store.add(vec![delta(today), delta(Day(today.0 - 2))]).await.unwrap();
        let ttl = |day: Day| {
            let key = store.day_key("key_1", day);
            let mut connection = redis.backend().connection();
            async move {
                redis::cmd("TTL")
                    .arg(key)
                    .query_async::<i64>(&mut connection)
                    .await
                    .unwrap()
            }
        };
        let end_of_today = (u64::from(today.0) + 1) * SECS_PER_DAY - now;
        let expected = i64::try_from(end_of_today + 2 * SECS_PER_DAY).unwrap();
        assert!(
            (expected - 2..=expected).contains(&ttl(today).await),
            "kept three days, today included"
        );
        let expected = i64::try_from(end_of_today).unwrap();
        assert!(
            (expected - 2..=expected).contains(&ttl(Day(today.0 - 2)).await),
            "its last day is today"
        );
        // A delta for a day past its retention expires at once.
        store.add(vec![delta(Day(today.0 - 3))]).await.unwrap();
        assert_eq!(store.days("key_1", Day(0), today).await.unwrap().len(), 2);
        assert_eq!(redis.key_count().await, 2);
    }
}
