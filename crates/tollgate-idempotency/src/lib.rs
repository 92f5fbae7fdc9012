//! Idempotent requests for Tower services: a client that retries a
//! `POST /v1/messages` after a timeout, with the same `X-Request-ID`, gets
//! the first attempt's response back instead of a second message.
//!
//! [`IdempotencyLayer`] follows Stripe's idempotent requests and the IETF
//! draft *The Idempotency-Key HTTP Header Field*
//! (draft-ietf-httpapi-idempotency-key-header).
//!
//! # Behaviour
//!
//! A request is deduplicated when its method is one of the configured ones
//! (`POST` and `PATCH` by default), [`only_when`](IdempotencyLayer::only_when)
//! (if set) selects it, it has a scope (below) and it carries a key. Every
//! other request passes through untouched: its body is not buffered and
//! nothing is stored.
//!
//! | the key…                                   | answer |
//! |--------------------------------------------|--------|
//! | is new (or expired)                        | the inner service runs; its response is stored for 24 h and returned |
//! | completed, same request                    | the stored response, byte for byte, plus `Idempotent-Replayed: true`; the inner service does not run |
//! | still running, same request                | 409 `IDEMPOTENCY_IN_PROGRESS`, `Retry-After: 1` |
//! | running or completed for another request   | 422 `IDEMPOTENCY_KEY_REUSED` |
//! | is empty, over 255 characters, not visible ASCII | 400 `INVALID_IDEMPOTENCY_KEY` |
//! | is missing where [required](IdempotencyLayer::require_key) | 400 `IDEMPOTENCY_KEY_MISSING` |
//!
//! - **Key.** Read from `X-Request-ID` by default; [`IdempotencyLayer::headers`]
//!   chooses others, such as [`IDEMPOTENCY_KEY`]. The draft's
//!   structured-field string form (`Idempotency-Key: "8e03978e-…"`) is
//!   accepted in any of them and means the same key as the bare value.
//! - **Scope.** Keys are scoped to the caller's account and environment,
//!   taken from the [`Principal`](tollgate_core::Principal) that
//!   authentication put in the request extensions: two customers can use
//!   the same id without seeing each other's responses, and a sandbox retry
//!   never replays a live response. Requests without a principal pass
//!   through untouched unless a [`fallback_scope`](IdempotencyLayer::fallback_scope)
//!   is set. Place the layer after authentication, and after rate limiting
//!   so that a 429 is never stored as the key's answer.
//! - **Same request.** The fingerprint is SHA-256 over the method, the path
//!   and query, and the body. The body is buffered (up to 1 MiB by default,
//!   413 `PAYLOAD_TOO_LARGE` beyond, checked against `Content-Length` before
//!   reading) and handed to the inner service unchanged.
//! - **The inner service's request body** is axum's `Body`
//!   (`axum_core::body::Body`): the original body, untouched, for requests
//!   the layer lets through (not boxed again when it is one already), the
//!   buffered bytes for those it deduplicates. axum's `Router`, its `from_fn`
//!   middleware and tonic's server all take it as it is.
//! - **One execution.** The store's `begin` claims the key atomically, so
//!   of many concurrent requests with one key exactly one runs. The claim
//!   expires after the [lock timeout](IdempotencyLayer::lock_timeout)
//!   (60 s) in case its instance crashes.
//! - **Released claims.** When the inner service fails, when the response
//!   is not stored (5xx with [`store_server_errors(false)`](IdempotencyLayer::store_server_errors),
//!   a body and trailers over [`max_response_body`](IdempotencyLayer::max_response_body),
//!   a body read error, a handler's [`Storable::Skip`]) or when the response future is dropped
//!   because the client went away, the claim is released so a retry runs.
//!   Such responses still reach the client exactly as the inner service
//!   produced them ([`PassThroughBody`]).
//! - **Stored headers.** Everything but the hop-by-hop headers and
//!   `Set-Cookie`: a cookie is a credential minted for one response and
//!   does not belong in a store shared by every retry. Headers added by
//!   layers outside this one (rate-limit headers) are fresh on each replay.
//! - **Trailers** are stored and replayed after the body, as the inner
//!   service sent them (minus `Set-Cookie` and hop-by-hop fields).
//! - **gRPC.** A unary gRPC call is a `POST` like any other: its key comes
//!   from the `x-request-id` metadata (a header), its fingerprint covers the
//!   method path and the length-prefixed request message, and its response
//!   (the message, then `grpc-status` in the trailers, or a trailers-only
//!   status) is replayed with its trailers. Refusals are rendered as gRPC
//!   statuses (HTTP 200 and `grpc-status`): 409 in progress is `ABORTED`,
//!   422 key reused and 400 are `INVALID_ARGUMENT`, 413 is
//!   `RESOURCE_EXHAUSTED`, 503 is `UNAVAILABLE`. Streaming calls must be
//!   kept out with [`only_when`](IdempotencyLayer::only_when) (or never
//!   carry a key): the layer reads a request whole before running it.
//! - **Store failures** answer 503 (fail closed) or, with
//!   [`fail_open(true)`](IdempotencyLayer::fail_open), run the request
//!   without deduplication; both are logged with `tracing`.
//!
//! A deduplicated response reaches the client once it has been read whole
//! and stored, never streamed.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//!
//! use axum_core::body::Body;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use tollgate_core::idempotency::MemoryIdempotencyStore;
//! use tollgate_core::{KeyKind, Principal};
//! use tollgate_idempotency::IdempotencyLayer;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # tokio_test::block_on(async {
//! let sent = Arc::new(AtomicUsize::new(0));
//! let counter = sent.clone();
//! let send_message = service_fn(move |_request: Request<Body>| {
//!     let id = counter.fetch_add(1, Ordering::SeqCst) + 1;
//!     async move {
//!         let body = format!(r#"{{"id":"msg_{id}","status":"queued"}}"#);
//!         Ok::<_, Infallible>(Response::builder().status(201).body(Full::new(Bytes::from(body))).unwrap())
//!     }
//! });
//! let api = ServiceBuilder::new()
//!     .layer(IdempotencyLayer::new(MemoryIdempotencyStore::new()))
//!     .service(send_message);
//!
//! // BearerAuthLayer puts the caller's Principal in the extensions.
//! let post = |body: &'static str| {
//!     Request::post("/v1/messages")
//!         .header("x-request-id", "5a1b2c3d-0000-4000-8000-000000000001")
//!         .extension(Principal::new("acct_1", "key_1", KeyKind::Production))
//!         .body(Full::new(Bytes::from_static(body.as_bytes())))
//!         .unwrap()
//! };
//!
//! let first = api.clone().oneshot(post(r#"{"to":"+15550100"}"#)).await.unwrap();
//! let retry = api.clone().oneshot(post(r#"{"to":"+15550100"}"#)).await.unwrap();
//! assert_eq!(retry.status(), StatusCode::CREATED);
//! assert_eq!(retry.headers()["idempotent-replayed"], "true");
//! let first = first.into_body().collect().await.unwrap().to_bytes();
//! let retry = retry.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(first, retry);
//! assert_eq!(sent.load(Ordering::SeqCst), 1, "the message was sent once");
//!
//! // The same key with another payload is a client error.
//! let reused = api.clone().oneshot(post(r#"{"to":"+15550199"}"#)).await.unwrap();
//! assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
//! # });
//! ```
//!
//! # Responses that carry a secret
//!
//! A response that shows a secret once (a created API key, a webhook
//! signing secret) must not sit in the store in plaintext, to be replayed
//! by whoever retries the key. The handler says so with a [`Storable`]
//! response extension, which the layer removes before handing the response
//! on:
//!
//! - [`Storable::Replace`] stores a [`StoredReplacement`] (status, headers,
//!   body) instead: this attempt's client gets the real response, retries
//!   get the substitute (a 409 naming what was created, say), and the
//!   handler still runs once.
//! - [`Storable::Skip`] stores nothing and releases the claim: a retry runs
//!   the handler again, so use it only where that is harmless.
//!
//! ```
//! use std::convert::Infallible;
//!
//! use axum_core::body::Body;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use tollgate_core::idempotency::MemoryIdempotencyStore;
//! use tollgate_core::{KeyKind, Principal};
//! use tollgate_idempotency::{IdempotencyLayer, Storable, StoredReplacement};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # tokio_test::block_on(async {
//! let create_key = service_fn(|_request: Request<Body>| async {
//!     let mut response = Response::builder()
//!         .status(201)
//!         .body(Full::new(Bytes::from_static(br#"{"id":"key_1","key":"sk_live_secret"}"#)))
//!         .unwrap();
//!     let already = r#"{"error":{"code":"KEY_ALREADY_CREATED","key_id":"key_1"}}"#;
//!     response
//!         .extensions_mut()
//!         .insert(Storable::Replace(StoredReplacement::new(StatusCode::CONFLICT, already)));
//!     Ok::<_, Infallible>(response)
//! });
//! let api = ServiceBuilder::new()
//!     .layer(IdempotencyLayer::new(MemoryIdempotencyStore::new()))
//!     .service(create_key);
//! let post = || {
//!     Request::post("/v1/keys")
//!         .header("x-request-id", "5a1b2c3d-0000-4000-8000-000000000002")
//!         .extension(Principal::new("acct_1", "key_0", KeyKind::Production))
//!         .body(Full::new(Bytes::new()))
//!         .unwrap()
//! };
//!
//! let first = api.clone().oneshot(post()).await.unwrap();
//! assert_eq!(first.status(), StatusCode::CREATED);
//! assert!(first.extensions().get::<Storable>().is_none());
//! let first = first.into_body().collect().await.unwrap().to_bytes();
//! assert!(first.starts_with(br#"{"id":"key_1","key":"sk_live"#));
//!
//! let retry = api.clone().oneshot(post()).await.unwrap();
//! assert_eq!(retry.status(), StatusCode::CONFLICT);
//! let retry = retry.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(retry, r#"{"error":{"code":"KEY_ALREADY_CREATED","key_id":"key_1"}}"#);
//! # });
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod body;
mod claim;
mod complete;
mod config;
mod fingerprint;
mod key;
mod layer;
mod policy;
mod rejections;
mod replay;
mod storable;

pub use body::{PassThroughBody, ReplayBody};
pub use complete::Completion;
pub use config::{IDEMPOTENCY_KEY, X_REQUEST_ID};
pub use key::MAX_KEY_LEN;
pub use layer::{Idempotency, IdempotencyLayer};
pub use policy::Deduplicate;
pub use replay::IDEMPOTENT_REPLAYED;
pub use storable::{Storable, StoredReplacement};

/// The key parser, for the fuzz targets in `fuzz/` (feature `fuzzing`). Not a stable API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use http::{HeaderMap, HeaderName};

    /// The key the layer reads from the first of `names` present:
    /// `Ok(None)` for none, `Err(())` for an invalid or ambiguous header.
    #[allow(clippy::result_unit_err)]
    pub fn read_key(headers: &HeaderMap, names: &[HeaderName]) -> Result<Option<String>, ()> {
        crate::key::read_key(headers, names).map_err(|_| ())
    }
}

/// The layer's response body: the inner service's body as the layer hands
/// it on (`Left`: untouched, or read whole and stored), or a body the layer
/// made (`Right`: a refusal or a replay, trailers included).
pub type IdempotencyBody<B> = tollgate_core::gate::GateBody<PassThroughBody<B>, ReplayBody>;
