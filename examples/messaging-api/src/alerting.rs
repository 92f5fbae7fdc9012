//! Where the layers' alerts go: each is logged as a structured `tracing`
//! event (a `warn` with its kind, key and account; never a key's value),
//! and an alert about a key is sent to its account's webhook as a signed
//! `key.alert` event ([`Event::key_alert`]), through the outbox when the
//! server has a database (durable, retried like message events) or the
//! deliverer's retries otherwise. A burst of failed authentications
//! concerns no account: it is only logged.
//!
//! De-duplication happens before the sink, in the store the deployment
//! shares ([`crate::stores::Stores::alerts`]): Redis for a fleet, so a
//! fleet sends each alert once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tollgate_core::alerts::{Alert, AlertSink, SinkFuture};

use crate::delivery::{Deliverer, Event};
use crate::outbox::Outbox;
use crate::webhooks::Webhooks;

/// How many alerts [`RecentAlerts`] keeps per account.
pub const RECENT_PER_ACCOUNT: usize = 20;

/// The alerts this instance raised lately, newest first, per account (for
/// the dashboard; the webhook is the durable record). Clones share them.
#[derive(Debug, Clone, Default)]
pub struct RecentAlerts {
    by_account: Arc<Mutex<HashMap<String, VecDeque<Alert>>>>,
}

impl RecentAlerts {
    /// Keeps `alert` if it concerns an account, dropping the oldest past
    /// [`RECENT_PER_ACCOUNT`].
    pub fn remember(&self, alert: &Alert) {
        let Some(account_id) = alert.account_id() else { return };
        let mut map = self.by_account.lock().expect("not poisoned");
        let list = map.entry(account_id.to_owned()).or_default();
        list.push_front(alert.clone());
        list.truncate(RECENT_PER_ACCOUNT);
    }

    /// The account's recent alerts, newest first.
    pub fn of(&self, account_id: &str) -> Vec<Alert> {
        let map = self.by_account.lock().expect("not poisoned");
        map.get(account_id)
            .map(|list| list.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Logs alerts and sends `key.alert` webhooks. Clones share everything.
#[derive(Clone)]
pub struct KeyAlertSink {
    webhooks: Webhooks,
    outbox: Option<Outbox>,
    deliverer: Deliverer,
    recent: Option<RecentAlerts>,
}

impl KeyAlertSink {
    /// A sink sending through `outbox` when given, else through `deliverer`.
    pub fn new(webhooks: Webhooks, outbox: Option<Outbox>, deliverer: Deliverer) -> KeyAlertSink {
        KeyAlertSink {
            webhooks,
            outbox,
            deliverer,
            recent: None,
        }
    }

    /// Also keeps each alert in `recent`.
    pub fn remember(mut self, recent: RecentAlerts) -> KeyAlertSink {
        self.recent = Some(recent);
        self
    }

    /// Logs `alert` and hands its webhook on.
    pub async fn handle(&self, alert: Alert) {
        log(&alert);
        if let Some(recent) = &self.recent {
            recent.remember(&alert);
        }
        let Some(account_id) = alert.account_id() else { return };
        let endpoint = match self.webhooks.get(account_id).await {
            Ok(Some(endpoint)) => endpoint,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, kind = alert.kind(), "alert webhook not sent: webhook store failed");
                return;
            }
        };
        let event = match Event::key_alert(&alert, &endpoint) {
            Ok(Some(event)) => event,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "alert webhook not sent: no randomness for its id");
                return;
            }
        };
        match &self.outbox {
            // Its own group in the outbox: an alert waits for no message's events.
            Some(outbox) => {
                let group = event.id.clone();
                if let Err(error) = outbox.enqueue(&group, account_id, &[event]).await {
                    tracing::warn!(%error, kind = alert.kind(), "alert webhook not queued");
                }
            }
            None => self.deliverer.spawn(event),
        }
    }
}

impl AlertSink for KeyAlertSink {
    fn deliver(&self, alert: Alert) -> SinkFuture {
        let sink = self.clone();
        Box::pin(async move { sink.handle(alert).await })
    }
}

fn log(alert: &Alert) {
    let kind = alert.kind();
    match alert {
        Alert::Quota {
            account_id,
            key_id,
            percent,
            limit,
            used,
            ..
        } => tracing::warn!(kind, account_id, key_id, percent, limit, used, "key alert"),
        Alert::AuthFailures {
            client_ip,
            failures,
            window,
            ..
        } => tracing::warn!(kind, %client_ip, failures, window_secs = window.as_secs(), "key alert"),
        Alert::NewNetwork {
            account_id,
            key_id,
            client_ip,
            network,
            ..
        } => tracing::warn!(kind, account_id, key_id, %client_ip, %network, "key alert"),
        Alert::RotationDue {
            account_id,
            key_id,
            created_at,
            ..
        } => tracing::warn!(
            kind,
            account_id,
            key_id,
            created_at = %crate::time::rfc3339(*created_at),
            "key alert"
        ),
    }
}
