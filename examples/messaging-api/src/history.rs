//! The recent webhook deliveries of each account, for the dashboard: one
//! record per event, updated as its attempts go (retrying, then delivered
//! or abandoned), the newest [`PER_ACCOUNT`] kept. In the database beside
//! the outbox (whose rows are deleted once finished), else in memory.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use tollgate_core::unix_nanos;

use crate::db::history::SqlHistory;
use crate::delivery::Event;

/// How many deliveries are kept per account.
pub const PER_ACCOUNT: usize = 50;

/// Where an event's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered,
    /// An attempt failed; another is scheduled.
    Retrying,
    /// Every attempt failed.
    Abandoned,
}

impl Outcome {
    /// Its name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retrying => "retrying",
            Outcome::Abandoned => "abandoned",
        }
    }
}

/// One event's delivery, as last recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// `evt_…`.
    pub event_id: String,
    /// Its account.
    pub account_id: String,
    /// When this record was written, in milliseconds since the epoch.
    pub at_unix_ms: i64,
    /// The event's `type` (`message.status`, `key.alert`).
    pub event_type: String,
    /// The receiver.
    pub url: String,
    /// `delivered`, `retrying` or `abandoned`.
    pub outcome: String,
    /// Attempts so far.
    pub attempts: i64,
    /// The receiver's last status, when it answered.
    pub response_status: Option<u16>,
}

impl DeliveryRecord {
    /// The record of `event` after `attempts` attempts, at `now`.
    pub fn of(event: &Event, outcome: Outcome, attempts: i64, status: Option<u16>, now: SystemTime) -> DeliveryRecord {
        DeliveryRecord {
            event_id: event.id.clone(),
            account_id: event.account_id.clone(),
            at_unix_ms: (unix_nanos(now) / 1_000_000) as i64,
            event_type: event_type(&event.body),
            url: event.url.clone(),
            outcome: outcome.as_str().to_owned(),
            attempts,
            response_status: status,
        }
    }
}

// The `type` of an event body (ours always has one).
fn event_type(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| value["type"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// Recent deliveries in process memory, per account. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct MemoryHistory {
    by_account: Arc<Mutex<HashMap<String, VecDeque<DeliveryRecord>>>>,
}

impl MemoryHistory {
    fn record(&self, record: DeliveryRecord) {
        let mut map = self.by_account.lock().unwrap_or_else(PoisonError::into_inner);
        let list = map.entry(record.account_id.clone()).or_default();
        list.retain(|kept| kept.event_id != record.event_id);
        list.push_front(record);
        list.truncate(PER_ACCOUNT);
    }

    fn recent(&self, account_id: &str) -> Vec<DeliveryRecord> {
        let map = self.by_account.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(account_id)
            .map(|list| list.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Where recent deliveries are kept.
#[derive(Debug, Clone)]
pub enum DeliveryHistory {
    /// In process memory.
    Memory(MemoryHistory),
    /// In the database.
    Sql(SqlHistory),
}

impl DeliveryHistory {
    /// Records (or updates) an event's delivery. A failure is logged: the
    /// history is for people, the delivery itself went on.
    pub async fn record(&self, record: DeliveryRecord) {
        match self {
            DeliveryHistory::Memory(history) => history.record(record),
            DeliveryHistory::Sql(history) => {
                if let Err(error) = history.record(&record).await {
                    tracing::warn!(%error, webhook_id = %record.event_id, "delivery history not recorded");
                }
            }
        }
    }

    /// The account's recent deliveries, newest first.
    pub async fn recent(&self, account_id: &str) -> Result<Vec<DeliveryRecord>, crate::db::DbError> {
        match self {
            DeliveryHistory::Memory(history) => Ok(history.recent(account_id)),
            DeliveryHistory::Sql(history) => history.recent(account_id).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event: usize, at: i64) -> DeliveryRecord {
        DeliveryRecord {
            event_id: format!("evt_{event}"),
            account_id: "acct_1".into(),
            at_unix_ms: at,
            event_type: "message.status".into(),
            url: "https://example.com/hook".into(),
            outcome: "retrying".into(),
            attempts: 1,
            response_status: Some(500),
        }
    }

    #[test]
    fn memory_keeps_the_newest_per_account_and_one_record_per_event() {
        let history = MemoryHistory::default();
        for event in 0..PER_ACCOUNT + 5 {
            history.record(record(event, event as i64));
        }
        history.record(DeliveryRecord {
            outcome: "delivered".into(),
            ..record(PER_ACCOUNT + 4, 1000)
        });
        let recent = history.recent("acct_1");
        assert_eq!(recent.len(), PER_ACCOUNT);
        assert_eq!(recent[0].event_id, format!("evt_{}", PER_ACCOUNT + 4));
        assert_eq!(recent[0].outcome, "delivered");
        assert_eq!(recent[PER_ACCOUNT - 1].event_id, "evt_5");
        assert!(history.recent("acct_2").is_empty());
    }
}
