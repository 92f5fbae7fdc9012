//! `GET /v1/usage`: today's counts per key of the account, with the plan's limits.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use tollgate_core::Principal;

use crate::error::ApiError;
use crate::state::AppState;
use crate::time::rfc3339;

/// Today's usage of every key of the caller's account.
pub async fn get(State(state): State<AppState>, principal: Principal) -> Result<Json<Value>, ApiError> {
    let keys = state.keys().list(principal.account_id()).await?;
    let now = state.now();
    let plan = state.plan(principal.account_id());
    // This instance's counts into the store once, then every key is a read.
    state.usage().flush().await.map_err(ApiError::unavailable)?;
    let mut data: Vec<Value> = Vec::with_capacity(keys.len());
    for key in &keys {
        let (requests, rate_limited) = state
            .usage()
            .requests_today(&key.id)
            .await
            .map_err(ApiError::unavailable)?;
        if key.status_at(now).as_str() != "revoked" || requests > 0 {
            data.push(
                json!({ "key_id": key.id, "label": key.label, "requests": requests, "rate_limited": rate_limited }),
            );
        }
    }
    Ok(Json(json!({
        "date": &rfc3339(now)[..10],
        "plan": {
            "name": plan.name,
            "requests_per_second": plan.per_second,
            "burst": plan.burst,
            "daily_limit": plan.daily_quota,
        },
        "keys": data,
    })))
}
