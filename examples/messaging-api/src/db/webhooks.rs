//! Webhook endpoints in the database, their signing secrets sealed
//! ([`SecretSealer`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::Row;
use tollgate_core::unix_secs;
use tollgate_webhook::WebhookSecret;

use super::{Database, DbError};
use crate::sealed::SecretSealer;
use crate::webhooks::{PreviousSecret, WebhookEndpoint};

/// Endpoints in `api_webhook_endpoints`.
#[derive(Debug, Clone)]
pub struct SqlWebhooks {
    db: Database,
    sealer: SecretSealer,
}

impl SqlWebhooks {
    /// Endpoints in `db`, secrets sealed by `sealer`.
    pub fn new(db: Database, sealer: SecretSealer) -> SqlWebhooks {
        SqlWebhooks { db, sealer }
    }

    /// Sets (or replaces) an account's endpoint.
    pub async fn set(&self, account_id: &str, endpoint: &WebhookEndpoint, now: SystemTime) -> Result<(), DbError> {
        let sealed = self.sealer.seal(endpoint.secret.expose(), account_id);
        let previous = endpoint.previous.as_ref();
        let previous_sealed = previous.map(|previous| self.sealer.seal(previous.secret.expose(), account_id));
        let previous_until = previous.map(|previous| unix_secs(previous.until) as i64);
        self.db
            .run(
                sqlx::query(
                    "INSERT INTO api_webhook_endpoints (account_id, url, sealed_secret, updated_unix, \
                     previous_sealed_secret, previous_until_unix) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (account_id) DO UPDATE \
                     SET url = excluded.url, sealed_secret = excluded.sealed_secret, updated_unix = excluded.updated_unix, \
                     previous_sealed_secret = excluded.previous_sealed_secret, \
                     previous_until_unix = excluded.previous_until_unix",
                )
                .bind(account_id.to_owned())
                .bind(endpoint.url.clone())
                .bind(sealed)
                .bind(unix_secs(now) as i64)
                .bind(previous_sealed)
                .bind(previous_until)
                .execute(self.db.pool()),
            )
            .await
            .map(drop)
    }

    /// The account's endpoint, if it has one. A secret that does not open
    /// (sealed under another secrets key) is an error, never a silent miss.
    pub async fn get(&self, account_id: &str) -> Result<Option<WebhookEndpoint>, DbError> {
        let row = self
            .db
            .run(
                sqlx::query(
                    "SELECT url, sealed_secret, previous_sealed_secret, previous_until_unix \
                     FROM api_webhook_endpoints WHERE account_id = $1",
                )
                .bind(account_id.to_owned())
                .fetch_optional(self.db.pool()),
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let url: String = row.try_get("url")?;
        let sealed: String = row.try_get("sealed_secret")?;
        let open = |sealed: &str| {
            self.sealer
                .open(sealed, account_id)
                .map(WebhookSecret::new)
                .ok_or_else(|| {
                    DbError::Sql(sqlx::Error::Protocol(format!(
                        "the webhook secret of {account_id} does not open with this secrets key"
                    )))
                })
        };
        let secret = open(&sealed)?;
        let previous_sealed: Option<String> = row.try_get("previous_sealed_secret")?;
        let previous_until: Option<i64> = row.try_get("previous_until_unix")?;
        let previous = match (previous_sealed, previous_until) {
            (Some(sealed), Some(until)) => Some(PreviousSecret {
                secret: open(&sealed)?,
                until: UNIX_EPOCH + Duration::from_secs(until.max(0) as u64),
            }),
            _ => None,
        };
        Ok(Some(WebhookEndpoint { url, secret, previous }))
    }
}
