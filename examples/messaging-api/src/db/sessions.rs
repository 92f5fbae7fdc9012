//! Dashboard sessions and their one-time messages in the database (see
//! [`crate::sessions`]): `api_dashboard_sessions`, `api_dashboard_flash`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::Row;
use tollgate_core::unix_secs;

use super::{Database, DbError};
use crate::sealed::SecretSealer;
use crate::sessions::Session;

/// Sessions in the database; flash messages sealed by `sealer`.
#[derive(Debug, Clone)]
pub struct SqlSessions {
    db: Database,
    sealer: SecretSealer,
}

fn secs(time: SystemTime) -> i64 {
    unix_secs(time).min(i64::MAX as u64) as i64
}

fn time(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
}

// What a sealed flash is bound to: this table and this session.
fn flash_context(id_hash: &str) -> String {
    format!("dashboard-flash:{id_hash}")
}

impl SqlSessions {
    /// Sessions in `db`.
    pub fn new(db: Database, sealer: SecretSealer) -> SqlSessions {
        SqlSessions { db, sealer }
    }

    /// Stores a new session under the hash of its id.
    pub async fn insert(&self, id_hash: &str, session: &Session) -> Result<(), DbError> {
        self.db
            .run(
                sqlx::query(
                    "INSERT INTO api_dashboard_sessions (id_hash, account_id, key_id, created_unix, expires_unix, \
                     last_seen_unix) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(id_hash.to_owned())
                .bind(session.account_id.clone())
                .bind(session.key_id.clone())
                .bind(secs(session.created_at))
                .bind(secs(session.expires_at))
                .bind(secs(session.last_seen))
                .execute(self.db.pool()),
            )
            .await
            .map(drop)
    }

    /// The session stored under `id_hash`, if any.
    pub async fn get(&self, id_hash: &str) -> Result<Option<Session>, DbError> {
        let row = self
            .db
            .run(
                sqlx::query(
                    "SELECT account_id, key_id, created_unix, expires_unix, last_seen_unix \
                     FROM api_dashboard_sessions WHERE id_hash = $1",
                )
                .bind(id_hash.to_owned())
                .fetch_optional(self.db.pool()),
            )
            .await?;
        row.map(|row| {
            Ok(Session {
                account_id: row.try_get("account_id")?,
                key_id: row.try_get("key_id")?,
                created_at: time(row.try_get("created_unix")?),
                expires_at: time(row.try_get("expires_unix")?),
                last_seen: time(row.try_get("last_seen_unix")?),
            })
        })
        .transpose()
        .map_err(DbError::Sql)
    }

    /// Notes that the session was used at `now`.
    pub async fn touch(&self, id_hash: &str, now: SystemTime) -> Result<(), DbError> {
        self.db
            .run(
                sqlx::query("UPDATE api_dashboard_sessions SET last_seen_unix = $1 WHERE id_hash = $2")
                    .bind(secs(now))
                    .bind(id_hash.to_owned())
                    .execute(self.db.pool()),
            )
            .await
            .map(drop)
    }

    /// Ends a session, with its flash.
    pub async fn remove(&self, id_hash: &str) -> Result<(), DbError> {
        self.db
            .run(async {
                let mut tx = self.db.pool().begin().await?;
                for statement in [
                    "DELETE FROM api_dashboard_flash WHERE session_hash = $1",
                    "DELETE FROM api_dashboard_sessions WHERE id_hash = $1",
                ] {
                    sqlx::query(statement)
                        .bind(id_hash.to_owned())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await
            })
            .await
    }

    /// Deletes sessions past their expiry or idle since `idle_since`, and
    /// flashes older than `flash_since` (never read); returns the sessions deleted.
    pub async fn prune(
        &self,
        now: SystemTime,
        idle_since: SystemTime,
        flash_since: SystemTime,
    ) -> Result<u64, DbError> {
        self.db
            .run(async {
                let mut tx = self.db.pool().begin().await?;
                let deleted =
                    sqlx::query("DELETE FROM api_dashboard_sessions WHERE expires_unix <= $1 OR last_seen_unix <= $2")
                        .bind(secs(now))
                        .bind(secs(idle_since))
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                sqlx::query(
                    "DELETE FROM api_dashboard_flash WHERE created_unix <= $1 OR session_hash NOT IN \
                     (SELECT id_hash FROM api_dashboard_sessions)",
                )
                .bind(secs(flash_since))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(deleted)
            })
            .await
    }

    /// Leaves `text` for the session's next page, sealed (it may be a key).
    pub async fn put_flash(&self, id_hash: &str, text: &str, now: SystemTime) -> Result<(), DbError> {
        let sealed = self.sealer.seal(text, &flash_context(id_hash));
        self.db
            .run(
                sqlx::query(
                    "INSERT INTO api_dashboard_flash (session_hash, sealed, created_unix) VALUES ($1, $2, $3) \
                     ON CONFLICT (session_hash) DO UPDATE SET sealed = excluded.sealed, \
                     created_unix = excluded.created_unix",
                )
                .bind(id_hash.to_owned())
                .bind(sealed)
                .bind(secs(now))
                .execute(self.db.pool()),
            )
            .await
            .map(drop)
    }

    /// Takes the session's flash: deleted by the same statement that reads
    /// it, so two requests racing never both show it.
    pub async fn take_flash(&self, id_hash: &str) -> Result<Option<String>, DbError> {
        let sealed: Option<String> = self
            .db
            .run(
                sqlx::query_scalar("DELETE FROM api_dashboard_flash WHERE session_hash = $1 RETURNING sealed")
                    .bind(id_hash.to_owned())
                    .fetch_optional(self.db.pool()),
            )
            .await?;
        Ok(sealed.and_then(|sealed| self.sealer.open(&sealed, &flash_context(id_hash))))
    }
}
