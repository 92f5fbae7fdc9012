//! Messages in the database, with retention by age and count.

use std::time::{Duration, SystemTime};

use sqlx::Row;
use tollgate_core::{unix_secs, Environment};

use super::{Database, DbError};
use crate::messages::{Message, Status, Text};

/// Messages in `api_messages`.
#[derive(Debug, Clone)]
pub struct SqlMessages {
    db: Database,
}

impl SqlMessages {
    /// Messages in `db`.
    pub fn new(db: Database) -> SqlMessages {
        SqlMessages { db }
    }

    /// Stores a message; durable when this returns.
    pub async fn insert(&self, message: &Message, now: SystemTime) -> Result<(), DbError> {
        self.db
            .run(
                sqlx::query(
                    "INSERT INTO api_messages \
                     (id, account_id, sandbox, status, to_number, kind, body, created_at, created_unix) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(message.id.clone())
                .bind(message.account_id.clone())
                .bind(i64::from(message.sandbox))
                .bind(message.status.as_str())
                .bind(message.to.clone())
                .bind(message.kind.clone())
                .bind(message.text.as_ref().map(|text| text.body.clone()))
                .bind(message.created_at.clone())
                .bind(unix_secs(now) as i64)
                .execute(self.db.pool()),
            )
            .await
            .map(drop)
    }

    /// The message, if `account_id` owns it and it lives in `environment`.
    pub async fn get(&self, id: &str, account_id: &str, environment: Environment) -> Result<Option<Message>, DbError> {
        let sandbox = i64::from(environment == Environment::Sandbox);
        let row = self
            .db
            .run(
                sqlx::query(
                    "SELECT id, account_id, sandbox, status, to_number, kind, body, created_at \
                     FROM api_messages WHERE id = $1 AND account_id = $2 AND sandbox = $3",
                )
                .bind(id.to_owned())
                .bind(account_id.to_owned())
                .bind(sandbox)
                .fetch_optional(self.db.pool()),
            )
            .await?;
        row.map(|row| {
            let status: String = row.try_get("status")?;
            let body: Option<String> = row.try_get("body")?;
            Ok(Message {
                id: row.try_get("id")?,
                status: if status == "sent" { Status::Sent } else { Status::Queued },
                to: row.try_get("to_number")?,
                kind: row.try_get("kind")?,
                text: body.map(|body| Text { body }),
                sandbox: row.try_get::<i64, _>("sandbox")? != 0,
                account_id: row.try_get("account_id")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .transpose()
        .map_err(DbError::Sql)
    }

    /// Sets a message's status.
    pub async fn set_status(&self, id: &str, status: Status) -> Result<(), DbError> {
        self.db
            .run(
                sqlx::query("UPDATE api_messages SET status = $1 WHERE id = $2")
                    .bind(status.as_str())
                    .bind(id.to_owned())
                    .execute(self.db.pool()),
            )
            .await
            .map(drop)
    }

    /// How many messages are stored.
    pub async fn count(&self) -> Result<u64, DbError> {
        let count: i64 = self
            .db
            .run(sqlx::query_scalar("SELECT COUNT(*) FROM api_messages").fetch_one(self.db.pool()))
            .await?;
        Ok(count as u64)
    }

    /// Deletes messages older than `max_age` before `now`, then the oldest
    /// beyond the newest `max_count`. Returns how many were deleted.
    pub async fn prune(&self, now: SystemTime, max_age: Duration, max_count: u64) -> Result<u64, DbError> {
        let cutoff = unix_secs(now).saturating_sub(max_age.as_secs()) as i64;
        let mut deleted = self
            .db
            .run(
                sqlx::query("DELETE FROM api_messages WHERE created_unix < $1")
                    .bind(cutoff)
                    .execute(self.db.pool()),
            )
            .await?
            .rows_affected();
        // The creation second of the newest message past the limit: every
        // message of that second or older goes (a few more than the excess
        // at most, never fewer).
        let oldest_kept: Option<i64> = self
            .db
            .run(
                sqlx::query_scalar(
                    "SELECT created_unix FROM api_messages ORDER BY created_unix DESC LIMIT 1 OFFSET $1",
                )
                .bind(max_count.min(i64::MAX as u64) as i64)
                .fetch_optional(self.db.pool()),
            )
            .await?;
        if let Some(second) = oldest_kept {
            deleted += self
                .db
                .run(
                    sqlx::query("DELETE FROM api_messages WHERE created_unix <= $1")
                        .bind(second)
                        .execute(self.db.pool()),
                )
                .await?
                .rows_affected();
        }
        Ok(deleted)
    }
}
