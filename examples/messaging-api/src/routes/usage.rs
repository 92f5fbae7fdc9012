//! `GET /v1/usage`: today's counts per key of the account, with the plan's
//! limits; with `?days=N` (1 to 90) each key also has its counts for each
//! of the last `N` UTC days, today included, **oldest first**, days without
//! requests as zeros, so `days` always has `N` entries.

use axum::extract::{RawQuery, State};
use axum::Json;
use serde::Serialize;
use tollgate_core::usage::Day;
use tollgate_core::{unix_secs, Principal};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::routes::bounded_query_param;
use crate::state::AppState;
use crate::time::rfc3339;

/// The most days `?days=` reads: what the usage store keeps.
pub const MAX_DAYS: u32 = 90;

/// The query of `GET /v1/usage` (read from the raw query, so a bad value
/// is the API's own 400).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Also each key's counts for each of the last `days` UTC days.
    #[param(minimum = 1, maximum = 90)]
    pub days: Option<u32>,
}

/// `GET /v1/usage`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    /// Today (UTC), `YYYY-MM-DD`.
    pub date: String,
    /// The account's plan.
    pub plan: PlanView,
    /// Each key's counts.
    pub keys: Vec<KeyUsage>,
}

/// A plan's limits.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    /// Its name.
    pub name: String,
    /// The sustained rate.
    pub requests_per_second: u32,
    /// The most requests at once.
    pub burst: u32,
    /// Requests per UTC day; `null` for no daily limit.
    pub daily_limit: Option<u64>,
}

/// One key's counts today, and per day with `?days=`.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyUsage {
    /// The key's id.
    pub key_id: String,
    /// Its label.
    pub label: String,
    /// Requests today.
    pub requests: u64,
    /// Requests refused by the rate limit today.
    pub rate_limited: u64,
    /// With `?days=N`: `N` days, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days: Option<Vec<DayUsage>>,
}

/// One UTC day's counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct DayUsage {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Requests that day.
    pub requests: u64,
    /// Requests refused by the rate limit that day.
    pub rate_limited: u64,
}

/// Usage of every key of the caller's account.
#[utoipa::path(
    get,
    operation_id = "get_usage",
    path = "/v1/usage",
    tag = "usage",
    params(UsageQuery),
    responses((status = 200, description = "Usage of the account's keys.", body = UsageReport))
)]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Json<UsageReport>, ApiError> {
    let days = bounded_query_param(query.as_deref().unwrap_or(""), "days", MAX_DAYS)?;
    Ok(Json(report(&state, principal.account_id(), days).await?))
}

/// The usage report of `GET /v1/usage` for an account, with `days` of
/// history per key when given.
pub async fn report(state: &AppState, account_id: &str, days: Option<u32>) -> Result<UsageReport, ApiError> {
    let keys = state.keys().list(account_id).await?;
    let now = state.now();
    let today = Day::from_unix_secs(unix_secs(now));
    let plan = state.plan(account_id);
    // This instance's counts into the store once, then every key is a read.
    state.usage().flush().await.map_err(ApiError::unavailable)?;
    let mut data: Vec<KeyUsage> = Vec::with_capacity(keys.len());
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
        let per_day = days.map(|days| {
            (0..days)
                .rev()
                .map(|back| {
                    let day = Day(today.0.saturating_sub(back));
                    let counts = history.iter().find(|used| used.day == day);
                    DayUsage {
                        date: date_of(day),
                        requests: counts.map_or(0, |used| used.requests),
                        rate_limited: counts.map_or(0, |used| used.rate_limited),
                    }
                })
                .collect()
        });
        data.push(KeyUsage {
            key_id: key.id.clone(),
            label: key.label.clone(),
            requests,
            rate_limited,
            days: per_day,
        });
    }
    Ok(UsageReport {
        date: rfc3339(now)[..10].to_owned(),
        plan: PlanView {
            name: plan.name,
            requests_per_second: plan.per_second,
            burst: plan.burst,
            daily_limit: plan.daily_quota,
        },
        keys: data,
    })
}

// `YYYY-MM-DD`.
fn date_of(day: Day) -> String {
    let start = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(day.0) * 86_400);
    rfc3339(start)[..10].to_owned()
}
