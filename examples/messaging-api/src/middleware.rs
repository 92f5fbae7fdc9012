//! Small pieces of the stack that are this server's own: the request log,
//! the JSON content-type rule, JSON 404/405 answers and the health check.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, Method};
use serde_json::json;
use tollgate_core::{Code, Principal, Rejection};

use crate::error::{unsupported_media_type, ApiError};

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
