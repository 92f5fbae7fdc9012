//! [`SqlUsageStore`]: requests per key and UTC day in `tollgate_usage`.

use std::sync::Arc;

use tollgate_core::usage::{Day, DayUsage, UsageDelta, UsageStore};
use tollgate_core::{MaybeReady, StoreError, StoreFuture};

use crate::pool::{database, on_pool, WritePool};
use crate::stores::Shared;

const ADD: &str = "INSERT INTO tollgate_usage (key_id, day, requests, rate_limited) VALUES ($1, $2, $3, $4) \
    ON CONFLICT (key_id, day) DO UPDATE SET requests = tollgate_usage.requests + excluded.requests, \
    rate_limited = tollgate_usage.rate_limited + excluded.rate_limited";

const DAYS: &str = "SELECT day, requests, rate_limited FROM tollgate_usage \
    WHERE key_id = $1 AND day >= $2 AND day <= $3 ORDER BY day";

/// Usage counts on SQL, one row per key and day. A batch of deltas is one
/// transaction: it is added whole or not at all, and concurrent batches
/// add up (each delta is an upsert that adds to the row). Days older than
/// the [retention](crate::SqlConfig::usage_retention_days) are deleted by
/// the background task. Get one from
/// [`SqlStores::usage_store`](crate::SqlStores::usage_store).
#[derive(Clone)]
pub struct SqlUsageStore {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for SqlUsageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlUsageStore")
            .field("backend", &self.shared.pool.backend())
            .finish_non_exhaustive()
    }
}

// Counts are BIGINT: a u64 beyond i64 (never reached in practice) is capped.
fn to_count(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

fn day_number(day: Day) -> i32 {
    i32::try_from(day.0).unwrap_or(i32::MAX)
}

impl SqlUsageStore {
    async fn add_all(&self, deltas: Vec<UsageDelta>) -> Result<(), StoreError> {
        // A delta of zeros adds no day.
        let deltas: Vec<UsageDelta> = deltas
            .into_iter()
            .filter(|delta| delta.requests > 0 || delta.rate_limited > 0)
            .collect();
        if deltas.is_empty() {
            return Ok(());
        }
        on_pool!(&self.shared.pool, |p| {
            let mut tx = p.begin_write().await?;
            for delta in &deltas {
                sqlx::query(ADD)
                    .bind(&delta.key_id)
                    .bind(day_number(delta.day))
                    .bind(to_count(delta.requests))
                    .bind(to_count(delta.rate_limited))
                    .execute(&mut *tx)
                    .await
                    .map_err(database)?;
            }
            tx.commit().await.map_err(database)
        })
    }

    async fn read(&self, key_id: String, from: Day, to: Day) -> Result<Vec<DayUsage>, StoreError> {
        let rows: Vec<(i32, i64, i64)> = on_pool!(&self.shared.pool, |p| {
            sqlx::query_as(DAYS)
                .bind(key_id)
                .bind(day_number(from))
                .bind(day_number(to))
                .fetch_all(p)
                .await
                .map_err(database)?
        });
        rows.into_iter()
            .map(|(day, requests, rate_limited)| {
                let corrupt = || StoreError::Corrupt("a usage count is negative".into());
                Ok(DayUsage {
                    day: Day(u32::try_from(day).map_err(|_| corrupt())?),
                    requests: u64::try_from(requests).map_err(|_| corrupt())?,
                    rate_limited: u64::try_from(rate_limited).map_err(|_| corrupt())?,
                })
            })
            .collect()
    }
}

// Deletes the days before the retention window (today included) on the
// configured clock.
pub(crate) async fn purge_old(shared: &Shared) -> Result<u64, StoreError> {
    let today = Day::from_unix_secs(tollgate_core::unix_secs(shared.config.clock.now()));
    let first_kept = today
        .0
        .saturating_sub(shared.config.usage_retention_days.saturating_sub(1));
    Ok(on_pool!(&shared.pool, |p| {
        sqlx::query("DELETE FROM tollgate_usage WHERE day < $1")
            .bind(day_number(Day(first_kept)))
            .execute(p)
            .await
            .map_err(database)?
            .rows_affected()
    }))
}

impl UsageStore for SqlUsageStore {
    fn add(&self, deltas: Vec<UsageDelta>) -> StoreFuture<()> {
        let store = self.clone();
        MaybeReady::boxed(async move { store.add_all(deltas).await })
    }

    fn days(&self, key_id: &str, from: Day, to: Day) -> StoreFuture<Vec<DayUsage>> {
        let (store, key_id) = (self.clone(), key_id.to_owned());
        MaybeReady::boxed(async move { store.read(key_id, from, to).await })
    }
}
