//! The API's handlers, one file per resource.

pub mod audit;
pub mod keys;
pub mod messages;
pub mod security;
pub mod usage;
pub mod webhooks;

use serde_json::Value;
use tollgate_core::{ClientIp, Principal};

use crate::audit::{Action, AuditEntry};
use crate::error::ApiError;
use crate::state::AppState;

/// The value of `name` in a query string (the first, undecoded: the API's
/// parameters are numbers and URL-safe cursors). `Some("")` for `name=`.
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| match pair.split_once('=') {
        Some((key, value)) if key == name => Some(value),
        None if pair == name => Some(""),
        _ => None,
    })
}

/// `name` in a query string as a whole number from 1 to `max`; `None`
/// when the query has no `name`, the API's 400 for anything else.
pub fn bounded_query_param(query: &str, name: &str, max: u32) -> Result<Option<u32>, ApiError> {
    query_param(query, name)
        .map(|text| {
            text.parse::<u32>()
                .ok()
                .filter(|number| (1..=max).contains(number))
                .ok_or_else(|| ApiError::invalid(format!("\"{name}\" must be a whole number from 1 to {max}")))
        })
        .transpose()
}

/// Records a change made by `principal` from `client_ip` in the audit log.
pub async fn record_change(
    state: &AppState,
    principal: &Principal,
    client_ip: Option<ClientIp>,
    action: Action,
    target_id: &str,
    details: Value,
) {
    let entry = AuditEntry::new(
        state.now(),
        principal.account_id(),
        principal.key_id(),
        client_ip.map(ClientIp::ip),
        action,
        target_id,
        details,
    );
    state.record_audit(entry).await;
}
