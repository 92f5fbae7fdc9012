//! Everything the handlers share: configuration, stores, the key manager,
//! messages, webhook endpoints, usage counts and the webhook deliverer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderMap;
use tollgate_auth::KeyManager;
use tollgate_core::allowlist::AllowlistStore;
use tollgate_core::rate_limit::Plan;
use tollgate_core::SharedClock;
use tollgate_webhook::url_guard::{blocked_range, TokioResolver, WebhookUrlGuard};

use crate::config::Config;
use crate::delivery::Deliverer;
use crate::error::ApiError;
use crate::messages::MessageStore;
use crate::stores::Stores;
use crate::usage::Usage;
use crate::webhooks::WebhookEndpoints;

/// The shared state; clones are cheap and share everything.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    config: Config,
    clock: SharedClock,
    plans: BTreeMap<String, Plan>,
    stores: Stores,
    keys: KeyManager,
    messages: MessageStore,
    webhooks: WebhookEndpoints,
    usage: Usage,
    deliverer: Deliverer,
    url_guard: WebhookUrlGuard,
}

impl AppState {
    /// State over `stores`, on `clock`.
    pub fn new(config: Config, stores: Stores, clock: SharedClock) -> AppState {
        let plans = plans(&config);
        let keys = KeyManager::from_shared(stores.keys.clone())
            .clock(clock.clone())
            .max_active_keys(config.max_keys_per_account)
            .allowlists(stores.allowlists.clone());
        let url_guard = webhook_url_guard(&config);
        let allow_private = config.allow_private_webhook_urls;
        let deliverer = Deliverer::new(
            config.webhooks.clone(),
            clock.clone(),
            Arc::new(move |ip| allow_private || blocked_range(ip, false).is_none()),
        );
        AppState(Arc::new(Inner {
            usage: Usage::new(clock.clone()),
            plans,
            stores,
            keys,
            messages: MessageStore::default(),
            webhooks: WebhookEndpoints::default(),
            deliverer,
            url_guard,
            clock,
            config,
        }))
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// The current time.
    pub fn now(&self) -> SystemTime {
        self.0.clock.now()
    }

    /// The clock.
    pub fn clock(&self) -> &SharedClock {
        &self.0.clock
    }

    /// The stores.
    pub fn stores(&self) -> &Stores {
        &self.0.stores
    }

    /// The key manager.
    pub fn keys(&self) -> &KeyManager {
        &self.0.keys
    }

    /// The allowlist store.
    pub fn allowlists(&self) -> &Arc<dyn AllowlistStore> {
        &self.0.stores.allowlists
    }

    /// Messages.
    pub fn messages(&self) -> &MessageStore {
        &self.0.messages
    }

    /// Webhook endpoints per account.
    pub fn webhooks(&self) -> &WebhookEndpoints {
        &self.0.webhooks
    }

    /// Today's usage counts.
    pub fn usage(&self) -> &Usage {
        &self.0.usage
    }

    /// The webhook deliverer.
    pub fn deliverer(&self) -> &Deliverer {
        &self.0.deliverer
    }

    /// Every plan by name: the seed's three, overridden and extended by the configuration.
    pub fn plans(&self) -> &BTreeMap<String, Plan> {
        &self.0.plans
    }

    /// The name of the account's plan (`free` for accounts the configuration does not name).
    pub fn plan_name(&self, account_id: &str) -> String {
        self.config()
            .account(account_id)
            .map_or_else(|| "free".to_owned(), |account| account.plan.clone())
    }

    /// The account's plan.
    pub fn plan(&self, account_id: &str) -> Plan {
        let name = self.plan_name(account_id);
        self.plans().get(&name).cloned().unwrap_or_else(Plan::free)
    }

    /// Checks a webhook URL against the SSRF guard (resolving its host);
    /// the error is a 400 `INVALID_WEBHOOK_URL`.
    pub async fn check_webhook_url(&self, url: &str) -> Result<String, ApiError> {
        self.0
            .url_guard
            .check_resolved(url)
            .await
            .map(|validated| validated.to_string())
            .map_err(|rejected| ApiError::from(rejected.to_rejection()))
    }

    /// Reads and checks the request's `X-Webhook-URL` (one at most, ASCII,
    /// passing the SSRF guard): `None` when absent; the error is a 400
    /// `INVALID_WEBHOOK_URL`.
    pub async fn check_webhook_header(&self, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
        match self.0.url_guard.check_header(headers).await {
            Ok(url) => Ok(url.map(|validated| validated.to_string())),
            Err(rejected) => {
                tracing::info!(reason = %rejected, "X-Webhook-URL refused");
                Err(ApiError::from(rejected.to_rejection()))
            }
        }
    }
}

fn plans(config: &Config) -> BTreeMap<String, Plan> {
    let mut plans: BTreeMap<String, Plan> = [
        Plan::free(),
        Plan::premium(),
        Plan::enterprise(Plan::ENTERPRISE_MAX_PER_SECOND),
    ]
    .into_iter()
    .map(|plan| (plan.name.clone(), plan))
    .collect();
    for (name, plan) in &config.plans {
        let built = Plan::new(name.clone(), plan.per_second)
            .with_burst(plan.burst.unwrap_or(plan.per_second))
            .with_daily_quota(plan.daily);
        plans.insert(name.clone(), built);
    }
    plans
}

// Names are resolved and every address checked; the deliverer checks the
// addresses again when it connects, so a DNS answer that changes in
// between gains nothing.
fn webhook_url_guard(config: &Config) -> WebhookUrlGuard {
    let local = config.allow_private_webhook_urls;
    WebhookUrlGuard::new()
        .resolver(TokioResolver)
        .allow_http(local)
        .allow_private_addresses(local)
}
