//! The audit log in `api_audit_log` (see [`crate::audit`]).

use std::time::{Duration, SystemTime};

use sqlx::Row;
use tollgate_core::unix_nanos;

use super::{Database, DbError};
use crate::audit::AuditEntry;

/// Entries in `api_audit_log`.
#[derive(Debug, Clone)]
pub struct SqlAudit {
    db: Database,
}

impl SqlAudit {
    /// The log in `db`.
    pub fn new(db: Database) -> SqlAudit {
        SqlAudit { db }
    }

    /// Writes one entry.
    pub async fn record(&self, entry: &AuditEntry) -> Result<(), DbError> {
        self.db
            .run(
                sqlx::query(
                    "INSERT INTO api_audit_log (id, account_id, at_unix_ms, actor_key_id, client_ip, action, \
                     target_id, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(entry.id.clone())
                .bind(entry.account_id.clone())
                .bind(entry.at_unix_ms.min(i64::MAX as u64) as i64)
                .bind(entry.actor_key_id.clone())
                .bind(entry.client_ip.clone())
                .bind(entry.action.clone())
                .bind(entry.target_id.clone())
                .bind(entry.details.to_string())
                .execute(self.db.pool()),
            )
            .await
            .map(drop)
    }

    /// Up to `limit` of the account's entries with ids below `before`, newest first.
    pub async fn list(&self, account_id: &str, before: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>, DbError> {
        // Every id is below "aud_~": '~' sorts after digits and letters.
        let before = before.unwrap_or("aud_~").to_owned();
        let rows = self
            .db
            .run(
                sqlx::query(
                    "SELECT id, account_id, at_unix_ms, actor_key_id, client_ip, action, target_id, details \
                     FROM api_audit_log WHERE account_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                )
                .bind(account_id.to_owned())
                .bind(before)
                .bind(limit.min(i64::MAX as usize) as i64)
                .fetch_all(self.db.pool()),
            )
            .await?;
        rows.iter()
            .map(|row| {
                let details: String = row.try_get("details")?;
                Ok(AuditEntry {
                    id: row.try_get("id")?,
                    account_id: row.try_get("account_id")?,
                    at_unix_ms: row.try_get::<i64, _>("at_unix_ms")?.max(0) as u64,
                    actor_key_id: row.try_get("actor_key_id")?,
                    client_ip: row.try_get("client_ip")?,
                    action: row.try_get("action")?,
                    target_id: row.try_get("target_id")?,
                    details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(DbError::Sql)
    }

    /// Deletes entries older than `max_age` before `now`; answers how many.
    pub async fn prune(&self, now: SystemTime, max_age: Duration) -> Result<u64, DbError> {
        let max_age_ms = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
        let cutoff_ms = (unix_nanos(now) / 1_000_000)
            .saturating_sub(max_age_ms)
            .min(i64::MAX as u64) as i64;
        self.db
            .run(
                sqlx::query("DELETE FROM api_audit_log WHERE at_unix_ms < $1")
                    .bind(cutoff_ms)
                    .execute(self.db.pool()),
            )
            .await
            .map(|done| done.rows_affected())
    }
}
