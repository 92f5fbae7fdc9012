//! Each account's webhook endpoint: where events go and the secret that signs them.

use std::sync::Arc;

use dashmap::DashMap;
use tollgate_webhook::WebhookSecret;

/// Where an account's events are delivered.
#[derive(Debug, Clone)]
pub struct WebhookEndpoint {
    /// The receiver's URL (already checked by the URL guard).
    pub url: String,
    /// The signing secret (redacted in `Debug`).
    pub secret: WebhookSecret,
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
