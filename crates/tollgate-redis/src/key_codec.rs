//! How a [`KeyRecord`] is laid out in Redis.
//!
//! The record is a Redis hash: `data` holds the fields that never change
//! after insertion as JSON; `revoked_at` and `last_used_at`, the two that
//! do, are separate fields holding [`crate::timestamp`] strings, so the
//! scripts that move them (earliest revocation wins, last use only moves
//! forward) compare strings and never re-encode the JSON.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tollgate_core::keys::{KeyHash, KeyRecord};
use tollgate_core::{unix_nanos, Environment, KeyKind, Principal, Scope, StoreError};

use crate::timestamp;

/// The hash field holding the immutable part as JSON.
pub(crate) const DATA: &str = "data";
/// The hash field holding the revocation time.
pub(crate) const REVOKED_AT: &str = "revoked_at";
/// The hash field holding the last use time.
pub(crate) const LAST_USED_AT: &str = "last_used_at";

#[derive(Serialize, Deserialize)]
struct StoredKey {
    account_id: String,
    key_id: String,
    kind: String,
    scopes: Vec<String>,
    plan: String,
    environment: String,
    /// Written by earlier versions, which kept a key's IP list in its
    /// record; the list now lives only in the allowlist store. Never written.
    #[serde(default, skip_serializing)]
    ip_allowlist: Option<Vec<String>>,
    label: String,
    display_prefix: String,
    /// Nanoseconds since the epoch (JSON integers are exact up to u64 in serde_json).
    created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
}

/// The hash fields of a record, ready for `HSET`.
pub(crate) fn encode(record: &KeyRecord) -> Vec<(&'static str, String)> {
    let principal = &record.principal;
    let stored = StoredKey {
        account_id: principal.account_id().to_owned(),
        key_id: principal.key_id().to_owned(),
        kind: principal.kind().as_str().to_owned(),
        scopes: principal
            .scopes()
            .iter()
            .map(|scope| scope.as_str().to_owned())
            .collect(),
        plan: principal.plan().to_owned(),
        environment: principal.environment().as_str().to_owned(),
        ip_allowlist: None,
        label: record.label.clone(),
        display_prefix: record.display_prefix.clone(),
        created_at: unix_nanos(record.created_at),
        expires_at: record.expires_at.map(unix_nanos),
    };
    let json = serde_json::to_string(&stored).expect("a key record always serialises");
    let mut fields = vec![(DATA, json)];
    if let Some(at) = record.revoked_at {
        fields.push((REVOKED_AT, timestamp::encode(at)));
    }
    if let Some(at) = record.last_used_at {
        fields.push((LAST_USED_AT, timestamp::encode(at)));
    }
    fields
}

/// Rebuilds a record from its hash fields (`None` for a missing record).
pub(crate) fn decode(hash: &KeyHash, fields: &HashMap<String, String>) -> Result<Option<Arc<KeyRecord>>, StoreError> {
    let Some(json) = fields.get(DATA) else {
        return Ok(None);
    };
    let stored: StoredKey =
        serde_json::from_str(json).map_err(|error| StoreError::Corrupt(format!("key record: {error}")))?;
    let kind = KeyKind::parse(&stored.kind)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown key kind {:?}", stored.kind)))?;
    let environment = match stored.environment.as_str() {
        "live" => Environment::Live,
        "sandbox" => Environment::Sandbox,
        other => return Err(StoreError::Corrupt(format!("unknown environment {other:?}"))),
    };
    // Ignoring such a list would let the key work from anywhere: refuse the
    // record (the key fails closed) until the list is moved to the
    // allowlist store.
    if stored.ip_allowlist.is_some() {
        return Err(StoreError::Corrupt(format!(
            "key {} holds an IP allowlist in its record, as earlier versions stored it; \
             set it with the allowlist store and rewrite the record",
            stored.key_id
        )));
    }
    let principal = Principal::new(stored.account_id, stored.key_id, kind)
        .with_scopes(stored.scopes.into_iter().map(Scope::new))
        .with_plan(stored.plan)
        .with_environment(environment);
    Ok(Some(Arc::new(KeyRecord {
        principal,
        hash: *hash,
        label: stored.label,
        display_prefix: stored.display_prefix,
        created_at: from_nanos(stored.created_at),
        expires_at: stored.expires_at.map(from_nanos),
        revoked_at: time_field(fields, REVOKED_AT)?,
        last_used_at: time_field(fields, LAST_USED_AT)?,
    })))
}

fn from_nanos(nanos: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(nanos)
}

fn time_field(fields: &HashMap<String, String>, name: &str) -> Result<Option<SystemTime>, StoreError> {
    fields
        .get(name)
        .map(|text| timestamp::decode(text).ok_or_else(|| StoreError::Corrupt(format!("{name}: {text:?}"))))
        .transpose()
}

/// The account index entry of a key: what the per-account limit needs
/// to count the keys valid at a time without reading the records
/// (`<hash hex> <expires_at or -> <revoked_at or ->`, times as
/// [`crate::timestamp`] strings, which the scripts compare with `now`).
/// It lives beside the account's other entries so the limit check is one
/// script on one cluster slot. Entries written by earlier versions end in a
/// flag, `0` or `1`, instead of a time; the scripts read both forms.
pub(crate) fn account_entry(record: &KeyRecord) -> String {
    let time = |at: Option<SystemTime>| at.map_or_else(|| "-".to_owned(), timestamp::encode);
    format!(
        "{} {} {}",
        record.hash.to_hex(),
        time(record.expires_at),
        time(record.revoked_at)
    )
}

/// The key hash of an account index entry.
pub(crate) fn entry_hash(entry: &str) -> Option<KeyHash> {
    KeyHash::from_hex(entry.split(' ').next()?)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn sample() -> KeyRecord {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 987_654_321);
        KeyRecord {
            principal: Principal::new("acct", "key_1", KeyKind::Sandbox)
                .with_scopes([Scope::new("messages:write"), Scope::new("templates:read")])
                .with_plan("premium"),
            hash: KeyHash::from_bytes([7; 32]),
            label: "Staging \"east\"".into(),
            display_prefix: "tg_test_ab".into(),
            created_at: t,
            expires_at: Some(t + Duration::from_secs(90 * 86_400)),
            revoked_at: Some(t + Duration::from_nanos(5)),
            last_used_at: Some(t + Duration::from_secs(1)),
        }
    }

    #[test]
    fn records_round_trip_exactly() {
        let record = sample();
        let fields: HashMap<String, String> = encode(&record)
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        let decoded = decode(&record.hash, &fields).unwrap().unwrap();
        assert_eq!(*decoded, record);
        assert!(
            !fields[DATA].contains(&record.hash.to_hex()),
            "the hash is the key name, not data"
        );
    }

    #[test]
    fn missing_and_corrupt_records() {
        let hash = KeyHash::from_bytes([1; 32]);
        assert!(decode(&hash, &HashMap::new()).unwrap().is_none());
        let corrupt = HashMap::from([(DATA.to_owned(), "{".to_owned())]);
        assert!(matches!(decode(&hash, &corrupt), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn a_record_holding_an_ip_list_of_an_earlier_version_fails_closed() {
        let record = sample();
        let mut fields: HashMap<String, String> = encode(&record)
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        assert!(!fields[DATA].contains("ip_allowlist"));
        let data = fields[DATA].replacen('{', r#"{"ip_allowlist":["10.0.0.0/8"],"#, 1);
        fields.insert(DATA.to_owned(), data);
        let error = decode(&record.hash, &fields).unwrap_err();
        assert!(
            matches!(&error, StoreError::Corrupt(message) if message.contains("key_1") && message.contains("allowlist store")),
            "{error}"
        );
    }

    #[test]
    fn account_entries_hold_hash_expiry_and_revocation_time() {
        let record = sample();
        let entry = account_entry(&record);
        assert_eq!(
            entry,
            format!(
                "{} {} {}",
                record.hash.to_hex(),
                timestamp::encode(record.expires_at.unwrap()),
                timestamp::encode(record.revoked_at.unwrap())
            )
        );
        assert_eq!(entry_hash(&entry), Some(record.hash));
        assert_eq!(entry_hash(&format!("{} - 1", record.hash.to_hex())), Some(record.hash));
        let mut fresh = sample();
        fresh.expires_at = None;
        fresh.revoked_at = None;
        assert_eq!(account_entry(&fresh), format!("{} - -", fresh.hash.to_hex()));
    }
}
