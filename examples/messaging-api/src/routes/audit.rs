//! `GET /v1/audit-log`: the account's key, allowlist and webhook changes,
//! newest first, a page at a time (`?limit=`, default 50, at most 200;
//! `?cursor=` from the previous page's `next_cursor`, `null` on the last).
//! Any key of the account may read it; no key sees another account's.

use axum::extract::{RawQuery, State};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use serde_json::Value;
use tollgate_core::Principal;
use utoipa::{IntoParams, ToSchema};

use crate::audit::AuditEntry;
use crate::error::ApiError;
use crate::routes::{bounded_query_param, query_param};
use crate::state::AppState;
use crate::time::rfc3339;

/// Entries per page without `?limit=`.
pub const DEFAULT_LIMIT: usize = 50;
/// The largest `?limit=`.
pub const MAX_LIMIT: u32 = 200;

/// The query of `GET /v1/audit-log` (read from the raw query, so a bad
/// value is the API's own 400).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Entries per page (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// One page of the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<AuditEntryView>,
    /// The cursor of the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// One change, as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryView {
    /// `aud_…`.
    pub id: String,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// The account.
    pub account_id: String,
    /// The key that made the change.
    pub actor_key_id: String,
    /// The address it came from, when known.
    pub client_ip: Option<String>,
    /// What was done, e.g. `key.created`.
    pub action: String,
    /// What it was done to.
    pub target_id: String,
    /// Details of the change; never a secret.
    #[schema(value_type = Object)]
    pub details: Value,
}

/// One page of the caller's account's audit log.
#[utoipa::path(
    get,
    operation_id = "list_audit_log",
    path = "/v1/audit-log",
    tag = "usage",
    params(AuditQuery),
    responses((status = 200, description = "A page of the audit log.", body = AuditPage))
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Json<AuditPage>, ApiError> {
    let query = query.unwrap_or_default();
    let limit = bounded_query_param(&query, "limit", MAX_LIMIT)?.map_or(DEFAULT_LIMIT, |limit| limit as usize);
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
    let entries = entries.iter().map(entry_json).collect();
    Ok(Json(AuditPage { entries, next_cursor }))
}

fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|id| id.starts_with("aud_") && id.len() <= 64)
        .ok_or_else(|| ApiError::invalid("\"cursor\" is not a cursor this API returned"))
}

fn entry_json(entry: &AuditEntry) -> AuditEntryView {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(entry.at_unix_ms);
    AuditEntryView {
        id: entry.id.clone(),
        at: rfc3339(at),
        account_id: entry.account_id.clone(),
        actor_key_id: entry.actor_key_id.clone(),
        client_ip: entry.client_ip.clone(),
        action: entry.action.clone(),
        target_id: entry.target_id.clone(),
        details: entry.details.clone(),
    }
}
