//! Recent webhook deliveries in `api_webhook_history` (see [`crate::history`]).

use sqlx::Row;

use super::{Database, DbError};
use crate::history::{DeliveryRecord, PER_ACCOUNT};

/// The history table.
#[derive(Debug, Clone)]
pub struct SqlHistory {
    db: Database,
}

impl SqlHistory {
    /// The history in `db`.
    pub fn new(db: Database) -> SqlHistory {
        SqlHistory { db }
    }

    /// Writes (or updates) one event's record, then drops the account's
    /// records past the newest [`PER_ACCOUNT`], in one transaction.
    pub async fn record(&self, record: &DeliveryRecord) -> Result<(), DbError> {
        self.db
            .run(async {
                let mut tx = self.db.pool().begin().await?;
                sqlx::query(
                    "INSERT INTO api_webhook_history (event_id, account_id, at_unix_ms, event_type, url, outcome, \
                     attempts, response_status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (event_id) DO UPDATE SET at_unix_ms = excluded.at_unix_ms, \
                     outcome = excluded.outcome, attempts = excluded.attempts, \
                     response_status = excluded.response_status",
                )
                .bind(record.event_id.clone())
                .bind(record.account_id.clone())
                .bind(record.at_unix_ms)
                .bind(record.event_type.clone())
                .bind(record.url.clone())
                .bind(record.outcome.clone())
                .bind(record.attempts)
                .bind(record.response_status.map(i64::from))
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "DELETE FROM api_webhook_history WHERE account_id = $1 AND event_id NOT IN \
                     (SELECT event_id FROM api_webhook_history WHERE account_id = $1 \
                      ORDER BY at_unix_ms DESC, event_id DESC LIMIT $2)",
                )
                .bind(record.account_id.clone())
                .bind(PER_ACCOUNT as i64)
                .execute(&mut *tx)
                .await?;
                tx.commit().await
            })
            .await
    }

    /// The account's records, newest first.
    pub async fn recent(&self, account_id: &str) -> Result<Vec<DeliveryRecord>, DbError> {
        let rows = self
            .db
            .run(
                sqlx::query(
                    "SELECT event_id, account_id, at_unix_ms, event_type, url, outcome, attempts, response_status \
                     FROM api_webhook_history WHERE account_id = $1 \
                     ORDER BY at_unix_ms DESC, event_id DESC LIMIT $2",
                )
                .bind(account_id.to_owned())
                .bind(PER_ACCOUNT as i64)
                .fetch_all(self.db.pool()),
            )
            .await?;
        rows.iter()
            .map(|row| {
                let status: Option<i64> = row.try_get("response_status")?;
                Ok(DeliveryRecord {
                    event_id: row.try_get("event_id")?,
                    account_id: row.try_get("account_id")?,
                    at_unix_ms: row.try_get("at_unix_ms")?,
                    event_type: row.try_get("event_type")?,
                    url: row.try_get("url")?,
                    outcome: row.try_get("outcome")?,
                    attempts: row.try_get("attempts")?,
                    response_status: status.and_then(|status| u16::try_from(status).ok()),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(DbError::Sql)
    }
}
