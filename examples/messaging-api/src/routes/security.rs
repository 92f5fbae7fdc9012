//! The account's IP allowlist: `PUT/GET/DELETE /v1/security/ip-allowlist`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use serde_json::json;
use tollgate_core::allowlist::IpSet;
use tollgate_core::{ClientIp, Principal};
use utoipa::ToSchema;

use crate::audit::Action;
use crate::error::{ApiError, ApiJson};
use crate::routes::keys::CidrList;
use crate::routes::record_change;
use crate::state::AppState;

/// The most networks one list may hold.
pub const MAX_CIDRS: usize = 10_000;

/// The account's allowlist as stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountAllowlist {
    /// Its networks, normalised.
    pub cidrs: Vec<String>,
}

/// The account's allowlist as read: `null` when there is none.
#[derive(Debug, Serialize, ToSchema)]
pub struct MaybeAllowlist {
    /// Its networks, or `null` for no restriction.
    pub cidrs: Option<Vec<String>>,
}

/// Replaces the account's allowlist.
#[utoipa::path(
    put,
    operation_id = "set_account_ip_allowlist",
    path = "/v1/security/ip-allowlist",
    tag = "security",
    request_body = CidrList,
    responses((status = 200, description = "The allowlist as stored.", body = AccountAllowlist))
)]
pub async fn set(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: Option<ClientIp>,
    ApiJson(request): ApiJson<CidrList>,
) -> Result<Json<AccountAllowlist>, ApiError> {
    let cidrs = set_account_allowlist(&state, &principal, client_ip, &request.cidrs).await?;
    Ok(Json(AccountAllowlist { cidrs }))
}

/// Replaces the principal's account's allowlist and records it; the list as stored.
pub async fn set_account_allowlist(
    state: &AppState,
    principal: &Principal,
    client_ip: Option<ClientIp>,
    cidrs: &[String],
) -> Result<Vec<String>, ApiError> {
    let set = parse_cidrs(cidrs)?;
    let cidrs = cidr_strings(&set);
    state
        .allowlists()
        .set_account_allowlist(principal.account_id(), set)
        .await
        .map_err(ApiError::unavailable)?;
    let details = json!({ "networks": cidrs.len() });
    let account_id = principal.account_id();
    record_change(
        state,
        principal,
        client_ip,
        Action::AccountAllowlistSet,
        account_id,
        details,
    )
    .await;
    Ok(cidrs)
}

/// Removes the account's allowlist, so every address is allowed again;
/// 204 whether or not there was one.
#[utoipa::path(
    delete,
    operation_id = "clear_account_ip_allowlist",
    path = "/v1/security/ip-allowlist",
    tag = "security",
    responses((status = 204, description = "Removed."))
)]
pub async fn clear(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: Option<ClientIp>,
) -> Result<StatusCode, ApiError> {
    clear_account_allowlist(&state, &principal, client_ip).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes the principal's account's allowlist and records it.
pub async fn clear_account_allowlist(
    state: &AppState,
    principal: &Principal,
    client_ip: Option<ClientIp>,
) -> Result<(), ApiError> {
    state
        .allowlists()
        .clear_account_allowlist(principal.account_id())
        .await
        .map_err(ApiError::unavailable)?;
    let account_id = principal.account_id();
    record_change(
        state,
        principal,
        client_ip,
        Action::AccountAllowlistRemoved,
        account_id,
        json!({}),
    )
    .await;
    Ok(())
}

/// Reads the account's allowlist (`null` when there is none).
#[utoipa::path(
    get,
    operation_id = "get_account_ip_allowlist",
    path = "/v1/security/ip-allowlist",
    tag = "security",
    responses((status = 200, description = "The allowlist.", body = MaybeAllowlist))
)]
pub async fn get(State(state): State<AppState>, principal: Principal) -> Result<Json<MaybeAllowlist>, ApiError> {
    let cidrs = account_allowlist(&state, principal.account_id()).await?;
    Ok(Json(MaybeAllowlist { cidrs }))
}

/// The account's allowlist, `None` when there is none.
pub async fn account_allowlist(state: &AppState, account_id: &str) -> Result<Option<Vec<String>>, ApiError> {
    let list = state
        .allowlists()
        .account_allowlist(account_id)
        .await
        .map_err(ApiError::unavailable)?;
    Ok(list.map(|set| cidr_strings(&set)))
}

/// Why an empty list is refused: it would lock every client out, including
/// the one that could fix it.
pub const EMPTY_LIST: &str = "An empty list would allow no address; use DELETE to remove the restriction.";

/// Parses a request's CIDR strings; the error names the first bad entry.
/// An empty list is refused ([`EMPTY_LIST`]).
pub fn parse_cidrs(cidrs: &[String]) -> Result<IpSet, ApiError> {
    if cidrs.is_empty() {
        return Err(ApiError::invalid(EMPTY_LIST));
    }
    if cidrs.len() > MAX_CIDRS {
        return Err(ApiError::invalid(format!("at most {MAX_CIDRS} networks per list")));
    }
    IpSet::parse(cidrs.iter().map(String::as_str)).map_err(|error| ApiError::invalid(error.to_string()))
}

/// The networks of a set, as strings.
pub fn cidr_strings(set: &IpSet) -> Vec<String> {
    set.networks().iter().map(ToString::to_string).collect()
}
