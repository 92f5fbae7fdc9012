//! `GET /health/ready`: whether this instance can serve requests that need
//! its stores. Each configured dependency is checked with one round trip,
//! bounded by the store timeout; any failing one makes the answer 503, so
//! a load balancer stops routing here until it recovers (no restart needed).
//! `GET /health` stays a liveness check that touches nothing.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use serde_json::{json, Value};

use crate::state::AppState;

/// The readiness check.
pub async fn ready(State(state): State<AppState>) -> Response {
    let Some(service) = &state.stores().service else {
        return Json(json!({"status": "ready", "checks": {}})).into_response();
    };
    let database = match service.database.ping().await {
        Ok(()) => Check::Ok,
        Err(error) => {
            tracing::warn!(%error, "readiness: database unavailable");
            Check::Unavailable
        }
    };
    let redis = match &service.redis {
        None => Check::NotConfigured,
        Some(redis) => match tokio::time::timeout(service.database.timeout(), redis.ping()).await {
            Ok(Ok(())) => Check::Ok,
            Ok(Err(error)) => {
                tracing::warn!(%error, "readiness: Redis unavailable");
                Check::Unavailable
            }
            Err(_) => Check::Unavailable,
        },
    };
    // On PostgreSQL, the listener that delivers other instances' key
    // changes; while it reconnects, revocations elsewhere take up to the
    // cache's one-second TTL to apply here.
    let change_listener = match &service.changes {
        None => Check::NotConfigured,
        Some((changes, _)) if changes.is_connected() => Check::Ok,
        Some(_) => Check::Unavailable,
    };
    let checks = [database, redis, change_listener];
    let ready = checks.iter().all(|check| *check != Check::Unavailable);
    let body: Value = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "checks": {
            "database": database.as_str(),
            "redis": redis.as_str(),
            "change_listener": change_listener.as_str(),
        },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Ok,
    Unavailable,
    NotConfigured,
}

impl Check {
    fn as_str(self) -> &'static str {
        match self {
            Check::Ok => "ok",
            Check::Unavailable => "unavailable",
            Check::NotConfigured => "not_configured",
        }
    }
}
