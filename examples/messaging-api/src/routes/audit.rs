//! `GET /v1/audit-log`: the account's key, allowlist and webhook changes,
//! newest first, a page at a time (`?limit=`, default 50, at most 200;
//! `?cursor=` from the previous page's `next_cursor`, `null` on the last).
//! Any key of the account may read it; no key sees another account's.

use axum::extract::{RawQuery, State};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use tollgate_core::Principal;

use crate::audit::AuditEntry;
use crate::error::ApiError;
use crate::routes::query_param;
use crate::state::AppState;
use crate::time::rfc3339;

/// Entries per page without `?limit=`.
pub const DEFAULT_LIMIT: usize = 50;
/// The largest `?limit=`.
pub const MAX_LIMIT: usize = 200;

/// One page of the caller's account's audit log.
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query = query.unwrap_or_default();
    let limit = match query_param(&query, "limit") {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_LIMIT).contains(limit))
            .ok_or_else(|| ApiError::invalid(format!("\"limit\" must be a whole number from 1 to {MAX_LIMIT}")))?,
    };
    let before = query_param(&query, "cursor").map(decode_cursor).transpose()?;
    // One more than the page: whether there is a next one, without a second query.
    let mut entries = state
        .audit()
        .list(principal.account_id(), before.as_deref(), limit + 1)
        .await
        .map_err(ApiError::unavailable)?;
    let next_cursor = if entries.len() > limit {
        entries.truncate(limit);
        entries.last().map(|last| URL_SAFE_NO_PAD.encode(last.id.as_bytes()))
    } else {
        None
    };
    let entries: Vec<Value> = entries.iter().map(entry_json).collect();
    Ok(Json(json!({ "entries": entries, "next_cursor": next_cursor })))
}

fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|id| id.starts_with("aud_") && id.len() <= 64)
        .ok_or_else(|| ApiError::invalid("\"cursor\" is not a cursor this API returned"))
}

fn entry_json(entry: &AuditEntry) -> Value {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(entry.at_unix_ms);
    json!({
        "id": entry.id,
        "at": rfc3339(at),
        "account_id": entry.account_id,
        "actor_key_id": entry.actor_key_id,
        "client_ip": entry.client_ip,
        "action": entry.action,
        "target_id": entry.target_id,
        "details": entry.details,
    })
}
