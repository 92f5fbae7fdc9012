//! [`WebhookUrlOverride`]: the guarded `X-Webhook-URL` as an axum extractor.

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use tollgate_core::Renderer;

use super::{ValidatedUrl, WebhookUrlGuard};

/// The request's `X-Webhook-URL`, checked: `None` when the header is
/// absent; a refused URL answers 400 `INVALID_WEBHOOK_URL` before the
/// handler runs. The guard is the [`WebhookUrlGuard`] in the request's
/// extensions (add it with `axum::Extension(guard)`), or the default one;
/// a [`Renderer`] in the extensions renders the refusal.
///
/// ```
/// use axum::{routing::post, Extension, Router};
/// use tollgate_webhook::url_guard::{WebhookUrlGuard, WebhookUrlOverride};
///
/// async fn send_message(WebhookUrlOverride(url): WebhookUrlOverride) -> String {
///     match url {
///         Some(url) => format!("status updates go to {url}"),
///         None => "status updates go to the account's webhook".to_owned(),
///     }
/// }
///
/// let app: Router = Router::new()
///     .route("/v1/messages", post(send_message))
///     .layer(Extension(WebhookUrlGuard::new().allow_host("*.example.com")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrlOverride(pub Option<ValidatedUrl>);

impl<S: Send + Sync> FromRequestParts<S> for WebhookUrlOverride {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let guard = parts.extensions.get::<WebhookUrlGuard>().cloned().unwrap_or_default();
        match guard.check_header(&parts.headers).await {
            Ok(url) => Ok(WebhookUrlOverride(url)),
            Err(rejected) => {
                tracing::info!(reason = %rejected, "X-Webhook-URL refused");
                let renderer = parts.extensions.get::<Renderer>().cloned().unwrap_or_default();
                Err(renderer
                    .render(&rejected.to_rejection(), &parts.headers)
                    .into_response())
            }
        }
    }
}
