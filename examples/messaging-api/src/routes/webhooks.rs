//! `PUT /v1/webhooks`: the account's webhook URL, answered with a fresh
//! signing secret shown this once.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tollgate_core::{ClientIp, Principal};
use tollgate_idempotency::Storable;
use tollgate_webhook::WebhookSecret;
use utoipa::ToSchema;

use crate::audit::Action;
use crate::error::{ApiError, ApiJson};
use crate::openapi::ErrorBody;
use crate::routes::record_change;
use crate::state::AppState;
use crate::webhooks::WebhookEndpoint;

/// The body of `PUT /v1/webhooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetWebhook {
    /// Where events go: an `https://` URL of a public host.
    #[schema(pattern = "^[hH][tT][tT][pP][sS]?://")]
    pub url: String,
}

/// The webhook as set, with its new signing secret, shown this once (no
/// `Debug`, so the secret cannot reach a log).
#[derive(Serialize, ToSchema)]
pub struct WebhookSet {
    /// The URL, normalised.
    pub url: String,
    /// The signing secret (`whsec_…`).
    pub secret: String,
}

/// Sets the webhook URL and issues a new signing secret.
///
/// The answer is marked [`Storable::Skip`]: an idempotency store never
/// keeps the secret, and a retry with the same key (were `PUT` deduplicated;
/// the server's layer deduplicates `POST` and `PATCH`) runs again and
/// issues a fresh secret, which replaces the first; setting a URL twice is
/// harmless.
#[utoipa::path(
    put,
    operation_id = "set_webhook",
    path = "/v1/webhooks",
    tag = "webhooks",
    request_body = SetWebhook,
    responses(
        (status = 200, description = "The webhook and its new signing secret.", body = WebhookSet),
        (status = 400, description = "An invalid body (`INVALID_REQUEST`), or a URL that is refused (`INVALID_WEBHOOK_URL`).", body = ErrorBody),
        (status = 403, description = "Only a Production key may set the webhook (`FORBIDDEN`), or the address is not allowed.", body = ErrorBody),
    )
)]
pub async fn set(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: Option<ClientIp>,
    ApiJson(request): ApiJson<SetWebhook>,
) -> Result<Response, ApiError> {
    let url = state.check_webhook_url(&request.url).await?;
    let secret = WebhookSecret::generate().map_err(ApiError::unavailable)?;
    let body = WebhookSet {
        url: url.clone(),
        secret: secret.expose().to_owned(),
    };
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
    record_change(&state, &principal, client_ip, Action::WebhookSet, account_id, details).await;
    let mut response = Json(body).into_response();
    response.extensions_mut().insert(Storable::Skip);
    Ok(response)
}
