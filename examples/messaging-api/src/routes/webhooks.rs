//! `PUT /v1/webhooks`: the account's webhook URL, answered with a fresh
//! signing secret shown this once.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use tollgate_core::{ClientIp, Principal};
use tollgate_idempotency::Storable;
use tollgate_webhook::WebhookSecret;

use crate::audit::Action;
use crate::error::{ApiError, ApiJson};
use crate::routes::keys::audit;
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
///
/// The answer is marked [`Storable::Skip`]: an idempotency store never
/// keeps the secret, and a retry with the same key (were `PUT` deduplicated;
/// the server's layer deduplicates `POST` and `PATCH`) runs again and
/// issues a fresh secret, which replaces the first; setting a URL twice is
/// harmless.
pub async fn set(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: Option<ClientIp>,
    ApiJson(request): ApiJson<SetWebhook>,
) -> Result<Response, ApiError> {
    let url = state.check_webhook_url(&request.url).await?;
    let secret = WebhookSecret::generate().map_err(ApiError::unavailable)?;
    let body = json!({ "url": url, "secret": secret.expose() });
    let previous_url = state
        .webhooks()
        .get(principal.account_id())
        .await
        .map_err(ApiError::unavailable)?
        .map(|endpoint| endpoint.url);
    let details = json!({ "url": url, "previous_url": previous_url, "secret_changed": true });
    state
        .webhooks()
        .set(principal.account_id(), WebhookEndpoint { url, secret }, state.now())
        .await
        .map_err(ApiError::unavailable)?;
    let account_id = principal.account_id();
    audit(&state, &principal, client_ip, Action::WebhookSet, account_id, details).await;
    let mut response = Json(body).into_response();
    response.extensions_mut().insert(Storable::Skip);
    Ok(response)
}
