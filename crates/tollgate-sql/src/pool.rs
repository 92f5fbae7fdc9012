//! The database behind the stores, SQLite or PostgreSQL, and what differs
//! between the two: how a write transaction begins, how an account is
//! locked, how a change is announced.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};
use tollgate_core::changes::Change;
use tollgate_core::StoreError;

/// The channel changes are announced on (PostgreSQL `NOTIFY`).
pub const CHANGES_CHANNEL: &str = "tollgate_changes";

/// Which database a [`SqlStores`](crate::SqlStores) is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Pool {
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Pool::Sqlite(pool) => pool.is_closed(),
            Pool::Postgres(pool) => pool.is_closed(),
        }
    }

    pub(crate) async fn close(&self) {
        match self {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

/// Runs the same code on whichever pool it is: the queries are written
/// once, in SQL both databases accept (`$1` placeholders, `RETURNING`,
/// `ON CONFLICT`), and type-checked for each driver.
macro_rules! on_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            $crate::pool::Pool::Sqlite($p) => $body,
            $crate::pool::Pool::Postgres($p) => $body,
        }
    };
}
pub(crate) use on_pool;

/// What a write transaction needs that the two databases do differently.
pub(crate) trait WritePool {
    type Db: sqlx::Database;

    /// Begins a transaction that writes. On SQLite, `BEGIN IMMEDIATE`: the
    /// write lock is taken at once (waiting up to the busy timeout), so a
    /// transaction that reads then writes never fails to upgrade its lock
    /// with `SQLITE_BUSY`. Writers are serialised, which makes every
    /// count-then-insert atomic.
    async fn begin_write(&self) -> Result<Transaction<'static, Self::Db>, StoreError>;
}

impl WritePool for SqlitePool {
    type Db = Sqlite;

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.begin_with("BEGIN IMMEDIATE").await.map_err(database)
    }
}

impl WritePool for PgPool {
    type Db = Postgres;

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.begin().await.map_err(database)
    }
}

/// Locks and announcements inside a write transaction.
pub(crate) trait WriteTx {
    /// Serialises the transactions that count and add an account's keys.
    /// PostgreSQL: a transaction-scoped advisory lock on the account, held
    /// until commit, so the next one counts what this one wrote. SQLite:
    /// nothing to do, `BEGIN IMMEDIATE` already serialises every writer.
    async fn lock_account(&mut self, account_id: &str) -> Result<(), StoreError>;

    /// Announces a change to every listening instance when the transaction
    /// commits (PostgreSQL `pg_notify`, delivered only on commit). SQLite
    /// has no such channel: a no-op.
    async fn announce(&mut self, change: &Change) -> Result<(), StoreError>;
}

impl WriteTx for Transaction<'static, Sqlite> {
    async fn lock_account(&mut self, _account_id: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn announce(&mut self, _change: &Change) -> Result<(), StoreError> {
        Ok(())
    }
}

impl WriteTx for Transaction<'static, Postgres> {
    async fn lock_account(&mut self, account_id: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('tollgate-account:' || $1, 0))")
            .bind(account_id)
            .execute(&mut **self)
            .await
            .map_err(database)?;
        Ok(())
    }

    async fn announce(&mut self, change: &Change) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGES_CHANNEL)
            .bind(change.encode())
            .execute(&mut **self)
            .await
            .map_err(database)?;
        Ok(())
    }
}

/// A database error as a store error: a unique violation is a
/// [`StoreError::Conflict`], an exhausted pool a [`StoreError::Timeout`].
pub(crate) fn database(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict("the record exists".into()),
        sqlx::Error::PoolTimedOut => StoreError::Timeout,
        _ => StoreError::backend(error),
    }
}

/// A time as stored: nanoseconds since the Unix epoch (negative before it),
/// which `SystemTime` round-trips exactly until the year 2262.
pub(crate) fn to_db(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_nanos()).map_or(i64::MIN, |nanos| -nanos),
    }
}

/// [`to_db`]'s inverse.
pub(crate) fn from_db(nanos: i64) -> SystemTime {
    if nanos >= 0 {
        UNIX_EPOCH + Duration::from_nanos(nanos as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(nanos.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_to_the_nanosecond() {
        for time in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
            UNIX_EPOCH - Duration::new(86_400, 1),
        ] {
            assert_eq!(from_db(to_db(time)), time);
        }
    }
}
