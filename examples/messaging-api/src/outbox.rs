//! The webhook outbox's workers: every instance runs a few, each claiming
//! due events from the database ([`SqlDeliveries`]), attempting them once
//! and scheduling the next attempt (doubling from `initial_backoff_ms`) or
//! giving up after `max_attempts`. A local send wakes them at once; events
//! queued by other instances or due for retry are found by polling.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tollgate_core::{unix_nanos, SharedClock};

use crate::db::deliveries::{Outgoing, SqlDeliveries};
use crate::db::DbError;
use crate::delivery::{Deliverer, Event};
use crate::history::{DeliveryHistory, DeliveryRecord, Outcome};
use crate::messages::random_base62;
use crate::webhooks::Webhooks;

/// How often idle workers look for due events.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The outbox and its workers' shared parts. Clones share them.
#[derive(Clone)]
pub struct Outbox {
    deliveries: SqlDeliveries,
    webhooks: Webhooks,
    deliverer: Deliverer,
    history: DeliveryHistory,
    clock: SharedClock,
    wake: Arc<Notify>,
    owner: Arc<str>,
}

impl Outbox {
    /// An outbox over `deliveries`, signing with `webhooks`' secrets and
    /// recording each attempt's outcome in `history`.
    pub fn new(
        deliveries: SqlDeliveries,
        webhooks: Webhooks,
        deliverer: Deliverer,
        history: DeliveryHistory,
        clock: SharedClock,
    ) -> Outbox {
        let owner = format!("inst_{}", random_base62(16).unwrap_or_else(|_| "unknown".into()));
        Outbox {
            deliveries,
            webhooks,
            deliverer,
            history,
            clock,
            wake: Arc::new(Notify::new()),
            owner: owner.into(),
        }
    }

    fn now_ms(&self) -> i64 {
        (unix_nanos(self.clock.now()) / 1_000_000) as i64
    }

    /// Writes `events` (one message's, in order) and wakes the workers.
    pub async fn enqueue(&self, message_id: &str, account_id: &str, events: &[Event]) -> Result<(), DbError> {
        let outgoing: Vec<Outgoing> = events
            .iter()
            .enumerate()
            .map(|(seq, event)| Outgoing {
                event_id: event.id.clone(),
                account_id: account_id.to_owned(),
                message_id: message_id.to_owned(),
                seq: seq as i64,
                url: event.url.clone(),
                body: String::from_utf8_lossy(&event.body).into_owned(),
            })
            .collect();
        self.deliveries.enqueue(&outgoing, self.now_ms()).await?;
        self.wake.notify_waiters();
        Ok(())
    }

    /// Starts `workers` workers.
    pub fn spawn_workers(&self, workers: usize) {
        for _ in 0..workers.max(1) {
            let outbox = self.clone();
            tokio::spawn(async move { outbox.work().await });
        }
    }

    async fn work(self) {
        loop {
            match self.deliver_one().await {
                Ok(true) => continue,
                Ok(false) => {
                    let _ = tokio::time::timeout(POLL_INTERVAL, self.wake.notified()).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "webhook outbox unavailable; retrying");
                    tokio::time::sleep(POLL_INTERVAL * 5).await;
                }
            }
        }
    }

    /// Claims and attempts one due event: false when none was due.
    pub async fn deliver_one(&self) -> Result<bool, DbError> {
        let config = self.deliverer.config();
        // Long enough for one attempt; past it another instance may retry.
        let lease_ms = (config.timeout_ms * 2 + 1000) as i64;
        let Some(claimed) = self.deliveries.claim(&self.owner, self.now_ms(), lease_ms).await? else {
            return Ok(false);
        };
        let Some(endpoint) = self.webhooks.get(&claimed.account_id).await? else {
            tracing::warn!(webhook_id = %claimed.event_id, "the account has no webhook any more; event dropped");
            self.deliveries.finish(&claimed.event_id, &self.owner).await?;
            return Ok(true);
        };
        let event = Event {
            url: claimed.url,
            ..Event::for_endpoint(
                claimed.event_id.clone(),
                &claimed.account_id,
                &endpoint,
                claimed.body.into_bytes().into(),
            )
        };
        let attempt = self.deliverer.attempt_once(&event, claimed.attempts).await;
        let outcome = if attempt.is_delivered() {
            Outcome::Delivered
        } else if claimed.attempts >= i64::from(config.max_attempts.max(1)) {
            Outcome::Abandoned
        } else {
            Outcome::Retrying
        };
        let record = DeliveryRecord::of(&event, outcome, claimed.attempts, attempt.status(), self.clock.now());
        self.history.record(record).await;
        if outcome == Outcome::Delivered {
            self.deliveries.finish(&claimed.event_id, &self.owner).await?;
        } else if outcome == Outcome::Abandoned {
            tracing::error!(webhook_id = %claimed.event_id, attempts = claimed.attempts, "webhook abandoned");
            self.deliveries.finish(&claimed.event_id, &self.owner).await?;
        } else {
            let backoff = config
                .initial_backoff_ms
                .saturating_mul(1 << (claimed.attempts - 1).clamp(0, 20));
            self.deliveries
                .retry_at(&claimed.event_id, &self.owner, self.now_ms() + backoff as i64)
                .await?;
        }
        Ok(true)
    }
}
