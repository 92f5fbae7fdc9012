//! The audit log: every key, allowlist and webhook change, with when it
//! happened, which key made it and from which client address
//! (`GET /v1/audit-log`). In the database when the server has one (kept
//! `retention.audit_max_age_days`), else in process memory (bounded).
//!
//! Entries are written by the handler after its change succeeded. Their
//! ids sort in the order they were written — the time in milliseconds,
//! then a process-wide sequence — so a page is "ids below the cursor,
//! highest first". Details are small and never hold a secret: a key's
//! label and type, a list's size, a webhook's URL.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::Value;
use tollgate_core::unix_nanos;

use crate::db::audit::SqlAudit;
use crate::db::DbError;

/// The most entries the in-memory log keeps (oldest dropped first).
pub const MEMORY_CAPACITY: usize = 10_000;

/// What changed: the `action` of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `key.created`; the target is the new key.
    KeyCreated,
    /// `key.rotated`; the target is the replaced key, the details name its successor.
    KeyRotated,
    /// `key.revoked`.
    KeyRevoked,
    /// `account_allowlist.set`; the target is the account.
    AccountAllowlistSet,
    /// `account_allowlist.removed`.
    AccountAllowlistRemoved,
    /// `key_allowlist.set`; the target is the key.
    KeyAllowlistSet,
    /// `key_allowlist.removed`.
    KeyAllowlistRemoved,
    /// `webhook.set`: a URL set and, with it, a new signing secret issued
    /// (the details say so; never the secret).
    WebhookSet,
    /// `webhook.secret_rotated`: a new signing secret, the old one signing
    /// too until the details' `previous_secret_valid_until`.
    WebhookSecretRotated,
}

impl Action {
    /// The name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::KeyCreated => "key.created",
            Action::KeyRotated => "key.rotated",
            Action::KeyRevoked => "key.revoked",
            Action::AccountAllowlistSet => "account_allowlist.set",
            Action::AccountAllowlistRemoved => "account_allowlist.removed",
            Action::KeyAllowlistSet => "key_allowlist.set",
            Action::KeyAllowlistRemoved => "key_allowlist.removed",
            Action::WebhookSet => "webhook.set",
            Action::WebhookSecretRotated => "webhook.secret_rotated",
        }
    }
}

/// One recorded change.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// `aud_…`, sorting in write order.
    pub id: String,
    /// The account changed.
    pub account_id: String,
    /// When, in milliseconds since the epoch.
    pub at_unix_ms: u64,
    /// The key that made the change.
    pub actor_key_id: String,
    /// The client's address, when known.
    pub client_ip: Option<String>,
    /// What was done ([`Action::as_str`]).
    pub action: String,
    /// What it was done to: a key id, or the account id.
    pub target_id: String,
    /// A small JSON object; never a secret.
    pub details: Value,
}

impl AuditEntry {
    /// A new entry, given a fresh sortable id.
    pub fn new(
        at: SystemTime,
        account_id: &str,
        actor_key_id: &str,
        client_ip: Option<IpAddr>,
        action: Action,
        target_id: &str,
        details: Value,
    ) -> AuditEntry {
        let at_unix_ms = unix_nanos(at) / 1_000_000;
        AuditEntry {
            id: sortable_id(at_unix_ms),
            account_id: account_id.to_owned(),
            at_unix_ms,
            actor_key_id: actor_key_id.to_owned(),
            client_ip: client_ip.map(|ip| ip.to_string()),
            action: action.as_str().to_owned(),
            target_id: target_id.to_owned(),
            details,
        }
    }
}

// Time first, so ids from every instance interleave by time; then this
// process's sequence, so entries written in one millisecond (or on a
// clock that stands still) keep their order; then a random tail, so two
// instances never write one id.
fn sortable_id(at_unix_ms: u64) -> String {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed) % 1_000_000_000_000;
    let tail = crate::messages::random_base62(6).unwrap_or_else(|_| "000000".into());
    format!("aud_{at_unix_ms:015}{sequence:012}{tail}")
}

/// Entries kept in process memory, newest last. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct MemoryAudit {
    entries: Arc<Mutex<VecDeque<AuditEntry>>>,
}

/// Where the audit log lives.
#[derive(Debug, Clone)]
pub enum AuditLog {
    /// In process memory (in-process servers and tests).
    Memory(MemoryAudit),
    /// In the database.
    Sql(SqlAudit),
}

impl AuditLog {
    /// Records one entry.
    pub async fn record(&self, entry: AuditEntry) -> Result<(), DbError> {
        match self {
            AuditLog::Memory(memory) => {
                let mut entries = memory.entries.lock().expect("not poisoned");
                if entries.len() >= MEMORY_CAPACITY {
                    entries.pop_front();
                }
                entries.push_back(entry);
                Ok(())
            }
            AuditLog::Sql(sql) => sql.record(&entry).await,
        }
    }

    /// Up to `limit` of the account's entries with ids below `before` (all
    /// when `None`), newest first.
    pub async fn list(&self, account_id: &str, before: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>, DbError> {
        match self {
            AuditLog::Memory(memory) => {
                let entries = memory.entries.lock().expect("not poisoned");
                let mut page: Vec<AuditEntry> = entries
                    .iter()
                    .filter(|entry| entry.account_id == account_id)
                    .filter(|entry| before.is_none_or(|before| entry.id.as_str() < before))
                    .cloned()
                    .collect();
                page.sort_by(|a, b| b.id.cmp(&a.id));
                page.truncate(limit);
                Ok(page)
            }
            AuditLog::Sql(sql) => sql.list(account_id, before, limit).await,
        }
    }
}
