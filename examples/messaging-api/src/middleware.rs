//! Small pieces of the stack that are this server's own: the request log,
//! the `X-Webhook-URL` check, the JSON content-type rule, JSON 404/405
//! answers and the health check.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, Method};
use serde_json::json;
use tollgate_core::{Code, Principal, Rejection};

use crate::error::{unsupported_media_type, ApiError};
use crate::state::AppState;

// Where `note_key_id`, behind authentication, leaves the key id for
// `log_request`, which runs outside it and so never sees the principal.
#[derive(Clone, Default)]
struct KeyIdSlot(Arc<OnceLock<String>>);

/// One log line per request: method, path, status, key id (never the key),
/// latency. Outermost in the stack, so refused requests are logged too.
pub async fn log_request(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let slot = KeyIdSlot::default();
    request.extensions_mut().insert(slot.clone());
    let response = next.run(request).await;
    let key_id = slot.0.get();
    tracing::info!(
        %method,
        path,
        status = response.status().as_u16(),
        key_id = key_id.map_or("-", String::as_str),
        latency_us = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

/// Tells `log_request` which key made the request; mount it behind authentication.
pub async fn note_key_id(request: Request, next: Next) -> Response {
    if let (Some(slot), Some(principal)) = (
        request.extensions().get::<KeyIdSlot>(),
        request.extensions().get::<Principal>(),
    ) {
        let _ = slot.0.set(principal.key_id().to_owned());
    }
    next.run(request).await
}

/// The `X-Webhook-URL` of a `POST /v1/messages`, checked by [`check_webhook_url`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookOverride(pub String);

/// Checks the `X-Webhook-URL` of `POST /v1/messages` and leaves it for the
/// handler as a [`WebhookOverride`] extension. Mounted behind
/// authentication and before the content-type rule, idempotency and the
/// body, so a refused URL is always 400 `INVALID_WEBHOOK_URL`, whatever
/// else is wrong with the request, and does not use up its `X-Request-ID`.
/// An override also needs the account's webhook, whose secret signs the
/// events (400 `INVALID_REQUEST` otherwise).
pub async fn check_webhook_url(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if request.method() != Method::POST || request.uri().path() != "/v1/messages" {
        return next.run(request).await;
    }
    let url = match state.check_webhook_header(request.headers()).await {
        Ok(Some(url)) => url,
        Ok(None) => return next.run(request).await,
        Err(refused) => return refused.into_response(),
    };
    let account_id = request
        .extensions()
        .get::<Principal>()
        .map(|principal| principal.account_id().to_owned());
    let endpoint = match account_id {
        Some(account) => match state.webhooks().get(&account).await {
            Ok(endpoint) => endpoint,
            Err(error) => return ApiError::unavailable(error).into_response(),
        },
        None => None,
    };
    if endpoint.is_none() {
        return ApiError::invalid(
            "X-Webhook-URL needs a signing secret: set the account's webhook with PUT /v1/webhooks first",
        )
        .into_response();
    }
    request.extensions_mut().insert(WebhookOverride(url));
    next.run(request).await
}

/// Requests that carry a body must say it is JSON (415 otherwise). Runs
/// before idempotency, so a refused request does not use up its `X-Request-ID`.
pub async fn require_json(request: Request, next: Next) -> Response {
    let writes = matches!(*request.method(), Method::POST | Method::PUT | Method::PATCH);
    if writes && has_body(&request) && !is_json(&request) {
        return unsupported_media_type().into_response();
    }
    next.run(request).await
}

fn has_body(request: &Request) -> bool {
    let headers = request.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|length| length.trim() != "0")
}

fn is_json(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
}

/// 404 `NOT_FOUND` in the seed's shape.
pub async fn not_found() -> ApiError {
    ApiError::not_found("Route")
}

/// 405 `METHOD_NOT_ALLOWED` in the seed's shape.
pub async fn method_not_allowed() -> ApiError {
    ApiError::from(Rejection::new(
        Code::MethodNotAllowed,
        "This method is not allowed on this route.",
    ))
}

/// `GET /health`, outside authentication.
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Answers 503 `SERVICE_UNAVAILABLE` when the request is not answered
/// within `timeout` (the server's `request_timeout_secs`), so nothing hangs.
pub async fn deadline(timeout: std::time::Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(?timeout, "request timed out");
            ApiError::from(Rejection::store_unavailable()).into_response()
        }
    }
}
