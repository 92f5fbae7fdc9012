//! [`WebhookSignatureLayer`]: verifies signed webhooks before the handler
//! runs, handing it the exact bytes that were signed.
//!
//! The layer reads the signature headers first (401 `MISSING_SIGNATURE` or
//! `INVALID_SIGNATURE` before any body byte is read; 413 at once when
//! `Content-Length` is over the limit), checks the timestamp
//! (`TIMESTAMP_OUT_OF_TOLERANCE`), buffers the body into one `Bytes`
//! (413 `PAYLOAD_TOO_LARGE` past the limit, 1 MiB by default), verifies the
//! signature under each secret in constant time, and with a
//! [`ReplayStore`] refuses a message seen before (`REPLAYED`). The inner
//! service receives a `Request<axum_core::body::Body>` (axum's `Body`)
//! holding the unchanged bytes (trailers are dropped) and a
//! [`VerifiedWebhook`](crate::VerifiedWebhook) in its extensions.
//!
//! ```
//! use std::convert::Infallible;
//! use axum_core::body::Body;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use tower::{Layer, ServiceExt};
//! use tollgate_webhook::{Scheme, Signer, Verifier, WebhookSignatureLayer};
//!
//! # tokio_test::block_on(async {
//! let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
//! let verifier = Verifier::new(Scheme::standard_webhooks(), secret).unwrap();
//! let echo = tower::service_fn(|request: Request<Body>| async move {
//!     Ok::<_, Infallible>(Response::new(request.into_body()))
//! });
//! let service = WebhookSignatureLayer::new(verifier).layer(echo);
//!
//! // Sign the way a sender does.
//! let now = std::time::SystemTime::now()
//!     .duration_since(std::time::UNIX_EPOCH)
//!     .unwrap()
//!     .as_secs();
//! let body = r#"{"event":"message.delivered"}"#;
//! let headers = Signer::new(Scheme::standard_webhooks(), secret)
//!     .unwrap()
//!     .sign(body.as_bytes(), now, "msg_1")
//!     .unwrap();
//! let mut request = Request::post("/webhooks").body(Full::new(Bytes::from(body))).unwrap();
//! request.headers_mut().extend(headers.clone());
//! let response = service.clone().oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), body);
//!
//! // The same headers on another body are refused.
//! let mut tampered = Request::post("/webhooks").body(Full::new(Bytes::from("{}"))).unwrap();
//! tampered.headers_mut().extend(headers);
//! let response = service.oneshot(tampered).await.unwrap();
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(body, r#"{"error":{"code":"INVALID_SIGNATURE","message":"The webhook signature is invalid."}}"#);
//! # });
//! ```

use std::sync::Arc;

use tollgate_core::gate::Gate;
use tollgate_core::replay::ReplayStore;
use tollgate_core::{Renderer, SharedClock};
use tower_layer::Layer;

use crate::policy::{Config, VerifySignature};
use crate::verify::Verifier;

/// The body size the layer buffers by default: 1 MiB.
pub const DEFAULT_MAX_BODY_SIZE: usize = 1024 * 1024;

/// The service made by [`WebhookSignatureLayer`]: `S` behind [`VerifySignature`].
pub type WebhookSignature<S> = Gate<S, VerifySignature>;

/// Verifies webhook signatures; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct WebhookSignatureLayer {
    config: Config,
}

impl WebhookSignatureLayer {
    /// A layer verifying with `verifier`, on the system clock, with a 1 MiB
    /// body limit and no replay protection.
    pub fn new(verifier: Verifier) -> WebhookSignatureLayer {
        WebhookSignatureLayer {
            config: Config {
                verifier,
                clock: SharedClock::default(),
                renderer: Renderer::default(),
                max_body_size: DEFAULT_MAX_BODY_SIZE,
                replay: None,
                replay_scope: Arc::from(DEFAULT_REPLAY_SCOPE),
                fail_open: false,
                forget_on_server_error: true,
            },
        }
    }

    /// The clock timestamps are checked against.
    pub fn clock(mut self, clock: impl Into<SharedClock>) -> WebhookSignatureLayer {
        self.config.clock = clock.into();
        self
    }

    /// How rejections are rendered.
    pub fn renderer(mut self, renderer: Renderer) -> WebhookSignatureLayer {
        self.config.renderer = renderer;
        self
    }

    /// The largest body buffered, in bytes; larger ones get 413.
    pub fn max_body_size(mut self, bytes: usize) -> WebhookSignatureLayer {
        self.config.max_body_size = bytes;
        self
    }

    /// Refuses messages already accepted (401 `REPLAYED`). Ids are kept
    /// until the message's timestamp leaves the tolerance window (for
    /// schemes without a timestamp: for the tolerance from now).
    pub fn replay_store(self, store: impl ReplayStore) -> WebhookSignatureLayer {
        self.shared_replay_store(Arc::new(store))
    }

    /// Like [`replay_store`](Self::replay_store), for a store already shared.
    pub fn shared_replay_store(mut self, store: Arc<dyn ReplayStore>) -> WebhookSignatureLayer {
        self.config.replay = Some(store);
        self
    }

    /// The replay store's scope for this layer's messages (default
    /// `"webhooks"`): give each sender or tenant a layer with its own scope
    /// and their ids never collide, and one cannot use up another's share
    /// of a bounded store.
    pub fn replay_scope(mut self, scope: impl Into<Arc<str>>) -> WebhookSignatureLayer {
        self.config.replay_scope = scope.into();
        self
    }

    /// When the replay store fails: `false` (the default) answers 503,
    /// `true` lets the message through unchecked for replays. Either way
    /// the failure is logged.
    pub fn fail_open(mut self, fail_open: bool) -> WebhookSignatureLayer {
        self.config.fail_open = fail_open;
        self
    }

    /// Whether a message whose handler answered with a 5xx is forgotten by
    /// the replay store, so the sender's retry is accepted (default `true`).
    pub fn forget_on_server_error(mut self, forget: bool) -> WebhookSignatureLayer {
        self.config.forget_on_server_error = forget;
        self
    }
}

/// The replay scope of a layer that was given none.
pub const DEFAULT_REPLAY_SCOPE: &str = "webhooks";

impl<S> Layer<S> for WebhookSignatureLayer {
    type Service = WebhookSignature<S>;

    fn layer(&self, inner: S) -> WebhookSignature<S> {
        Gate::new(inner, VerifySignature::new(self.config.clone()))
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use axum_core::body::Body as AxumBody;
    use bytes::Bytes;
    use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
    use http_body::{Body, Frame};
    use http_body_util::{BodyExt, Full};
    use tollgate_core::conformance::FakeStore;
    use tollgate_core::replay::MemoryReplayStore;
    use tollgate_core::{BoxError, ManualClock};
    use tower::{Service, ServiceExt};

    use super::*;
    use crate::{Scheme, Signer, VerifiedWebhook, DEFAULT_TOLERANCE};

    const NOW: u64 = 1_700_000_000;
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    /// Echoes the body; answers with the status in `x-status` if any;
    /// reports the verified message id; counts its calls.
    #[derive(Clone, Default)]
    struct Echo(Arc<AtomicUsize>);

    impl Service<Request<AxumBody>> for Echo {
        type Response = Response<AxumBody>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Request<AxumBody>) -> Self::Future {
            self.0.fetch_add(1, Ordering::SeqCst);
            let status = request
                .headers()
                .get("x-status")
                .and_then(|value| StatusCode::from_bytes(value.as_bytes()).ok())
                .unwrap_or(StatusCode::OK);
            let verified = request.extensions().get::<VerifiedWebhook>().cloned();
            let mut response = Response::new(request.into_body());
            *response.status_mut() = status;
            if let Some(verified) = verified {
                let id = verified.message_id().unwrap_or("-").to_owned();
                response.headers_mut().insert("x-message-id", id.parse().unwrap());
                response
                    .headers_mut()
                    .insert("x-secret-index", verified.secret_index().into());
            }
            std::future::ready(Ok(response))
        }
    }

    /// A body that records whether it was ever polled, in `chunks`.
    struct Tracked {
        chunks: std::collections::VecDeque<Result<Bytes, &'static str>>,
        polled: Arc<AtomicBool>,
    }

    impl Body for Tracked {
        type Data = Bytes;
        type Error = &'static str;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.polled.store(true, Ordering::SeqCst);
            Poll::Ready(self.chunks.pop_front().map(|chunk| chunk.map(Frame::data)))
        }
    }

    fn tracked(chunks: &[&'static [u8]]) -> (Tracked, Arc<AtomicBool>) {
        let polled = Arc::new(AtomicBool::new(false));
        let body = Tracked {
            chunks: chunks.iter().map(|chunk| Ok(Bytes::from_static(chunk))).collect(),
            polled: polled.clone(),
        };
        (body, polled)
    }

    struct Harness {
        clock: ManualClock,
        calls: Arc<AtomicUsize>,
        service: WebhookSignature<Echo>,
    }

    fn harness(
        scheme: Scheme,
        configure: impl FnOnce(WebhookSignatureLayer, &ManualClock) -> WebhookSignatureLayer,
    ) -> Harness {
        let clock = ManualClock::at_unix_secs(NOW);
        let verifier = Verifier::new(scheme, SECRET).unwrap();
        let layer = configure(WebhookSignatureLayer::new(verifier).clock(clock.clone()), &clock);
        let echo = Echo::default();
        Harness {
            clock,
            calls: echo.0.clone(),
            service: layer.layer(echo),
        }
    }

    fn signed(scheme: Scheme, secret: &str, body: &[u8], timestamp: u64, id: &str) -> HeaderMap {
        Signer::new(scheme, secret).unwrap().sign(body, timestamp, id).unwrap()
    }

    fn request<B>(headers: &HeaderMap, body: B) -> Request<B> {
        let mut request = Request::post("/webhooks").body(body).unwrap();
        request.headers_mut().extend(headers.clone());
        request
    }

    fn full(bytes: &[u8]) -> Full<Bytes> {
        Full::new(Bytes::copy_from_slice(bytes))
    }

    async fn send<B>(service: &WebhookSignature<Echo>, request: Request<B>) -> (StatusCode, HeaderMap, Bytes)
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let response = service.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, body)
    }

    fn code(body: &Bytes) -> String {
        let json: serde_json::Value = serde_json::from_slice(body).unwrap();
        json["error"]["code"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn github_known_answer_and_tampered_body() {
        let clock = ManualClock::at_unix_secs(NOW);
        let verifier = Verifier::new(Scheme::github(), "It's a Secret to Everybody").unwrap();
        let echo = Echo::default();
        let service = WebhookSignatureLayer::new(verifier).clock(clock).layer(echo.clone());
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-hub-signature-256",
            HeaderValue::from_static("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"),
        );
        let (status, _, body) = send(&service, request(&headers, full(b"Hello, World!"))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "Hello, World!");

        let (status, response_headers, body) = send(&service, request(&headers, full(b"Hello, World?"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(response_headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            body,
            r#"{"error":{"code":"INVALID_SIGNATURE","message":"The webhook signature is invalid."}}"#
        );
        assert_eq!(
            echo.0.load(Ordering::SeqCst),
            1,
            "the handler never saw the tampered body"
        );
    }

    #[tokio::test]
    async fn standard_webhooks_known_answer() {
        let h = harness(Scheme::standard_webhooks(), |layer, _| layer);
        h.clock.set(std::time::UNIX_EPOCH + Duration::from_secs(1_614_265_330));
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", HeaderValue::from_static("msg_p5jXN8AQM9LWM0D4loKWxJek"));
        headers.insert("webhook-timestamp", HeaderValue::from_static("1614265330"));
        headers.insert(
            "webhook-signature",
            HeaderValue::from_static("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
        );
        let (status, response_headers, body) =
            send(&h.service, request(&headers, full(br#"{"test": 2432232314}"#))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, r#"{"test": 2432232314}"#);
        assert_eq!(response_headers["x-message-id"], "msg_p5jXN8AQM9LWM0D4loKWxJek");
    }

    #[tokio::test]
    async fn wrong_secret_and_rotated_secrets() {
        let h = harness(Scheme::stripe(), |layer, _| layer);
        let wrong = signed(Scheme::stripe(), "whsec_other", b"{}", NOW, "");
        let (status, _, body) = send(&h.service, request(&wrong, full(b"{}"))).await;
        assert_eq!(
            (status, code(&body).as_str()),
            (StatusCode::UNAUTHORIZED, "INVALID_SIGNATURE")
        );

        let clock = ManualClock::at_unix_secs(NOW);
        let verifier = Verifier::with_secrets(Scheme::stripe(), ["whsec_new", SECRET]).unwrap();
        let service = WebhookSignatureLayer::new(verifier).clock(clock).layer(Echo::default());
        for (secret, index) in [("whsec_new", "0"), (SECRET, "1")] {
            let headers = signed(Scheme::stripe(), secret, b"{}", NOW, "");
            let (status, response_headers, _) = send(&service, request(&headers, full(b"{}"))).await;
            assert_eq!(status, StatusCode::OK, "{index}");
            assert_eq!(response_headers["x-secret-index"], index);
        }
    }

    #[tokio::test]
    async fn old_and_future_timestamps_are_refused_before_the_body_is_read() {
        let h = harness(Scheme::stripe(), |layer, _| layer);
        for (timestamp, accepted) in [
            (NOW - 300, true),
            (NOW + 300, true),
            (NOW - 301, false),
            (NOW + 301, false),
        ] {
            let headers = signed(Scheme::stripe(), SECRET, b"{}", timestamp, "");
            let (body, polled) = tracked(&[b"{}"]);
            let (status, _, response) = send(&h.service, request(&headers, body)).await;
            if accepted {
                assert_eq!(status, StatusCode::OK, "{timestamp}");
            } else {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{timestamp}");
                assert_eq!(
                    response,
                    r#"{"error":{"code":"TIMESTAMP_OUT_OF_TOLERANCE","message":"The webhook timestamp is too far from the current time.","tolerance":300}}"#
                );
                assert!(!polled.load(Ordering::SeqCst), "the body was not read");
            }
        }
        assert_eq!(h.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn missing_headers_are_refused_before_the_body_is_read() {
        for (scheme, header) in [
            (Scheme::hex(), "x-webhook-signature"),
            (Scheme::github(), "x-hub-signature-256"),
            (Scheme::stripe(), "stripe-signature"),
            (Scheme::standard_webhooks(), "webhook-signature"),
        ] {
            let h = harness(scheme, |layer, _| layer);
            let (body, polled) = tracked(&[b"{}"]);
            let (status, _, response) = send(&h.service, request(&HeaderMap::new(), body)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert_eq!(
                response,
                format!(
                    r#"{{"error":{{"code":"MISSING_SIGNATURE","message":"Missing webhook signature header {header}."}}}}"#
                )
            );
            assert!(!polled.load(Ordering::SeqCst));
        }
        // Standard Webhooks needs its id and timestamp too.
        let h = harness(Scheme::standard_webhooks(), |layer, _| layer);
        let mut headers = signed(Scheme::standard_webhooks(), SECRET, b"{}", NOW, "msg_1");
        headers.remove("webhook-timestamp");
        let (status, _, body) = send(&h.service, request(&headers, full(b"{}"))).await;
        assert_eq!(
            (status, code(&body).as_str()),
            (StatusCode::UNAUTHORIZED, "MISSING_SIGNATURE")
        );
        assert_eq!(h.calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn oversize_bodies_get_413_early_or_while_streaming() {
        let h = harness(Scheme::hex(), |layer, _| layer.max_body_size(8));
        let exact = signed(Scheme::hex(), SECRET, b"12345678", 0, "");
        let (status, _, body) = send(&h.service, request(&exact, full(b"12345678"))).await;
        assert_eq!((status, body.as_ref()), (StatusCode::OK, &b"12345678"[..]));

        // Announced: refused from Content-Length, the body untouched.
        let nine = signed(Scheme::hex(), SECRET, b"123456789", 0, "");
        let mut announced = request(&nine, tracked(&[b"123456789"]).0);
        announced
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("9"));
        let polled = announced.body().polled.clone();
        let (status, _, body) = send(&h.service, announced).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            body,
            r#"{"error":{"code":"PAYLOAD_TOO_LARGE","message":"The request body exceeds 8 bytes.","limit":8}}"#
        );
        assert!(!polled.load(Ordering::SeqCst));

        // Streamed without a length: refused when the limit is crossed.
        let (streamed, _) = tracked(&[b"12345", b"6789"]);
        let (status, _, body) = send(&h.service, request(&nine, streamed)).await;
        assert_eq!(
            (status, code(&body).as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE")
        );
        assert_eq!(h.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_default_limit_is_one_mebibyte() {
        let h = harness(Scheme::hex(), |layer, _| layer);
        let body = vec![b'a'; DEFAULT_MAX_BODY_SIZE];
        let headers = signed(Scheme::hex(), SECRET, &body, 0, "");
        let (status, _, echoed) = send(&h.service, request(&headers, full(&body))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(echoed.len(), DEFAULT_MAX_BODY_SIZE);
        let mut over = body.clone();
        over.push(b'a');
        let headers = signed(Scheme::hex(), SECRET, &over, 0, "");
        let (status, _, _) = send(&h.service, request(&headers, full(&over))).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn chunked_non_utf8_bodies_arrive_unchanged() {
        let h = harness(Scheme::github(), |layer, _| layer);
        let whole: &[u8] = b"\xff\xfe\x00binary\x80\xc3";
        let headers = signed(Scheme::github(), SECRET, whole, 0, "");
        let (body, _) = tracked(&[b"\xff\xfe", b"", b"\x00binary", b"\x80\xc3"]);
        let (status, _, echoed) = send(&h.service, request(&headers, body)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(echoed.as_ref(), whole);
    }

    #[tokio::test]
    async fn a_body_in_one_chunk_reaches_the_handler_without_a_copy() {
        let h = harness(Scheme::github(), |layer, _| layer);
        let chunk = Bytes::from_static(b"{\"event\":\"message.read\"}");
        let headers = signed(Scheme::github(), SECRET, &chunk, 0, "");
        let (status, _, echoed) = send(&h.service, request(&headers, Full::new(chunk.clone()))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(echoed.as_ptr(), chunk.as_ptr(), "the same memory");
    }

    #[tokio::test]
    async fn unreadable_bodies_get_400() {
        let h = harness(Scheme::github(), |layer, _| layer);
        let headers = signed(Scheme::github(), SECRET, b"{}", 0, "");
        let body = Tracked {
            chunks: [Ok(Bytes::from_static(b"{")), Err("connection reset")]
                .into_iter()
                .collect(),
            polled: Arc::default(),
        };
        let (status, _, response) = send(&h.service, request(&headers, body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            response,
            r#"{"error":{"code":"INVALID_BODY","message":"The request body could not be read."}}"#
        );
    }

    #[tokio::test]
    async fn replays_are_refused_within_the_window() {
        let h = harness(Scheme::standard_webhooks(), |layer, clock| {
            layer.replay_store(MemoryReplayStore::new().with_clock(clock.clone()))
        });
        let headers = signed(Scheme::standard_webhooks(), SECRET, b"{}", NOW, "msg_1");
        let (status, _, _) = send(&h.service, request(&headers, full(b"{}"))).await;
        assert_eq!(status, StatusCode::OK);
        h.clock.advance(Duration::from_secs(299));
        let (status, _, body) = send(&h.service, request(&headers, full(b"{}"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            body,
            r#"{"error":{"code":"REPLAYED","message":"This webhook message was already received."}}"#
        );
        // A fresh signature of the same id is the same message.
        let resigned = signed(Scheme::standard_webhooks(), SECRET, b"{}", NOW + 299, "msg_1");
        let (status, _, body) = send(&h.service, request(&resigned, full(b"{}"))).await;
        assert_eq!((status, code(&body).as_str()), (StatusCode::UNAUTHORIZED, "REPLAYED"));
        // Another id is another message.
        let other = signed(Scheme::standard_webhooks(), SECRET, b"{}", NOW + 299, "msg_2");
        assert_eq!(send(&h.service, request(&other, full(b"{}"))).await.0, StatusCode::OK);
        assert_eq!(h.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn each_layers_scope_keeps_its_ids_and_its_share_of_the_store() {
        let clock = ManualClock::at_unix_secs(NOW);
        let store = MemoryReplayStore::new()
            .with_clock(clock.clone())
            .with_scope_capacity(1);
        // Every clock here starts at NOW and stays there.
        let layers = ["tenant_a", "tenant_b"].map(|scope| {
            harness(Scheme::standard_webhooks(), |layer, _| {
                layer.replay_store(store.clone()).replay_scope(scope)
            })
        });
        let message = |id: &str| signed(Scheme::standard_webhooks(), SECRET, b"{}", NOW, id);
        for h in &layers {
            let (status, _, _) = send(&h.service, request(&message("msg_1"), full(b"{}"))).await;
            assert_eq!(status, StatusCode::OK, "the same id is new to each tenant");
        }
        let (status, _, body) = send(&layers[0].service, request(&message("msg_2"), full(b"{}"))).await;
        assert_eq!(
            (status, code(&body).as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE"),
            "a tenant over its share is refused, nothing evicted"
        );
        let (status, _, body) = send(&layers[0].service, request(&message("msg_1"), full(b"{}"))).await;
        assert_eq!((status, code(&body).as_str()), (StatusCode::UNAUTHORIZED, "REPLAYED"));
        assert_eq!(store.scope_len("tenant_b"), 1);
    }

    #[tokio::test]
    async fn untimestamped_replays_are_keyed_by_the_canonical_signature() {
        let h = harness(Scheme::hex(), |layer, clock| {
            layer.replay_store(MemoryReplayStore::new().with_clock(clock.clone()))
        });
        let headers = signed(Scheme::hex(), SECRET, b"{}", 0, "");
        assert_eq!(send(&h.service, request(&headers, full(b"{}"))).await.0, StatusCode::OK);
        // Upper-case hex is the same signature, so the same message.
        let mut upper = headers.clone();
        let shouted = upper["x-webhook-signature"].to_str().unwrap().to_uppercase();
        upper.insert("x-webhook-signature", shouted.parse().unwrap());
        let (status, _, body) = send(&h.service, request(&upper, full(b"{}"))).await;
        assert_eq!((status, code(&body).as_str()), (StatusCode::UNAUTHORIZED, "REPLAYED"));
        // Without a timestamp, protection lasts for the tolerance only.
        h.clock.advance(DEFAULT_TOLERANCE);
        assert_eq!(send(&h.service, request(&headers, full(b"{}"))).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_failed_handler_lets_the_sender_retry() {
        for forget in [true, false] {
            let h = harness(Scheme::standard_webhooks(), |layer, clock| {
                layer
                    .replay_store(MemoryReplayStore::new().with_clock(clock.clone()))
                    .forget_on_server_error(forget)
            });
            let headers = signed(Scheme::standard_webhooks(), SECRET, b"{}", NOW, "msg_retry");
            let mut failing = request(&headers, full(b"{}"));
            failing
                .headers_mut()
                .insert("x-status", HeaderValue::from_static("503"));
            assert_eq!(send(&h.service, failing).await.0, StatusCode::SERVICE_UNAVAILABLE);
            let (status, _, _) = send(&h.service, request(&headers, full(b"{}"))).await;
            let expected = if forget {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            };
            assert_eq!(status, expected, "forget_on_server_error({forget})");
            let (status, _, _) = send(&h.service, request(&headers, full(b"{}"))).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "accepted once, then a replay");
        }
    }

    /// A replay store that is down.
    fn failing_store() -> FakeStore<MemoryReplayStore> {
        let store = FakeStore::new(MemoryReplayStore::new());
        store.fail_all();
        store
    }

    #[tokio::test]
    async fn a_failing_replay_store_fails_closed_unless_told_otherwise() {
        let headers = signed(Scheme::github(), SECRET, b"{}", 0, "");
        let closed = harness(Scheme::github(), |layer, _| layer.replay_store(failing_store()));
        let (status, _, body) = send(&closed.service, request(&headers, full(b"{}"))).await;
        assert_eq!(
            (status, code(&body).as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE")
        );
        assert_eq!(closed.calls.load(Ordering::SeqCst), 0);

        let open = harness(Scheme::github(), |layer, _| {
            layer.replay_store(failing_store()).fail_open(true)
        });
        assert_eq!(
            send(&open.service, request(&headers, full(b"{}"))).await.0,
            StatusCode::OK
        );
        assert_eq!(open.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_copies_of_a_message_are_accepted_once() {
        let h = harness(Scheme::standard_webhooks(), |layer, clock| {
            layer.replay_store(MemoryReplayStore::new().with_clock(clock.clone()))
        });
        let headers = signed(Scheme::standard_webhooks(), SECRET, b"{}", NOW, "msg_race");
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let service = h.service.clone();
                let request = request(&headers, full(b"{}"));
                tokio::spawn(async move { service.oneshot(request).await.unwrap().status() })
            })
            .collect();
        let mut accepted = 0;
        for task in tasks {
            match task.await.unwrap() {
                StatusCode::OK => accepted += 1,
                status => assert_eq!(status, StatusCode::UNAUTHORIZED),
            }
        }
        assert_eq!(accepted, 1);
        assert_eq!(h.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn grpc_requests_get_a_grpc_status() {
        let h = harness(Scheme::github(), |layer, _| layer);
        let mut grpc = Request::post("/pkg.Service/Method").body(full(b"")).unwrap();
        grpc.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        let (status, headers, _) = send(&h.service, grpc).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["grpc-status"], "16");
    }

    #[test]
    fn poll_ready_is_the_inner_services() {
        struct NotReady;
        impl Service<Request<AxumBody>> for NotReady {
            type Response = Response<Full<Bytes>>;
            type Error = Infallible;
            type Future = std::future::Ready<Result<Self::Response, Infallible>>;
            fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
                Poll::Pending
            }
            fn call(&mut self, _request: Request<AxumBody>) -> Self::Future {
                unreachable!("never ready")
            }
        }
        impl Clone for NotReady {
            fn clone(&self) -> NotReady {
                NotReady
            }
        }
        let verifier = Verifier::new(Scheme::github(), SECRET).unwrap();
        let mut service = WebhookSignatureLayer::new(verifier).layer(NotReady);
        let mut cx = Context::from_waker(Waker::noop());
        let ready = <WebhookSignature<NotReady> as Service<Request<Full<Bytes>>>>::poll_ready(&mut service, &mut cx);
        assert!(ready.is_pending());
    }

    #[test]
    fn debug_shows_no_secret() {
        let verifier = Verifier::new(Scheme::stripe(), SECRET).unwrap();
        let layer = WebhookSignatureLayer::new(verifier).replay_store(MemoryReplayStore::new());
        let shown = format!("{layer:?}");
        assert!(!shown.contains("MfKQ9r8G"), "{shown}");
        assert!(shown.contains("replay_store: true"), "{shown}");
    }
}
