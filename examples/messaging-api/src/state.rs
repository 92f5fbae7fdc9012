//! Everything the handlers share: configuration, stores, the key manager,
//! messages, webhook endpoints, usage counts and the webhook deliverer.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use tollgate_auth::KeyManager;
use tollgate_core::alerts::{AlertWorker, Alerts};
use tollgate_core::allowlist::AllowlistStore;
use tollgate_core::rate_limit::Plan;
use tollgate_core::SharedClock;
use tollgate_webhook::url_guard::{blocked_range, TokioResolver, UrlRejected, ValidatedUrl, WebhookUrlGuard};

use crate::alerting::{KeyAlertSink, RecentAlerts};
use crate::audit::{AuditEntry, AuditLog, MemoryAudit};
use crate::config::Config;
use crate::db::audit::SqlAudit;
use crate::db::deliveries::SqlDeliveries;
use crate::db::history::SqlHistory;
use crate::db::messages::SqlMessages;
use crate::db::sessions::SqlSessions;
use crate::db::webhooks::SqlWebhooks;
use crate::delivery::Deliverer;
use crate::error::ApiError;
use crate::history::{DeliveryHistory, MemoryHistory};
use crate::messages::{MessageStore, Messages};
use crate::outbox::Outbox;
use crate::sessions::{MemorySessions, Sessions};
use crate::stores::{ServiceDb, Stores};
use crate::usage::Usage;
use crate::webhooks::{WebhookEndpoints, Webhooks};
use tollgate_core::usage::{MemoryUsageStore, UsageStore};

/// The shared state; clones are cheap and share everything.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    config: Config,
    clock: SharedClock,
    plans: BTreeMap<String, Plan>,
    stores: Stores,
    keys: KeyManager,
    messages: Messages,
    webhooks: Webhooks,
    outbox: Option<Outbox>,
    usage: Usage,
    deliverer: Deliverer,
    url_guard: WebhookUrlGuard,
    audit: AuditLog,
    history: DeliveryHistory,
    sessions: Sessions,
    recent_alerts: RecentAlerts,
    alerts: Alerts,
    // Taken by the first `start_background`.
    alert_worker: Mutex<Option<AlertWorker>>,
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
        let networks = config.webhooks.allowed_networks.clone();
        let (history, sessions) = match &stores.service {
            Some(service) => (
                DeliveryHistory::Sql(SqlHistory::new(service.database.clone())),
                Sessions::Sql(SqlSessions::new(service.database.clone(), service.sealer.clone())),
            ),
            None => (
                DeliveryHistory::Memory(MemoryHistory::default()),
                Sessions::Memory(MemorySessions::default()),
            ),
        };
        let deliverer = Deliverer::new(
            config.webhooks.clone(),
            clock.clone(),
            Arc::new(move |ip| (allow_private || blocked_range(ip, false).is_none()) && in_networks(&networks, ip)),
        )
        .history(history.clone());
        let (messages, webhooks, outbox) = match &stores.service {
            Some(service) => {
                let webhooks = Webhooks::Sql(SqlWebhooks::new(service.database.clone(), service.sealer.clone()));
                let outbox = Outbox::new(
                    SqlDeliveries::new(service.database.clone()),
                    webhooks.clone(),
                    deliverer.clone(),
                    history.clone(),
                    clock.clone(),
                );
                (
                    Messages::Sql(SqlMessages::new(service.database.clone())),
                    webhooks,
                    Some(outbox),
                )
            }
            None => (
                Messages::Memory(MessageStore::default()),
                Webhooks::Memory(WebhookEndpoints::default()),
                None,
            ),
        };
        // A fleet counts in Redis, a single node in its database.
        let usage_store: Arc<dyn UsageStore> = match &stores.service {
            Some(ServiceDb { redis: Some(redis), .. }) => Arc::new(redis.usage_store()),
            Some(service) => Arc::new(service.sql.usage_store()),
            None => Arc::new(MemoryUsageStore::new().clock(clock.clone())),
        };
        let usage = Usage::new(usage_store, clock.clone());
        let audit = match &stores.service {
            Some(service) => AuditLog::Sql(SqlAudit::new(service.database.clone())),
            None => AuditLog::Memory(MemoryAudit::default()),
        };
        let recent_alerts = RecentAlerts::default();
        let sink =
            KeyAlertSink::new(webhooks.clone(), outbox.clone(), deliverer.clone()).remember(recent_alerts.clone());
        let (alerts, alert_worker) = Alerts::builder()
            .store(stores.alerts.clone())
            .clock(clock.clone())
            .rotation_age(config.rotation_age())
            .auth_failure_burst(config.failed_auth_per_minute, Duration::from_secs(60))
            .build(sink);
        AppState(Arc::new(Inner {
            history,
            sessions,
            recent_alerts,
            audit,
            alerts,
            alert_worker: Mutex::new(Some(alert_worker)),
            usage,
            plans,
            stores,
            keys,
            messages,
            webhooks,
            outbox,
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
    pub fn messages(&self) -> &Messages {
        &self.0.messages
    }

    /// Webhook endpoints per account.
    pub fn webhooks(&self) -> &Webhooks {
        &self.0.webhooks
    }

    /// The webhook outbox, when the server has a database.
    pub fn outbox(&self) -> Option<&Outbox> {
        self.0.outbox.as_ref()
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.0.audit
    }

    /// Records an audit entry after a change succeeded. A failure is
    /// logged, not answered: the change is made, and a client retrying a
    /// 503 would make it twice.
    pub async fn record_audit(&self, entry: AuditEntry) {
        let action = entry.action.clone();
        if let Err(error) = self.0.audit.record(entry).await {
            tracing::error!(%error, action, "audit entry not recorded");
        }
    }

    /// Recent webhook deliveries per account.
    pub fn delivery_history(&self) -> &DeliveryHistory {
        &self.0.history
    }

    /// The dashboard's sessions.
    pub fn sessions(&self) -> &Sessions {
        &self.0.sessions
    }

    /// The alerts this instance raised lately, per account.
    pub fn recent_alerts(&self) -> &RecentAlerts {
        &self.0.recent_alerts
    }

    /// What the layers raise alerts through.
    pub fn alerts(&self) -> &Alerts {
        &self.0.alerts
    }

    /// The worker delivering alerts, unless `start_background` took it.
    pub fn take_alert_worker(&self) -> Option<AlertWorker> {
        self.0.alert_worker.lock().expect("not poisoned").take()
    }

    /// Starts what a service runs beside its requests: the alert worker,
    /// the outbox's workers, message and audit retention and the daily
    /// quota counts' flusher.
    pub fn start_background(&self) {
        if let Some(worker) = self.take_alert_worker() {
            tokio::spawn(worker.run());
        }
        if let Some(outbox) = self.outbox() {
            outbox.spawn_workers(4);
        }
        self.usage().spawn_flusher();
        let Some(service) = &self.0.stores.service else { return };
        if let Some(quota) = &service.quota {
            quota.spawn_flusher();
        }
        let messages = SqlMessages::new(service.database.clone());
        let audit = SqlAudit::new(service.database.clone());
        let retention = self.config().retention.clone();
        let clock = self.clock().clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(retention.prune_interval_secs));
            loop {
                tick.tick().await;
                let max_age = std::time::Duration::from_secs(retention.max_age_days * 86_400);
                match messages.prune(clock.now(), max_age, retention.max_messages).await {
                    Ok(0) => {}
                    Ok(deleted) => tracing::info!(deleted, "old messages deleted"),
                    Err(error) => tracing::warn!(%error, "message retention failed; retrying"),
                }
                let max_age = std::time::Duration::from_secs(retention.audit_max_age_days.saturating_mul(86_400));
                match audit.prune(clock.now(), max_age).await {
                    Ok(0) => {}
                    Ok(deleted) => tracing::info!(deleted, "old audit log entries deleted"),
                    Err(error) => tracing::warn!(%error, "audit log retention failed; retrying"),
                }
            }
        });
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
            .and_then(|validated| self.confine(validated))
            .map(|validated| validated.to_string())
            .map_err(|rejected| ApiError::from(rejected.to_rejection()))
    }

    // `webhooks.allowed_networks`: every address the URL names or resolves
    // to must be in one of them; refused as any other forbidden destination.
    fn confine(&self, validated: ValidatedUrl) -> Result<ValidatedUrl, UrlRejected> {
        let networks = &self.0.config.webhooks.allowed_networks;
        if networks.is_empty() {
            return Ok(validated);
        }
        let mut addrs: Vec<IpAddr> = validated.resolved_addrs().iter().map(|addr| addr.ip()).collect();
        addrs.extend(validated.ip());
        if addrs.is_empty() || !addrs.iter().all(|ip| in_networks(networks, *ip)) {
            return Err(UrlRejected::HostNotAllowed(validated.host().to_owned()));
        }
        Ok(validated)
    }

    /// Reads and checks the request's `X-Webhook-URL` (one at most, ASCII,
    /// passing the SSRF guard): `None` when absent; the error is a 400
    /// `INVALID_WEBHOOK_URL`.
    pub async fn check_webhook_header(&self, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
        let checked = self.0.url_guard.check_header(headers).await;
        match checked.and_then(|url| url.map(|validated| self.confine(validated)).transpose()) {
            Ok(url) => Ok(url.map(|validated| validated.to_string())),
            Err(rejected) => {
                tracing::info!(reason = %rejected, "X-Webhook-URL refused");
                Err(ApiError::from(rejected.to_rejection()))
            }
        }
    }
}

// Whether `ip` is in `networks`; every address when there are none.
fn in_networks(networks: &[ipnet::IpNet], ip: IpAddr) -> bool {
    networks.is_empty() || networks.iter().any(|network| network.contains(&ip))
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
