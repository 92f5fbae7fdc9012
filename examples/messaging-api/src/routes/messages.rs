//! `POST /v1/messages` and `GET /v1/messages/{id}`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use tollgate_core::{Environment, Principal};

use crate::delivery::Event;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::messages::{new_message_id, Message, SendMessage, Status};
use crate::middleware::WebhookOverride;
use crate::openapi::ErrorBody;
use crate::state::AppState;
use crate::webhooks::WebhookEndpoint;

/// Creates a message, answered `queued`. A live message is then handed to
/// the (simulated) carrier in the background and becomes `sent`; each of
/// its statuses is a `message.status` event to the webhook — the
/// `X-Webhook-URL` override (checked by
/// [`check_webhook_url`](crate::middleware::check_webhook_url)) or the
/// account's. Sandbox messages stay queued and are never delivered.
#[utoipa::path(
    post,
    operation_id = "send_message",
    path = "/v1/messages",
    tag = "messages",
    request_body = SendMessage,
    params(
        ("X-Webhook-URL" = Option<String>, Header,
         description = "Where this message's status events go instead of the account's webhook (https; the account's webhook must be set)."),
    ),
    responses(
        (status = 201, description = "Accepted, `queued`.", body = Message),
        (status = 400, description = "An invalid message (`INVALID_REQUEST`) or `X-Webhook-URL` (`INVALID_WEBHOOK_URL`).", body = ErrorBody),
    )
)]
pub async fn send(
    State(state): State<AppState>,
    principal: Principal,
    webhook_override: Option<Extension<WebhookOverride>>,
    ApiJson(request): ApiJson<SendMessage>,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    request.validate().map_err(ApiError::invalid)?;
    let id = new_message_id().map_err(ApiError::unavailable)?;
    let message = Message::new(
        id,
        request,
        principal.account_id(),
        principal.environment(),
        state.now(),
    );
    state
        .messages()
        .insert(&message, state.now())
        .await
        .map_err(ApiError::unavailable)?;
    if principal.environment() == Environment::Live {
        let webhook = state
            .webhooks()
            .get(principal.account_id())
            .await
            .map_err(ApiError::unavailable)?
            .map(|endpoint| WebhookEndpoint {
                url: webhook_override.map_or(endpoint.url, |Extension(WebhookOverride(url))| url),
                ..endpoint
            });
        hand_on(&state, &message, webhook).await?;
    }
    Ok((StatusCode::CREATED, Json(message)))
}

// The simulated carrier takes the message at once, in the background; the
// `queued` and `sent` events follow in that order, the `sent` one after the
// stored status has changed. With a database, both events are in its
// outbox before the request is answered, so no instance stopping loses them.
async fn hand_on(state: &AppState, message: &Message, webhook: Option<WebhookEndpoint>) -> Result<(), ApiError> {
    let sent = Message {
        status: Status::Sent,
        ..message.clone()
    };
    let events = match &webhook {
        Some(webhook) => vec![
            Event::message_status(message, webhook).map_err(ApiError::unavailable)?,
            Event::message_status(&sent, webhook).map_err(ApiError::unavailable)?,
        ],
        None => Vec::new(),
    };
    if let Some(outbox) = state.outbox() {
        if !events.is_empty() {
            outbox
                .enqueue(&message.id, &message.account_id, &events)
                .await
                .map_err(ApiError::unavailable)?;
        }
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(error) = state.messages().set_status(&sent.id, Status::Sent).await {
                tracing::warn!(%error, message_id = %sent.id, "status not updated");
            }
        });
        return Ok(());
    }
    let state = state.clone();
    tokio::spawn(async move {
        let _ = state.messages().set_status(&sent.id, Status::Sent).await;
        if !events.is_empty() {
            state.deliverer().spawn_in_order(events);
        }
    });
    Ok(())
}

/// Reads a message of the caller's account in the caller's environment.
#[utoipa::path(
    get,
    operation_id = "get_message",
    path = "/v1/messages/{id}",
    tag = "messages",
    params(("id" = String, Path, description = "The message's id (`msg_…`).")),
    responses(
        (status = 200, description = "The message.", body = Message),
        (status = 404, description = "No such message for this account and environment (`NOT_FOUND`).", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Message>, ApiError> {
    state
        .messages()
        .get(&id, principal.account_id(), principal.environment())
        .await
        .map_err(ApiError::unavailable)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("Message"))
}
