//! A single node's rate limits in memory, with the daily quota counts
//! written behind to the database so a restart does not hand out a fresh
//! daily quota.
//!
//! Checks never wait for the database: each runs [`KeyState::check`] (the
//! reference semantics every store follows) under its key's map lock. A
//! key whose daily count changed is marked, and a flusher writes every
//! marked key's count once a second and at shutdown. The bound: a crash
//! (`kill -9`) forgets at most the last second of admitted requests' daily
//! counts; a graceful stop (SIGTERM) forgets none. The per-second burst is
//! not persisted: it refills within a second anyway.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use dashmap::DashMap;
use sqlx::Row;
use tollgate_core::rate_limit::{Decision, KeyState, Limits, RateLimitStore};
use tollgate_core::{unix_nanos, MaybeReady, SharedClock, StoreFuture};

use super::{Database, DbError};

const NANOS_PER_DAY: u64 = 86_400 * 1_000_000_000;

/// How often marked counts are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// In-memory rate limits whose daily counts survive a restart.
#[derive(Clone)]
pub struct PersistedQuotaStore {
    states: Arc<DashMap<String, KeyState>>,
    dirty: Arc<Mutex<HashSet<String>>>,
    clock: SharedClock,
    db: Database,
}

impl PersistedQuotaStore {
    /// Loads today's counts from `db`.
    pub async fn load(db: Database, clock: SharedClock) -> Result<PersistedQuotaStore, DbError> {
        let today = (unix_nanos(clock.now()) / NANOS_PER_DAY) as i64;
        let rows = db
            .run(
                sqlx::query("SELECT rate_key, day, used FROM api_daily_quota WHERE day = $1")
                    .bind(today)
                    .fetch_all(db.pool()),
            )
            .await?;
        let states = DashMap::new();
        for row in rows {
            let key: String = row.try_get("rate_key")?;
            let day: i64 = row.try_get("day")?;
            let used: i64 = row.try_get("used")?;
            states.insert(
                key,
                KeyState {
                    tat_nanos: 0,
                    day: day as u32,
                    used: used as u64,
                },
            );
        }
        Ok(PersistedQuotaStore {
            states: Arc::new(states),
            dirty: Arc::default(),
            clock,
            db,
        })
    }

    /// Writes every changed count (and forgets earlier days' rows).
    pub async fn flush(&self) -> Result<usize, DbError> {
        let keys: Vec<String> = std::mem::take(&mut *self.dirty.lock().unwrap_or_else(PoisonError::into_inner))
            .into_iter()
            .collect();
        let now = unix_nanos(self.clock.now());
        let counts: Vec<(String, KeyState)> = keys
            .iter()
            .filter_map(|key| self.states.get(key).map(|state| (key.clone(), *state)))
            .collect();
        // Idle keys (burst full, nothing counted today) are forgotten here.
        self.states.retain(|_, state| !state.is_idle_at(now));
        if counts.is_empty() {
            return Ok(0);
        }
        let written = self
            .db
            .run(async {
                let mut tx = self.db.pool().begin().await?;
                for (key, state) in &counts {
                    sqlx::query(
                        "INSERT INTO api_daily_quota (rate_key, day, used) VALUES ($1, $2, $3) \
                         ON CONFLICT (rate_key) DO UPDATE SET day = excluded.day, used = excluded.used",
                    )
                    .bind(key.clone())
                    .bind(i64::from(state.day))
                    .bind(state.used as i64)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query("DELETE FROM api_daily_quota WHERE day < $1")
                    .bind((now / NANOS_PER_DAY) as i64)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await
            })
            .await;
        if let Err(error) = written {
            // Marked again, so the next flush retries them.
            self.dirty.lock().unwrap_or_else(PoisonError::into_inner).extend(keys);
            return Err(error);
        }
        Ok(counts.len())
    }

    /// Flushes every [`FLUSH_INTERVAL`] until the process ends.
    pub fn spawn_flusher(&self) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(error) = store.flush().await {
                    tracing::warn!(%error, "daily quota counts not written; retrying");
                }
            }
        })
    }
}

impl RateLimitStore for PersistedQuotaStore {
    fn check(&self, key: &str, limits: &Limits, cost: u32) -> StoreFuture<Decision> {
        let now = unix_nanos(self.clock.approximate_now());
        let (decision, counted) = {
            let mut state = self.states.entry(key.to_owned()).or_default();
            let before = state.used;
            let decision = state.check(limits, now, cost);
            (decision, state.used != before)
        };
        if counted {
            self.dirty
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key.to_owned());
        }
        MaybeReady::ready(Ok(decision))
    }
}
