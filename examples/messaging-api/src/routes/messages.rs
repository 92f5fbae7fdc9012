//! `POST /v1/messages` and `GET /v1/messages/{id}`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::json;
use tollgate_core::{Environment, Principal};

use crate::delivery::Event;
use crate::error::{ApiError, ApiJson};
use crate::messages::{new_message_id, random_base62, Message, SendMessage, Status};
use crate::state::AppState;

/// The header that overrides the account's webhook URL for one message.
pub const X_WEBHOOK_URL: &str = "x-webhook-url";

/// Creates a message. Live messages are handed on at once and their status
/// event is delivered to the webhook; sandbox messages stay queued and are
/// never delivered.
pub async fn send(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    ApiJson(request): ApiJson<SendMessage>,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    request.validate().map_err(ApiError::invalid)?;
    let endpoint = state.webhooks().get(principal.account_id());
    let webhook_override = match headers.get(X_WEBHOOK_URL) {
        None => None,
        Some(_) if endpoint.is_none() => {
            return Err(ApiError::invalid(
                "X-Webhook-URL needs a signing secret: set the account's webhook with PUT /v1/webhooks first",
            ))
        }
        Some(value) => {
            let url = value
                .to_str()
                .map_err(|_| ApiError::invalid("X-Webhook-URL must be ASCII"))?;
            Some(state.check_webhook_url(url).await?)
        }
    };
    let id = new_message_id().map_err(ApiError::unavailable)?;
    let mut message = Message::new(
        id,
        request,
        principal.account_id(),
        principal.environment(),
        state.now(),
    );
    if principal.environment() == Environment::Live {
        message.status = Status::Sent;
    }
    state.messages().insert(message.clone());
    if principal.environment() == Environment::Live {
        if let Some(endpoint) = endpoint {
            let event = json!({
                "type": "message.status",
                "data": {"id": message.id, "status": message.status, "to": message.to, "created_at": message.created_at},
            });
            state.deliverer().spawn(Event {
                id: format!("evt_{}", random_base62(24).map_err(ApiError::unavailable)?),
                url: webhook_override.unwrap_or(endpoint.url),
                secret: endpoint.secret,
                body: serde_json::to_vec(&event).expect("JSON values serialise").into(),
            });
        }
    }
    Ok((StatusCode::CREATED, Json(message)))
}

/// Reads a message of the caller's account in the caller's environment.
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Message>, ApiError> {
    state
        .messages()
        .get(&id, principal.account_id(), principal.environment())
        .map(Json)
        .ok_or_else(|| ApiError::not_found("Message"))
}
