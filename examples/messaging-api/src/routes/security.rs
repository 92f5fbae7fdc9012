//! The account's IP allowlist: `PUT/GET /v1/security/ip-allowlist`.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use tollgate_core::allowlist::IpSet;
use tollgate_core::Principal;

use crate::error::{ApiError, ApiJson};
use crate::routes::keys::CidrList;
use crate::state::AppState;

/// The most networks one list may hold.
pub const MAX_CIDRS: usize = 10_000;

/// Replaces the account's allowlist.
pub async fn set(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(request): ApiJson<CidrList>,
) -> Result<Json<Value>, ApiError> {
    let set = parse_cidrs(&request.cidrs)?;
    let cidrs = cidr_strings(&set);
    state
        .allowlists()
        .set_account_allowlist(principal.account_id(), set)
        .await
        .map_err(ApiError::unavailable)?;
    Ok(Json(json!({ "cidrs": cidrs })))
}

/// Reads the account's allowlist (`null` when there is none).
pub async fn get(State(state): State<AppState>, principal: Principal) -> Result<Json<Value>, ApiError> {
    let list = state
        .allowlists()
        .account_allowlist(principal.account_id())
        .await
        .map_err(ApiError::unavailable)?;
    Ok(Json(json!({ "cidrs": list.map(|set| cidr_strings(&set)) })))
}

/// Parses a request's CIDR strings; the error names the first bad entry.
pub fn parse_cidrs(cidrs: &[String]) -> Result<IpSet, ApiError> {
    if cidrs.len() > MAX_CIDRS {
        return Err(ApiError::invalid(format!("at most {MAX_CIDRS} networks per list")));
    }
    IpSet::parse(cidrs.iter().map(String::as_str)).map_err(|error| ApiError::invalid(error.to_string()))
}

/// The networks of a set, as strings.
pub fn cidr_strings(set: &IpSet) -> Vec<String> {
    set.networks().iter().map(ToString::to_string).collect()
}
