//! Each account's webhook endpoint: where events go and the secret that signs them.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use tollgate_webhook::WebhookSecret;

/// Where an account's events are delivered.
#[derive(Debug, Clone)]
pub struct WebhookEndpoint {
    /// The receiver's URL (already checked by the URL guard).
    pub url: String,
    /// The signing secret (redacted in `Debug`).
    pub secret: WebhookSecret,
    /// The secret a rotation replaced, still signing until its deadline.
    pub previous: Option<PreviousSecret>,
}

/// A replaced signing secret during its grace period: deliveries carry a
/// Standard Webhooks signature by it beside the new one's, so a receiver
/// that has not switched yet keeps verifying.
#[derive(Debug, Clone)]
pub struct PreviousSecret {
    /// The old secret (redacted in `Debug`).
    pub secret: WebhookSecret,
    /// When it stops signing.
    pub until: SystemTime,
}

impl WebhookEndpoint {
    /// An endpoint with one secret.
    pub fn new(url: impl Into<String>, secret: WebhookSecret) -> WebhookEndpoint {
        WebhookEndpoint {
            url: url.into(),
            secret,
            previous: None,
        }
    }

    /// The secrets that sign a delivery at `now`: the current one first,
    /// then the previous one while its grace period lasts.
    pub fn signing_secrets(&self, now: SystemTime) -> Vec<WebhookSecret> {
        let mut secrets = vec![self.secret.clone()];
        if let Some(previous) = self.previous.as_ref().filter(|previous| previous.until > now) {
            secrets.push(previous.secret.clone());
        }
        secrets
    }

    /// This endpoint after a rotation at `now` to `secret`, the current
    /// secret signing for `grace` more. A rotation during a grace period
    /// keeps the older secret and its deadline: that is the one receivers
    /// that have not switched still hold (and a retried rotation cannot
    /// cut them off).
    pub fn rotated(&self, secret: WebhookSecret, now: SystemTime, grace: Duration) -> WebhookEndpoint {
        let previous = match self.previous.as_ref().filter(|previous| previous.until > now) {
            Some(still) => still.clone(),
            None => PreviousSecret {
                secret: self.secret.clone(),
                until: now + grace,
            },
        };
        WebhookEndpoint {
            url: self.url.clone(),
            secret,
            previous: Some(previous),
        }
    }
}

/// Endpoints by account id. Clones share the endpoints.
#[derive(Debug, Clone, Default)]
pub struct WebhookEndpoints {
    by_account: Arc<DashMap<String, WebhookEndpoint>>,
}

impl WebhookEndpoints {
    /// Sets (or replaces) an account's endpoint.
    pub fn set(&self, account_id: &str, endpoint: WebhookEndpoint) {
        self.by_account.insert(account_id.to_owned(), endpoint);
    }

    /// The account's endpoint, if it has one.
    pub fn get(&self, account_id: &str) -> Option<WebhookEndpoint> {
        self.by_account.get(account_id).map(|endpoint| endpoint.clone())
    }
}

/// Where the server keeps webhook endpoints: in memory (in-process tests),
/// or in the database with sealed secrets.
#[derive(Debug, Clone)]
pub enum Webhooks {
    /// In process memory.
    Memory(WebhookEndpoints),
    /// In the database.
    Sql(crate::db::webhooks::SqlWebhooks),
}

impl Webhooks {
    /// Sets (or replaces) an account's endpoint.
    pub async fn set(
        &self,
        account_id: &str,
        endpoint: WebhookEndpoint,
        now: std::time::SystemTime,
    ) -> Result<(), crate::db::DbError> {
        match self {
            Webhooks::Memory(store) => {
                store.set(account_id, endpoint);
                Ok(())
            }
            Webhooks::Sql(store) => store.set(account_id, &endpoint, now).await,
        }
    }

    /// The account's endpoint, if it has one.
    pub async fn get(&self, account_id: &str) -> Result<Option<WebhookEndpoint>, crate::db::DbError> {
        match self {
            Webhooks::Memory(store) => Ok(store.get(account_id)),
            Webhooks::Sql(store) => store.get(account_id).await,
        }
    }
}
