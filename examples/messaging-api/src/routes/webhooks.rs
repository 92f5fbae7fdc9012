//! `PUT /v1/webhooks`: the account's webhook URL, answered with a fresh
//! signing secret shown this once.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tollgate_core::Principal;
use tollgate_webhook::WebhookSecret;

use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use crate::webhooks::WebhookEndpoint;

/// The body of `PUT /v1/webhooks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetWebhook {
    /// Where events go.
    pub url: String,
}

/// Sets the webhook URL and issues a new signing secret.
pub async fn set(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(request): ApiJson<SetWebhook>,
) -> Result<Json<Value>, ApiError> {
    let url = state.check_webhook_url(&request.url).await?;
    let secret = WebhookSecret::generate().map_err(ApiError::unavailable)?;
    let body = json!({ "url": url, "secret": secret.expose() });
    state
        .webhooks()
        .set(principal.account_id(), WebhookEndpoint { url, secret });
    Ok(Json(body))
}
