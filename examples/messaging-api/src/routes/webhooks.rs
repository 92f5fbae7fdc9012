//! `PUT /v1/webhooks`: the account's webhook URL, answered with a fresh
//! signing secret shown this once; `POST /v1/webhooks/secret/rotate`: a
//! new secret, the old one signing too for a grace period.

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
use crate::time::rfc3339;
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
    let body = set_webhook(&state, &principal, client_ip, &request.url).await?;
    let mut response = Json(body).into_response();
    response.extensions_mut().insert(Storable::Skip);
    Ok(response)
}

/// Checks `url` with the URL guard, sets it as the account's webhook with a
/// fresh signing secret and records it: what `PUT /v1/webhooks` and the
/// dashboard both do.
pub async fn set_webhook(
    state: &AppState,
    principal: &Principal,
    client_ip: Option<ClientIp>,
    url: &str,
) -> Result<WebhookSet, ApiError> {
    let url = state.check_webhook_url(url).await?;
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
        .set(principal.account_id(), WebhookEndpoint::new(url, secret), state.now())
        .await
        .map_err(ApiError::unavailable)?;
    let account_id = principal.account_id();
    record_change(state, principal, client_ip, Action::WebhookSet, account_id, details).await;
    Ok(body)
}

/// A rotated signing secret, shown this once (no `Debug`, so the secret
/// cannot reach a log).
#[derive(Serialize, ToSchema)]
pub struct SecretRotated {
    /// The webhook's URL.
    pub url: String,
    /// The new signing secret (`whsec_…`).
    pub secret: String,
    /// Until when deliveries also carry a signature by the old secret (RFC 3339, UTC).
    pub previous_secret_valid_until: String,
}

/// Issues a new signing secret for the account's webhook. Until
/// `previous_secret_valid_until` (the configured grace period, 24 hours by
/// default) every delivery's `webhook-signature` carries one signature by
/// the new secret and one by the old, so the receiver can switch at any
/// moment of it; `X-Webhook-Signature` (one signature) is the new
/// secret's at once.
///
/// A rotation during a grace period replaces the new secret and keeps the
/// old one with its deadline: receivers that have not switched are not
/// cut off, and a retried request is harmless. The answer is marked
/// [`Storable::Skip`]: no idempotency store keeps the secret.
#[utoipa::path(
    post,
    operation_id = "rotate_webhook_secret",
    path = "/v1/webhooks/secret/rotate",
    tag = "webhooks",
    responses(
        (status = 201, description = "The new signing secret, shown this once.", body = SecretRotated),
        (status = 403, description = "Only a Production key may rotate the secret (`FORBIDDEN`), or the address is not allowed.", body = ErrorBody),
        (status = 404, description = "The account has no webhook (`NOT_FOUND`).", body = ErrorBody),
    )
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: Option<ClientIp>,
) -> Result<Response, ApiError> {
    let body = rotate_webhook_secret(&state, &principal, client_ip).await?;
    let mut response = (http::StatusCode::CREATED, Json(body)).into_response();
    response.extensions_mut().insert(Storable::Skip);
    Ok(response)
}

/// Rotates the account's signing secret (see [`rotate_secret`]) and records it.
pub async fn rotate_webhook_secret(
    state: &AppState,
    principal: &Principal,
    client_ip: Option<ClientIp>,
) -> Result<SecretRotated, ApiError> {
    let account_id = principal.account_id();
    let endpoint = state
        .webhooks()
        .get(account_id)
        .await
        .map_err(ApiError::unavailable)?
        .ok_or_else(|| ApiError::not_found("Webhook"))?;
    let secret = WebhookSecret::generate().map_err(ApiError::unavailable)?;
    let now = state.now();
    let rotated = endpoint.rotated(secret, now, state.config().webhook_secret_grace());
    let until = rfc3339(rotated.previous.as_ref().map_or(now, |previous| previous.until));
    let body = SecretRotated {
        url: rotated.url.clone(),
        secret: rotated.secret.expose().to_owned(),
        previous_secret_valid_until: until.clone(),
    };
    state
        .webhooks()
        .set(account_id, rotated, now)
        .await
        .map_err(ApiError::unavailable)?;
    let details = json!({ "url": body.url, "previous_secret_valid_until": until });
    record_change(
        state,
        principal,
        client_ip,
        Action::WebhookSecretRotated,
        account_id,
        details,
    )
    .await;
    Ok(body)
}
