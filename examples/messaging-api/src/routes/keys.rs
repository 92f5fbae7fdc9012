//! Key management: `POST/GET /v1/keys`, `DELETE /v1/keys/{id}`,
//! `POST /v1/keys/{id}/rotate`, `PUT/DELETE /v1/keys/{id}/ip-allowlist`.
//! Creating, revoking and rotating keys and setting or removing allowlists need a
//! Production key (the router mounts a rule for that).

use std::time::{Duration, SystemTime};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tollgate_auth::{CreatedKey, KeyInfo, NewKey};
use tollgate_core::{ClientIp, Code, KeyKind, Principal, Rejection};
use tollgate_idempotency::{Storable, StoredReplacement};

use crate::audit::{Action, AuditEntry};
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use crate::time::rfc3339;

/// The body of `POST /v1/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// A label such as "Production Server".
    pub label: String,
    /// `production`, `sandbox` or `read_only`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// The body of the allowlist endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CidrList {
    /// Networks such as `203.0.113.0/24`; an address alone means just it.
    pub cidrs: Vec<String>,
}

/// Creates a key; the only response that ever contains its value. A retry
/// with the same `X-Request-ID` gets 409 `KEY_ALREADY_CREATED` naming the
/// key (the idempotency store keeps that, never the value).
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: Option<ClientIp>,
    ApiJson(request): ApiJson<CreateKey>,
) -> Result<Response, ApiError> {
    let kind = KeyKind::parse(&request.kind)
        .ok_or_else(|| ApiError::invalid("\"type\" must be \"production\", \"sandbox\" or \"read_only\""))?;
    let new = NewKey::new(principal.account_id(), kind)
        .label(request.label)
        .plan(state.plan_name(principal.account_id()));
    let created = state.keys().create(new).await?;
    let details = json!({ "type": created.info.kind.as_str(), "label": created.info.label });
    audit(
        &state,
        &principal,
        client_ip,
        Action::KeyCreated,
        &created.info.id,
        details,
    )
    .await;
    let body = created_json(&created);
    Ok(shown_once(body, already_created(&created.info.id, None)))
}

/// How long a revoked key stays in `GET /v1/keys`: long enough to see what
/// happened to it, short enough that a list never grows without end however
/// many keys an account creates and revokes.
pub const REVOKED_KEYS_LISTED_FOR: Duration = Duration::from_secs(30 * 86_400);

/// Lists the account's keys, without secrets: every key that is not
/// revoked, and those revoked within [`REVOKED_KEYS_LISTED_FOR`].
pub async fn list(State(state): State<AppState>, principal: Principal) -> Result<Json<Value>, ApiError> {
    let keys = state.keys().list(principal.account_id()).await?;
    let now = state.now();
    let shown_since = now
        .checked_sub(REVOKED_KEYS_LISTED_FOR)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let rotation_age = state.config().rotation_age();
    let data: Vec<Value> = keys
        .iter()
        .filter(|key| key.revoked_at.is_none_or(|at| at > shown_since))
        .map(|key| info_json(key, now, rotation_age))
        .collect();
    Ok(Json(json!({ "data": data })))
}

/// Revokes a key at once.
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: Option<ClientIp>,
    Path(key_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.keys().revoke(principal.account_id(), &key_id).await?;
    audit(&state, &principal, client_ip, Action::KeyRevoked, &key_id, json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces a key; the old one keeps working for the configured grace period.
/// A retry with the same `X-Request-ID` gets 409 `KEY_ALREADY_CREATED`
/// naming the new key and the one it replaces.
pub async fn rotate(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: Option<ClientIp>,
    Path(key_id): Path<String>,
) -> Result<Response, ApiError> {
    let grace = state.config().rotation_grace();
    let created = state.keys().rotate(principal.account_id(), &key_id, grace).await?;
    let valid_until = rfc3339(state.now() + grace);
    let details = json!({ "new_key_id": created.info.id, "old_key_valid_until": valid_until });
    audit(&state, &principal, client_ip, Action::KeyRotated, &key_id, details).await;
    let mut body = created_json(&created);
    body["replaces"] = json!(key_id);
    body["old_key_valid_until"] = json!(valid_until);
    Ok(shown_once(body, already_created(&created.info.id, Some(&key_id))))
}

/// Restricts one key to a list of networks.
pub async fn set_ip_allowlist(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: Option<ClientIp>,
    Path(key_id): Path<String>,
    ApiJson(request): ApiJson<CidrList>,
) -> Result<Json<Value>, ApiError> {
    state.keys().get(principal.account_id(), &key_id).await?;
    let set = crate::routes::security::parse_cidrs(&request.cidrs)?;
    let cidrs = crate::routes::security::cidr_strings(&set);
    state
        .allowlists()
        .set_key_allowlist(&key_id, set)
        .await
        .map_err(ApiError::unavailable)?;
    let details = json!({ "networks": cidrs.len() });
    audit(&state, &principal, client_ip, Action::KeyAllowlistSet, &key_id, details).await;
    Ok(Json(json!({ "key_id": key_id, "cidrs": cidrs })))
}

/// Removes one key's allowlist; 204 whether or not it had one.
pub async fn clear_ip_allowlist(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: Option<ClientIp>,
    Path(key_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.keys().get(principal.account_id(), &key_id).await?;
    state
        .allowlists()
        .clear_key_allowlist(&key_id)
        .await
        .map_err(ApiError::unavailable)?;
    audit(
        &state,
        &principal,
        client_ip,
        Action::KeyAllowlistRemoved,
        &key_id,
        json!({}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// A 201 showing a new key's value, marked so that the idempotency layer
/// stores `instead` for retries, never the value.
fn shown_once(body: Value, instead: StoredReplacement) -> Response {
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    response.extensions_mut().insert(Storable::Replace(instead));
    response
}

/// What a retry of the creation of `key_id` gets: 409 `KEY_ALREADY_CREATED`
/// with the key's id (and the key it replaces, for a rotation).
fn already_created(key_id: &str, replaces: Option<&str>) -> StoredReplacement {
    let mut rejection = Rejection::from_code(Code::KeyAlreadyCreated).with_field("key_id", key_id);
    if let Some(replaces) = replaces {
        rejection = rejection.with_field("replaces", replaces);
    }
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    StoredReplacement::new(rejection.status(), rejection.to_json()).with_headers(headers)
}

fn created_json(created: &CreatedKey) -> Value {
    json!({
        "id": created.info.id,
        "key": created.secret.expose_secret(),
        "label": created.info.label,
        "type": created.info.kind.as_str(),
        "created_at": rfc3339(created.info.created_at),
    })
}

/// Records a change made by `principal` from `client_ip` in the audit log.
pub async fn audit(
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

// Due for rotation: an active key at least the rotation age old (a retiring
// key is being replaced already; a revoked or expired one is not in use).
fn rotation_due(key: &KeyInfo, now: SystemTime, rotation_age: Duration) -> bool {
    key.status_at(now).as_str() == "active" && now.duration_since(key.created_at).is_ok_and(|age| age >= rotation_age)
}

fn info_json(key: &KeyInfo, now: SystemTime, rotation_age: Duration) -> Value {
    json!({
        "id": key.id,
        "label": key.label,
        "type": key.kind.as_str(),
        "prefix": key.display_prefix,
        "status": key.status_at(now).as_str(),
        "created_at": rfc3339(key.created_at),
        "last_used_at": key.last_used_at.map(rfc3339),
        "revoked_at": key.revoked_at.map(rfc3339),
        "expires_at": key.expires_at.map(rfc3339),
        "rotation_due": rotation_due(key, now, rotation_age),
    })
}
