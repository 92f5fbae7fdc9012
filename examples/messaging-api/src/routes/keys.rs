//! Key management: `POST/GET /v1/keys`, `DELETE /v1/keys/{id}`,
//! `POST /v1/keys/{id}/rotate`, `PUT/DELETE /v1/keys/{id}/ip-allowlist`.
//! Creating, revoking and rotating keys and setting or removing allowlists need a
//! Production key (the router mounts a rule for that).

use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tollgate_auth::{CreatedKey, KeyInfo, KeyStatus, NewKey};
use tollgate_core::{ClientIp, Code, KeyKind, Principal, Rejection};
use tollgate_idempotency::{Storable, StoredReplacement};
use utoipa::ToSchema;

use crate::audit::Action;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::openapi::ErrorBody;
use crate::routes::record_change;
use crate::state::AppState;
use crate::time::rfc3339;

/// The body of `POST /v1/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// A label such as "Production Server" (no control characters).
    #[schema(max_length = 100)]
    pub label: String,
    /// `production`, `sandbox` or `read_only`.
    #[serde(rename = "type")]
    #[schema(pattern = "^(production|sandbox|read_only)$")]
    pub kind: String,
}

/// The body of the allowlist endpoints.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CidrList {
    /// Networks such as `203.0.113.0/24`; an address alone means just it.
    pub cidrs: Vec<String>,
}

/// A new key, with its value: the only answer that ever shows it (no
/// `Debug`, so the value cannot reach a log).
#[derive(Serialize, ToSchema)]
pub struct CreatedKeyBody {
    /// The key's id (`key_…`).
    pub id: String,
    /// The key itself; store it now, it is never shown again.
    pub key: String,
    /// Its label.
    pub label: String,
    /// `production`, `sandbox` or `read_only`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When it was created (RFC 3339, UTC).
    pub created_at: String,
}

/// A rotation's new key and the key it replaces.
#[derive(Serialize, ToSchema)]
pub struct RotatedKeyBody {
    /// The new key.
    #[serde(flatten)]
    pub created: CreatedKeyBody,
    /// The id of the key it replaces.
    pub replaces: String,
    /// Until when the old key keeps working (RFC 3339, UTC).
    pub old_key_valid_until: String,
}

/// A key as listed, without its value.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// The key's id (`key_…`).
    pub id: String,
    /// Its label.
    pub label: String,
    /// `production`, `sandbox` or `read_only`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    /// `active`, `retiring`, `revoked` or `expired`.
    pub status: String,
    /// When it was created (RFC 3339, UTC).
    pub created_at: String,
    /// When it last authenticated a request.
    pub last_used_at: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<String>,
    /// When it stops working.
    pub expires_at: Option<String>,
    /// Whether it is an active key old enough to be rotated.
    pub rotation_due: bool,
}

/// `GET /v1/keys`.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    /// The account's keys.
    pub data: Vec<KeyView>,
}

/// One key's allowlist.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyAllowlist {
    /// The key's id.
    pub key_id: String,
    /// Its networks, normalised.
    pub cidrs: Vec<String>,
}

/// Creates a key; the only response that ever contains its value. A retry
/// with the same `X-Request-ID` gets 409 `KEY_ALREADY_CREATED` naming the
/// key (the idempotency store keeps that, never the value).
#[utoipa::path(
    post,
    operation_id = "create_key",
    path = "/v1/keys",
    tag = "keys",
    request_body = CreateKey,
    responses(
        (status = 201, description = "The new key, shown this once.", body = CreatedKeyBody),
        (status = 403, description = "Only a Production key may create keys (`FORBIDDEN`), or the address is not allowed.", body = ErrorBody),
        (status = 409, description = "The account has its most keys (`KEY_LIMIT_REACHED`), a retry of a creation (`KEY_ALREADY_CREATED`, with `key_id`), or the first request with this `X-Request-ID` is still running.", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: Option<ClientIp>,
    ApiJson(request): ApiJson<CreateKey>,
) -> Result<Response, ApiError> {
    let created = create_key(&state, &principal, client_ip, request.label, &request.kind).await?;
    let body = created_body(&created);
    Ok(shown_once(body, already_created(&created.info.id, None)))
}

/// Creates a key of `kind` (`production`, `sandbox`, `read_only`) for the
/// principal's account and records it in the audit log: what
/// `POST /v1/keys` and the dashboard both do.
pub async fn create_key(
    state: &AppState,
    principal: &Principal,
    client_ip: Option<ClientIp>,
    label: String,
    kind: &str,
) -> Result<CreatedKey, ApiError> {
    let kind = KeyKind::parse(kind)
        .ok_or_else(|| ApiError::invalid("\"type\" must be \"production\", \"sandbox\" or \"read_only\""))?;
    let new = NewKey::new(principal.account_id(), kind)
        .label(label)
        .plan(state.plan_name(principal.account_id()));
    let created = state.keys().create(new).await?;
    let details = json!({ "type": created.info.kind.as_str(), "label": created.info.label });
    record_change(
        state,
        principal,
        client_ip,
        Action::KeyCreated,
        &created.info.id,
        details,
    )
    .await;
    Ok(created)
}

/// How long a revoked key stays in `GET /v1/keys`: long enough to see what
/// happened to it, short enough that a list never grows without end however
/// many keys an account creates and revokes.
pub const REVOKED_KEYS_LISTED_FOR: Duration = Duration::from_secs(30 * 86_400);

/// Lists the account's keys, without secrets: every key that is not
/// revoked, and those revoked within [`REVOKED_KEYS_LISTED_FOR`].
#[utoipa::path(
    get,
    operation_id = "list_keys",
    path = "/v1/keys",
    tag = "keys",
    responses((status = 200, description = "The account's keys.", body = KeyList))
)]
pub async fn list(State(state): State<AppState>, principal: Principal) -> Result<Json<KeyList>, ApiError> {
    let data = list_views(&state, principal.account_id()).await?;
    Ok(Json(KeyList { data }))
}

/// The account's keys as `GET /v1/keys` lists them.
pub async fn list_views(state: &AppState, account_id: &str) -> Result<Vec<KeyView>, ApiError> {
    let keys = state.keys().list(account_id).await?;
    let now = state.now();
    let shown_since = now
        .checked_sub(REVOKED_KEYS_LISTED_FOR)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let rotation_age = state.config().rotation_age();
    let data: Vec<KeyView> = keys
        .iter()
        .filter(|key| key.revoked_at.is_none_or(|at| at > shown_since))
        .map(|key| info_json(key, now, rotation_age))
        .collect();
    Ok(data)
}

/// Revokes a key at once.
#[utoipa::path(
    delete,
    operation_id = "revoke_key",
    path = "/v1/keys/{id}",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id (`key_…`).")),
    responses(
        (status = 204, description = "Revoked."),
        (status = 404, description = "No such key in the account (`NOT_FOUND`).", body = ErrorBody),
        (status = 409, description = "Already revoked (`KEY_REVOKED`) or expired (`KEY_EXPIRED`).", body = ErrorBody),
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: Option<ClientIp>,
    ApiPath(key_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    revoke_key(&state, &principal, client_ip, &key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes one of the principal's account's keys and records it.
pub async fn revoke_key(
    state: &AppState,
    principal: &Principal,
    client_ip: Option<ClientIp>,
    key_id: &str,
) -> Result<(), ApiError> {
    state.keys().revoke(principal.account_id(), key_id).await?;
    record_change(state, principal, client_ip, Action::KeyRevoked, key_id, json!({})).await;
    Ok(())
}

/// Replaces a key; the old one keeps working for the configured grace period.
/// A retry with the same `X-Request-ID` gets 409 `KEY_ALREADY_CREATED`
/// naming the new key and the one it replaces.
#[utoipa::path(
    post,
    operation_id = "rotate_key",
    path = "/v1/keys/{id}/rotate",
    tag = "keys",
    params(("id" = String, Path, description = "The id of the key to replace (`key_…`).")),
    responses(
        (status = 201, description = "The new key, shown this once.", body = RotatedKeyBody),
        (status = 404, description = "No such key in the account (`NOT_FOUND`).", body = ErrorBody),
        (status = 409, description = "The key is revoked, expired or already being replaced, the account has its most keys, or a retry of a rotation (`KEY_ALREADY_CREATED`, with `key_id` and `replaces`).", body = ErrorBody),
    )
)]
pub async fn rotate(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: Option<ClientIp>,
    ApiPath(key_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let (created, valid_until) = rotate_key(&state, &principal, client_ip, &key_id).await?;
    let body = RotatedKeyBody {
        created: created_body(&created),
        replaces: key_id.clone(),
        old_key_valid_until: valid_until,
    };
    Ok(shown_once(body, already_created(&created.info.id, Some(&key_id))))
}

/// Replaces a key (the old one works for the configured grace period)
/// and records it: the new key and until when the old one works (RFC 3339).
pub async fn rotate_key(
    state: &AppState,
    principal: &Principal,
    client_ip: Option<ClientIp>,
    key_id: &str,
) -> Result<(CreatedKey, String), ApiError> {
    let grace = state.config().rotation_grace();
    let created = state.keys().rotate(principal.account_id(), key_id, grace).await?;
    let valid_until = rfc3339(state.now() + grace);
    let details = json!({ "new_key_id": created.info.id, "old_key_valid_until": valid_until });
    record_change(state, principal, client_ip, Action::KeyRotated, key_id, details).await;
    Ok((created, valid_until))
}

/// Restricts one key to a list of networks.
#[utoipa::path(
    put,
    operation_id = "set_key_ip_allowlist",
    path = "/v1/keys/{id}/ip-allowlist",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id (`key_…`).")),
    request_body = CidrList,
    responses(
        (status = 200, description = "The key's allowlist as stored.", body = KeyAllowlist),
        (status = 404, description = "No such key in the account (`NOT_FOUND`).", body = ErrorBody),
    )
)]
pub async fn set_ip_allowlist(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: Option<ClientIp>,
    ApiPath(key_id): ApiPath<String>,
    ApiJson(request): ApiJson<CidrList>,
) -> Result<Json<KeyAllowlist>, ApiError> {
    let cidrs = set_key_allowlist(&state, &principal, client_ip, &key_id, &request.cidrs).await?;
    Ok(Json(KeyAllowlist { key_id, cidrs }))
}

/// Replaces one key's allowlist (the key must be the account's) and
/// records it; the list as stored.
pub async fn set_key_allowlist(
    state: &AppState,
    principal: &Principal,
    client_ip: Option<ClientIp>,
    key_id: &str,
    cidrs: &[String],
) -> Result<Vec<String>, ApiError> {
    state.keys().get(principal.account_id(), key_id).await?;
    let set = crate::routes::security::parse_cidrs(cidrs)?;
    let cidrs = crate::routes::security::cidr_strings(&set);
    state
        .allowlists()
        .set_key_allowlist(key_id, set)
        .await
        .map_err(ApiError::unavailable)?;
    let details = json!({ "networks": cidrs.len() });
    record_change(state, principal, client_ip, Action::KeyAllowlistSet, key_id, details).await;
    Ok(cidrs)
}

/// Removes one key's allowlist; 204 whether or not it had one.
#[utoipa::path(
    delete,
    operation_id = "clear_key_ip_allowlist",
    path = "/v1/keys/{id}/ip-allowlist",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id (`key_…`).")),
    responses(
        (status = 204, description = "Removed."),
        (status = 404, description = "No such key in the account (`NOT_FOUND`).", body = ErrorBody),
    )
)]
pub async fn clear_ip_allowlist(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: Option<ClientIp>,
    ApiPath(key_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    clear_key_allowlist(&state, &principal, client_ip, &key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes one key's allowlist (the key must be the account's) and records it.
pub async fn clear_key_allowlist(
    state: &AppState,
    principal: &Principal,
    client_ip: Option<ClientIp>,
    key_id: &str,
) -> Result<(), ApiError> {
    state.keys().get(principal.account_id(), key_id).await?;
    state
        .allowlists()
        .clear_key_allowlist(key_id)
        .await
        .map_err(ApiError::unavailable)?;
    record_change(
        state,
        principal,
        client_ip,
        Action::KeyAllowlistRemoved,
        key_id,
        json!({}),
    )
    .await;
    Ok(())
}

/// A 201 showing a new key's value, marked so that the idempotency layer
/// stores `instead` for retries, never the value.
fn shown_once(body: impl Serialize, instead: StoredReplacement) -> Response {
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

fn created_body(created: &CreatedKey) -> CreatedKeyBody {
    CreatedKeyBody {
        id: created.info.id.clone(),
        key: created.secret.expose_secret().to_owned(),
        label: created.info.label.clone(),
        kind: created.info.kind.as_str().to_owned(),
        created_at: rfc3339(created.info.created_at),
    }
}

// Due for rotation: an active key at least the rotation age old (a retiring
// key is being replaced already; a revoked or expired one is not in use).
fn rotation_due(key: &KeyInfo, now: SystemTime, rotation_age: Duration) -> bool {
    key.status_at(now) == KeyStatus::Active && now.duration_since(key.created_at).is_ok_and(|age| age >= rotation_age)
}

fn info_json(key: &KeyInfo, now: SystemTime, rotation_age: Duration) -> KeyView {
    KeyView {
        id: key.id.clone(),
        label: key.label.clone(),
        kind: key.kind.as_str().to_owned(),
        prefix: key.display_prefix.clone(),
        status: key.status_at(now).as_str().to_owned(),
        created_at: rfc3339(key.created_at),
        last_used_at: key.last_used_at.map(rfc3339),
        revoked_at: key.revoked_at.map(rfc3339),
        expires_at: key.expires_at.map(rfc3339),
        rotation_due: rotation_due(key, now, rotation_age),
    }
}
