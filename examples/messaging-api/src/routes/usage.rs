//! `GET /v1/usage`: today's counts per key of the account, with the plan's
//! limits; with `?days=N` (1 to 90) each key also has its counts for each
//! of the last `N` UTC days, today included, **oldest first**, days without
//! requests as zeros, so `days` always has `N` entries.

use axum::extract::{RawQuery, State};
use axum::Json;
use serde_json::{json, Value};
use tollgate_core::usage::Day;
use tollgate_core::{unix_secs, Principal};

use crate::error::ApiError;
use crate::routes::query_param;
use crate::state::AppState;
use crate::time::rfc3339;

/// The most days `?days=` reads: what the usage store keeps.
pub const MAX_DAYS: u32 = 90;

/// Usage of every key of the caller's account.
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let days = match query_param(query.as_deref().unwrap_or(""), "days") {
        None => None,
        Some(text) => Some(
            text.parse::<u32>()
                .ok()
                .filter(|days| (1..=MAX_DAYS).contains(days))
                .ok_or_else(|| ApiError::invalid(format!("\"days\" must be a whole number from 1 to {MAX_DAYS}")))?,
        ),
    };
    let keys = state.keys().list(principal.account_id()).await?;
    let now = state.now();
    let today = Day::from_unix_secs(unix_secs(now));
    let plan = state.plan(principal.account_id());
    // This instance's counts into the store once, then every key is a read.
    state.usage().flush().await.map_err(ApiError::unavailable)?;
    let mut data: Vec<Value> = Vec::with_capacity(keys.len());
    for key in &keys {
        let history = state
            .usage()
            .last_days(&key.id, days.unwrap_or(1))
            .await
            .map_err(ApiError::unavailable)?;
        let (requests, rate_limited) = history
            .iter()
            .filter(|day| day.day == today)
            .fold((0, 0), |(requests, limited), day| {
                (requests + day.requests, limited + day.rate_limited)
            });
        if key.status_at(now).as_str() == "revoked" && requests == 0 && history.iter().all(|day| day.requests == 0) {
            continue;
        }
        let mut entry =
            json!({ "key_id": key.id, "label": key.label, "requests": requests, "rate_limited": rate_limited });
        if let Some(days) = days {
            entry["days"] = (0..days)
                .rev()
                .map(|back| {
                    let day = Day(today.0.saturating_sub(back));
                    let counts = history.iter().find(|used| used.day == day);
                    json!({
                        "date": date_of(day),
                        "requests": counts.map_or(0, |used| used.requests),
                        "rate_limited": counts.map_or(0, |used| used.rate_limited),
                    })
                })
                .collect::<Vec<Value>>()
                .into();
        }
        data.push(entry);
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

// `YYYY-MM-DD`.
fn date_of(day: Day) -> String {
    let start = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(day.0) * 86_400);
    rfc3339(start)[..10].to_owned()
}
