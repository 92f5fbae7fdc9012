//! The crate's schema, applied on connect, with a history of its own.
//!
//! sqlx's `Migrator` (0.8) records every migration in one table,
//! `_sqlx_migrations`, whose name cannot be changed, and refuses to run
//! when that table lists a version it does not know. An application that
//! keeps its own sqlx migrations in the same database would then fail on
//! ours, and we on its. So the migrations are embedded with
//! [`sqlx::migrate!`] (files under `migrations/sqlite` and
//! `migrations/postgres`, checksummed at build time) but applied by this
//! runner, which records them in **`tollgate_migrations`**: the
//! application's `_sqlx_migrations` never sees them.
//!
//! Versions already applied are checked against their checksum (an edited
//! migration is an error, not silently skipped). Versions this build does
//! not know are allowed: they were applied by a newer build, whose
//! migrations only add to the schema, so an old and a new instance can
//! share the database during a rolling upgrade.

use sqlx::migrate::Migrator;
use sqlx::Row;

use crate::pool::{database, on_pool, Pool, WritePool};
use crate::StoreError;

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

const HISTORY: &str = "CREATE TABLE IF NOT EXISTS tollgate_migrations (
    version BIGINT PRIMARY KEY NOT NULL,
    description TEXT NOT NULL,
    checksum TEXT NOT NULL
)";

/// Applies every migration not yet applied, in one transaction that holds
/// the write lock (SQLite) or a database-wide advisory lock (PostgreSQL),
/// so instances starting together migrate once.
pub(crate) async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    on_pool!(pool, |p| {
        let migrator = match pool {
            Pool::Sqlite(_) => &SQLITE,
            Pool::Postgres(_) => &POSTGRES,
        };
        let mut tx = p.begin_write().await?;
        if matches!(pool, Pool::Postgres(_)) {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('tollgate-migrations', 0))")
                .execute(&mut *tx)
                .await
                .map_err(database)?;
        }
        sqlx::query(HISTORY).execute(&mut *tx).await.map_err(database)?;
        let applied: Vec<(i64, String)> = sqlx::query("SELECT version, checksum FROM tollgate_migrations")
            .fetch_all(&mut *tx)
            .await
            .map_err(database)?
            .into_iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(database)?;
        for migration in migrator.iter() {
            let checksum = hex(&migration.checksum);
            match applied.iter().find(|(version, _)| *version == migration.version) {
                Some((_, stored)) if *stored == checksum => continue,
                Some(_) => {
                    return Err(StoreError::Corrupt(format!(
                        "migration {} was changed after it was applied",
                        migration.version
                    )))
                }
                None => {}
            }
            sqlx::raw_sql(&migration.sql)
                .execute(&mut *tx)
                .await
                .map_err(database)?;
            sqlx::query("INSERT INTO tollgate_migrations (version, description, checksum) VALUES ($1, $2, $3)")
                .bind(migration.version)
                .bind(&*migration.description)
                .bind(checksum)
                .execute(&mut *tx)
                .await
                .map_err(database)?;
        }
        tx.commit().await.map_err(database)
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
