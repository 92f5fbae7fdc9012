//! Pending webhook deliveries: an outbox in the database that every
//! instance works through.
//!
//! An event is written here before `POST /v1/messages` answers. An
//! instance *claims* a due event by setting a lease (owner, expiry) in one
//! conditional `UPDATE`, so two instances never attempt the same event at
//! once; it deletes the event once the receiver answers 2xx, or sets the
//! next attempt time and clears the lease. An instance that stops mid-attempt
//! leaves a lease that runs out, and any instance retries the event. So each
//! event is delivered at least once (receivers deduplicate on its
//! `webhook-id`), and a message's events go out in order: an event is not
//! due while an earlier one of the same message is pending.

use sqlx::Row;

use super::{Database, DbError};

/// An event to write to the outbox.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// `evt_…`, sent as `webhook-id`.
    pub event_id: String,
    /// The account whose endpoint secret signs it.
    pub account_id: String,
    /// The message it is about (events of one message go in `seq` order).
    pub message_id: String,
    /// Its place among the message's events.
    pub seq: i64,
    /// The receiver.
    pub url: String,
    /// The exact JSON that is signed and sent.
    pub body: String,
}

/// A claimed event.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// `evt_…`.
    pub event_id: String,
    /// The account whose endpoint secret signs it.
    pub account_id: String,
    /// The receiver.
    pub url: String,
    /// The JSON body.
    pub body: String,
    /// Attempts so far, this one included.
    pub attempts: i64,
}

/// The outbox in `api_webhook_deliveries`.
#[derive(Debug, Clone)]
pub struct SqlDeliveries {
    db: Database,
}

impl SqlDeliveries {
    /// The outbox in `db`.
    pub fn new(db: Database) -> SqlDeliveries {
        SqlDeliveries { db }
    }

    /// Writes events, due at once, in one transaction.
    pub async fn enqueue(&self, events: &[Outgoing], now_ms: i64) -> Result<(), DbError> {
        self.db
            .run(async {
                let mut tx = self.db.pool().begin().await?;
                for event in events {
                    sqlx::query(
                        "INSERT INTO api_webhook_deliveries (event_id, account_id, message_id, seq, url, body, \
                         attempts, next_attempt_unix_ms, lease_owner, lease_until_unix_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, 0, $7, NULL, 0)",
                    )
                    .bind(event.event_id.clone())
                    .bind(event.account_id.clone())
                    .bind(event.message_id.clone())
                    .bind(event.seq)
                    .bind(event.url.clone())
                    .bind(event.body.clone())
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await
            })
            .await
    }

    /// Claims one due event for `owner` until `now_ms + lease_ms`, if any.
    pub async fn claim(&self, owner: &str, now_ms: i64, lease_ms: i64) -> Result<Option<Claimed>, DbError> {
        // The inner SELECT picks a candidate; the outer WHERE re-checks the
        // lease under the row's write lock, so of two instances picking the
        // same event only one gets a row back.
        let row = self
            .db
            .run(
                sqlx::query(
                    "UPDATE api_webhook_deliveries \
                     SET lease_owner = $1, lease_until_unix_ms = $2, attempts = attempts + 1 \
                     WHERE event_id = ( \
                         SELECT d.event_id FROM api_webhook_deliveries d \
                         WHERE d.next_attempt_unix_ms <= $3 AND d.lease_until_unix_ms <= $3 \
                         AND NOT EXISTS (SELECT 1 FROM api_webhook_deliveries e \
                                         WHERE e.message_id = d.message_id AND e.seq < d.seq) \
                         ORDER BY d.next_attempt_unix_ms LIMIT 1) \
                     AND lease_until_unix_ms <= $3 \
                     RETURNING event_id, account_id, url, body, attempts",
                )
                .bind(owner.to_owned())
                .bind(now_ms + lease_ms)
                .bind(now_ms)
                .fetch_optional(self.db.pool()),
            )
            .await?;
        row.map(|row| {
            Ok(Claimed {
                event_id: row.try_get("event_id")?,
                account_id: row.try_get("account_id")?,
                url: row.try_get("url")?,
                body: row.try_get("body")?,
                attempts: row.try_get("attempts")?,
            })
        })
        .transpose()
        .map_err(DbError::Sql)
    }

    /// Removes an event `owner` delivered (or gave up on).
    pub async fn finish(&self, event_id: &str, owner: &str) -> Result<(), DbError> {
        self.db
            .run(
                sqlx::query("DELETE FROM api_webhook_deliveries WHERE event_id = $1 AND lease_owner = $2")
                    .bind(event_id.to_owned())
                    .bind(owner.to_owned())
                    .execute(self.db.pool()),
            )
            .await
            .map(drop)
    }

    /// Releases an event `owner` failed to deliver, due again at `next_ms`.
    pub async fn retry_at(&self, event_id: &str, owner: &str, next_ms: i64) -> Result<(), DbError> {
        self.db
            .run(
                sqlx::query(
                    "UPDATE api_webhook_deliveries SET lease_owner = NULL, lease_until_unix_ms = 0, \
                     next_attempt_unix_ms = $1 WHERE event_id = $2 AND lease_owner = $3",
                )
                .bind(next_ms)
                .bind(event_id.to_owned())
                .bind(owner.to_owned())
                .execute(self.db.pool()),
            )
            .await
            .map(drop)
    }

    /// How many events are pending.
    pub async fn pending(&self) -> Result<u64, DbError> {
        let count: i64 = self
            .db
            .run(sqlx::query_scalar("SELECT COUNT(*) FROM api_webhook_deliveries").fetch_one(self.db.pool()))
            .await?;
        Ok(count as u64)
    }
}
