//! [`SqlStores`]: one pool, migrated on connect, and every store on it.

use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tollgate_core::keys::PendingUses;
use tollgate_core::StoreError;

use crate::pool::{database, Backend, Pool};
use crate::{SqlAllowlistStore, SqlConfig, SqlIdempotencyStore, SqlKeyStore, SqlUsageStore};

pub(crate) struct Shared {
    pub(crate) pool: Pool,
    pub(crate) last_use: PendingUses,
    pub(crate) config: SqlConfig,
}

/// Every tollgate store on one SQL database (SQLite or PostgreSQL), over
/// one connection pool. Clones share the pool.
///
/// [`connect`](SqlStores::connect) opens the pool, applies the crate's
/// migrations (see the crate docs for how they stay apart from an
/// application's) and starts a background task that, every
/// [flush interval](SqlConfig::flush_interval), writes the last-used times
/// noted since the last one and deletes expired idempotency entries and
/// usage days past their retention. The
/// task ends when the last clone is dropped; call [`close`](SqlStores::close)
/// on shutdown to write the pending last-used times first.
///
/// # Last-used times
///
/// [`record_last_use`](tollgate_core::keys::KeyStore::record_last_use) only
/// notes the use in memory (the newest per key); the background task writes
/// the noted uses every flush interval in one transaction, so **a key's
/// last-used time is written at most once per interval** (a minute by
/// default), however busy the key. This instance's reads show its noted
/// uses at once; other instances see them after the next flush; a crash
/// loses at most one interval of last-used times and nothing else.
///
/// ```no_run
/// # async fn example() -> Result<(), tollgate_core::StoreError> {
/// use tollgate_sql::SqlStores;
///
/// let stores = SqlStores::connect("sqlite://tollgate.db?mode=rwc").await?;
/// let keys = stores.key_store(); // KeyStore + KeyRegistry
/// let allowlists = stores.allowlist_store();
/// let idempotency = stores.idempotency_store();
/// let usage = stores.usage_store();
/// # let _ = (keys, allowlists, idempotency, usage);
/// stores.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqlStores {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SqlStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStores")
            .field("backend", &self.backend())
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl SqlStores {
    /// Connects to `url` with the default [`SqlConfig`].
    pub async fn connect(url: impl Into<String>) -> Result<SqlStores, StoreError> {
        SqlStores::connect_with(SqlConfig::new(url)).await
    }

    /// Connects, migrates and starts the background flush.
    pub async fn connect_with(config: SqlConfig) -> Result<SqlStores, StoreError> {
        let pool = open(&config).await?;
        crate::migrate::migrate(&pool).await?;
        let shared = Arc::new(Shared {
            pool,
            last_use: PendingUses::default(),
            config,
        });
        tokio::spawn(maintain(Arc::downgrade(&shared), shared.config.flush_interval));
        Ok(SqlStores { shared })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.shared.pool.backend()
    }

    /// The configuration connected with.
    pub fn config(&self) -> &SqlConfig {
        &self.shared.config
    }

    /// The key store: [`KeyStore`](tollgate_core::keys::KeyStore) and
    /// [`KeyRegistry`](tollgate_core::keys::KeyRegistry).
    pub fn key_store(&self) -> SqlKeyStore {
        SqlKeyStore {
            shared: self.shared.clone(),
        }
    }

    /// The account and key IP allowlists.
    pub fn allowlist_store(&self) -> SqlAllowlistStore {
        SqlAllowlistStore {
            shared: self.shared.clone(),
        }
    }

    /// Idempotency claims and stored responses.
    pub fn idempotency_store(&self) -> SqlIdempotencyStore {
        SqlIdempotencyStore {
            shared: self.shared.clone(),
        }
    }

    /// Usage counts per key and day.
    pub fn usage_store(&self) -> SqlUsageStore {
        SqlUsageStore {
            shared: self.shared.clone(),
        }
    }

    /// The SQLite pool, when on SQLite (for diagnostics and tests).
    pub fn sqlite_pool(&self) -> Option<&sqlx::SqlitePool> {
        match &self.shared.pool {
            Pool::Sqlite(pool) => Some(pool),
            Pool::Postgres(_) => None,
        }
    }

    /// The PostgreSQL pool, when on PostgreSQL (for diagnostics and tests).
    pub fn postgres_pool(&self) -> Option<&sqlx::PgPool> {
        match &self.shared.pool {
            Pool::Postgres(pool) => Some(pool),
            Pool::Sqlite(_) => None,
        }
    }

    /// Writes the last-used times noted since the last flush now, returning
    /// how many keys were written (the background task does this every
    /// flush interval).
    pub async fn flush(&self) -> Result<usize, StoreError> {
        crate::last_use::flush(&self.shared.last_use, &self.shared.pool).await
    }

    /// How many last-used times wait for the next flush.
    pub fn pending_last_uses(&self) -> usize {
        self.shared.last_use.len()
    }

    /// Deletes idempotency entries that expired and usage days past the
    /// retention (the background task does this every flush interval),
    /// returning how many rows.
    pub async fn purge_expired(&self) -> Result<u64, StoreError> {
        let entries = crate::idempotency::purge_expired(&self.shared).await?;
        Ok(entries + crate::usage::purge_old(&self.shared).await?)
    }

    /// Writes pending last-used times, then closes the pool.
    pub async fn close(&self) {
        if let Err(error) = self.flush().await {
            tracing::warn!(%error, "could not write the last-used times before closing");
        }
        self.shared.pool.close().await;
    }
}

async fn open(config: &SqlConfig) -> Result<Pool, StoreError> {
    let url = config.url.as_str();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let options = PgConnectOptions::from_str(url).map_err(database)?;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(database)?;
        return Ok(Pool::Postgres(pool));
    }
    let options = if url.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(url).map_err(database)?
    } else {
        SqliteConnectOptions::new().filename(url).create_if_missing(true)
    };
    // An in-memory database lives as long as its one connection.
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let options = options
        .journal_mode(if in_memory {
            SqliteJournalMode::Memory
        } else {
            SqliteJournalMode::Wal
        })
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(config.busy_timeout);
    let mut pool = SqlitePoolOptions::new()
        .max_connections(if in_memory { 1 } else { config.max_connections })
        .acquire_timeout(config.acquire_timeout);
    if in_memory {
        pool = pool.min_connections(1).idle_timeout(None).max_lifetime(None);
    }
    let pool = pool.connect_with(options).await.map_err(database)?;
    Ok(Pool::Sqlite(pool))
}

// Flushes last-used times and purges expired entries every `interval`,
// until the stores are dropped.
async fn maintain(shared: Weak<Shared>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.pool.is_closed() {
            return;
        }
        if let Err(error) = crate::last_use::flush(&shared.last_use, &shared.pool).await {
            tracing::warn!(%error, "could not write last-used times; kept for the next flush");
        }
        if let Err(error) = crate::idempotency::purge_expired(&shared).await {
            tracing::warn!(%error, "could not delete expired idempotency entries");
        }
        if let Err(error) = crate::usage::purge_old(&shared).await {
            tracing::warn!(%error, "could not delete usage past its retention");
        }
    }
}
