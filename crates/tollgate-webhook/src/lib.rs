//! Signed webhooks for Tower services, both ways, and a guard for
//! client-supplied webhook URLs.
//!
//! - Receiving: [`WebhookSignatureLayer`] verifies HMAC-SHA256 signatures
//!   over the exact raw body before the handler runs — the seed API's
//!   scheme (`crypto.createHmac('sha256', secret).update(payload).digest('hex')`
//!   compared with `timingSafeEqual`), GitHub's and Meta's
//!   `X-Hub-Signature-256`, Stripe's `Stripe-Signature` and
//!   [Standard Webhooks](https://www.standardwebhooks.com/) — with
//!   constant-time comparison, secret rotation, a timestamp tolerance and
//!   optional replay protection through a
//!   [`ReplayStore`](tollgate_core::replay::ReplayStore).
//!   [`Verifier`] does the same for a handler that has the body in hand.
//! - Sending: [`Signer`] produces each scheme's headers, and
//!   [`WebhookSecret::generate`] makes secrets.
//! - [`url_guard`]: checks an `X-Webhook-URL` override before a server
//!   sends anything to it (SSRF).
//!
//! Every refusal is a [`tollgate_core::Rejection`] with its own code:
//!
//! | status | code | when |
//! |---|---|---|
//! | 401 | `MISSING_SIGNATURE` | a signature header is absent |
//! | 401 | `INVALID_SIGNATURE` | a malformed header, or no signature matches |
//! | 401 | `TIMESTAMP_OUT_OF_TOLERANCE` | the timestamp is too old or too far ahead |
//! | 401 | `REPLAYED` | the message was already accepted |
//! | 413 | `PAYLOAD_TOO_LARGE` | the body exceeds the limit (1 MiB by default) |
//! | 400 | `INVALID_BODY` | the body could not be read |
//! | 503 | `SERVICE_UNAVAILABLE` | the replay store failed (fail closed) |
//! | 400 | `INVALID_WEBHOOK_URL` | the URL guard refused an `X-Webhook-URL` |
//!
//! ```
//! use std::convert::Infallible;
//! use axum_core::body::Body;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{Layer, ServiceExt};
//! use tollgate_core::replay::MemoryReplayStore;
//! use tollgate_webhook::{Scheme, Signer, Verifier, WebhookSignatureLayer};
//!
//! # tokio_test::block_on(async {
//! // The seed's scheme: the hex HMAC of the body in X-Webhook-Signature.
//! let secret = "seed-webhook-secret";
//! let layer = WebhookSignatureLayer::new(Verifier::new(Scheme::hex(), secret).unwrap())
//!     .replay_store(MemoryReplayStore::new());
//! let handler = tower::service_fn(|_request: Request<Body>| async {
//!     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
//! });
//! let service = layer.layer(handler);
//!
//! let body = r#"{"event":"message.read","message_id":"msg_42"}"#;
//! let headers = Signer::new(Scheme::hex(), secret).unwrap().sign(body.as_bytes(), 0, "").unwrap();
//! let delivery = || {
//!     let mut request = Request::post("/webhooks").body(Full::new(Bytes::from(body))).unwrap();
//!     request.headers_mut().extend(headers.clone());
//!     request
//! };
//! assert_eq!(service.clone().oneshot(delivery()).await.unwrap().status(), StatusCode::OK);
//! // The same delivery again is a replay.
//! assert_eq!(service.oneshot(delivery()).await.unwrap().status(), StatusCode::UNAUTHORIZED);
//! # });
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod layer;
mod mac;
mod policy;
pub mod rejections;
mod scheme;
mod secret;
mod sign;
pub mod url_guard;
mod verify;

pub use layer::{WebhookSignature, WebhookSignatureLayer, DEFAULT_MAX_BODY_SIZE, DEFAULT_REPLAY_SCOPE};
pub use policy::{ForgetOnFailure, VerifySignature};
pub use scheme::{
    Scheme, STRIPE_SIGNATURE, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP, X_HUB_SIGNATURE_256,
    X_WEBHOOK_SIGNATURE,
};
pub use secret::{SecretError, WebhookSecret, SECRET_PREFIX};
pub use sign::{SignError, Signer};
pub use verify::{VerifiedWebhook, Verifier, VerifyError, DEFAULT_TOLERANCE};
