//! Per-request cost of `IdempotencyLayer` with a `MemoryIdempotencyStore` on
//! a `POST` with a 1 KiB JSON body, against the bare service, in one run:
//!
//! - `bare_service`: the handler alone (it reads the body and answers ~80 bytes);
//! - `first_execution`: a fresh key every request (buffer and hash the body,
//!   claim, run the handler, buffer and store the response); the store fills
//!   up to its 100 000-entry bound and then evicts, as a busy server's would;
//! - `replay`: the same key and body again (buffer and hash, look up, rebuild
//!   the stored response; the handler does not run);
//! - `pass_through_get`: a `GET`, which the layer does not deduplicate;
//! - `grpc_bare_service` and `grpc_replay`: a unary gRPC call (the same 1 KiB
//!   as one length-prefixed message) whose answer is a message then
//!   `grpc-status` in the trailers: the handler alone, and its replay with
//!   the trailers.
//!
//! Every service answers without waiting, so requests are driven by polling
//! with a no-op waker: the figures are the middleware's cost, not an
//! executor's. Each iteration builds its request and reads the whole
//! response body, so read the layer's cost as the difference from
//! `bare_service`.
//!
//! `cargo bench -p tollgate-idempotency --bench idempotency -- --warm-up-time 1 --measurement-time 3`

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use axum_core::body::Body as AxumBody;
use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use http_body::{Body, Frame};
use http_body_util::Full;
use tollgate_core::idempotency::MemoryIdempotencyStore;
use tollgate_core::{KeyKind, Principal};
use tollgate_idempotency::{IdempotencyLayer, X_REQUEST_ID};
use tower::{service_fn, Layer, Service};

// Polls a future expected to be ready at once (everything here is in
// memory); spins on `Pending` rather than panicking.
fn now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

// Reads every frame of a body; returns how many data bytes it held.
fn drain<B: Body<Data = Bytes>>(body: B) -> usize {
    let mut body = pin!(body);
    let mut cx = Context::from_waker(Waker::noop());
    let mut len = 0;
    loop {
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => len += frame.data_ref().map_or(0, |data| data.len()),
            Poll::Ready(_) => return len,
            Poll::Pending => {}
        }
    }
}

// Whether a body's last frame is trailers.
fn ends_with_trailers<B: Body<Data = Bytes>>(body: B) -> bool {
    let mut body = pin!(body);
    let mut cx = Context::from_waker(Waker::noop());
    let mut trailers = false;
    loop {
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => trailers = frame.is_trailers(),
            Poll::Ready(_) => return trailers,
            Poll::Pending => {}
        }
    }
}

// The handler: reads the body, as `Json<…>` would, and answers 201.
async fn send_message<B: Body<Data = Bytes>>(request: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    let read = drain(request.into_body());
    let body = format!(r#"{{"id":"msg_1","status":"queued","bytes":{read}}}"#);
    Ok(Response::builder()
        .status(201)
        .header("content-type", "application/json")
        .header("location", "/v1/messages/msg_1")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response"))
}

fn request(method: Method, principal: &Principal, body: &Bytes, key: HeaderValue) -> Request<Full<Bytes>> {
    let mut request = Request::builder()
        .method(method)
        .uri("/v1/messages")
        .header("content-type", "application/json")
        .header(X_REQUEST_ID, key)
        .body(Full::new(body.clone()))
        .expect("a valid request");
    request.extensions_mut().insert(principal.clone());
    request
}

/// A unary gRPC answer: one message, then the trailers.
struct GrpcBody {
    message: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.message.take() {
            Some(message) => Frame::data(message),
            None => match self.trailers.take() {
                Some(trailers) => Frame::trailers(trailers),
                None => return Poll::Ready(None),
            },
        };
        Poll::Ready(Some(Ok(frame)))
    }
}

// The gRPC handler: reads the request message and answers one message.
async fn grpc_send_message<B: Body<Data = Bytes>>(request: Request<B>) -> Result<Response<GrpcBody>, Infallible> {
    let read = drain(request.into_body());
    let message = format!("msg_1 queued {read}");
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    Ok(Response::builder()
        .header("content-type", "application/grpc")
        .body(GrpcBody {
            message: Some(grpc_frame(message.as_bytes())),
            trailers: Some(trailers),
        })
        .expect("a valid response"))
}

fn grpc_frame(message: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(5 + message.len());
    frame.put_u8(0);
    frame.put_u32(u32::try_from(message.len()).expect("a small message"));
    frame.put_slice(message);
    frame.freeze()
}

fn grpc_request(principal: &Principal, message: &Bytes, key: HeaderValue) -> Request<Full<Bytes>> {
    let mut request = Request::post("/messaging.v1.Messaging/SendMessage")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header(X_REQUEST_ID, key)
        .body(Full::new(message.clone()))
        .expect("a valid request");
    request.extensions_mut().insert(principal.clone());
    request
}

fn one_kib_json() -> Bytes {
    let text = "x".repeat(1024 - r#"{"to":"+15550100","text":""}"#.len());
    let body = format!(r#"{{"to":"+15550100","text":"{text}"}}"#);
    assert_eq!(body.len(), 1024);
    Bytes::from(body)
}

fn bench(c: &mut Criterion) {
    let principal = Principal::new("acct_1", "key_1", KeyKind::Production);
    let body = one_kib_json();
    let replay_key = HeaderValue::from_static("5a1b2c3d-0000-4000-8000-000000000001");
    let mut group = c.benchmark_group("idempotency");

    let mut bare = service_fn(send_message::<Full<Bytes>>);
    group.bench_function("bare_service", |b| {
        b.iter(|| {
            let request = request(Method::POST, &principal, &body, replay_key.clone());
            let response = now(bare.call(request)).expect("infallible");
            black_box(drain(response.into_body()))
        })
    });

    let layer = IdempotencyLayer::new(MemoryIdempotencyStore::new());
    let mut layered = layer.layer(service_fn(send_message::<AxumBody>));

    let mut fresh = 0u64;
    group.bench_function("first_execution", |b| {
        b.iter(|| {
            fresh += 1;
            let key = HeaderValue::try_from(format!("bench-{fresh}")).expect("a valid key");
            let request = request(Method::POST, &principal, &body, key);
            let response = now(layered.call(request)).expect("infallible");
            debug_assert!(!response.headers().contains_key("idempotent-replayed"));
            black_box(drain(response.into_body()))
        })
    });

    let first = now(layered.call(request(Method::POST, &principal, &body, replay_key.clone()))).expect("infallible");
    assert_eq!(first.status(), 201);
    group.bench_function("replay", |b| {
        b.iter(|| {
            let request = request(Method::POST, &principal, &body, replay_key.clone());
            let response = now(layered.call(request)).expect("infallible");
            debug_assert_eq!(response.headers()["idempotent-replayed"], "true");
            black_box(drain(response.into_body()))
        })
    });

    group.bench_function("pass_through_get", |b| {
        b.iter(|| {
            let request = request(Method::GET, &principal, &body, replay_key.clone());
            let response = now(layered.call(request)).expect("infallible");
            black_box(drain(response.into_body()))
        })
    });

    let message = grpc_frame(&body);
    let mut grpc_bare = service_fn(grpc_send_message::<Full<Bytes>>);
    group.bench_function("grpc_bare_service", |b| {
        b.iter(|| {
            let request = grpc_request(&principal, &message, replay_key.clone());
            let response = now(grpc_bare.call(request)).expect("infallible");
            black_box(drain(response.into_body()))
        })
    });

    let mut grpc_layered =
        IdempotencyLayer::new(MemoryIdempotencyStore::new()).layer(service_fn(grpc_send_message::<AxumBody>));
    let first = now(grpc_layered.call(grpc_request(&principal, &message, replay_key.clone()))).expect("infallible");
    assert_eq!(drain(first.into_body()), 5 + "msg_1 queued 1029".len());
    let replay = now(grpc_layered.call(grpc_request(&principal, &message, replay_key.clone()))).expect("infallible");
    assert!(ends_with_trailers(replay.into_body()), "the replay carries grpc-status");
    group.bench_function("grpc_replay", |b| {
        b.iter(|| {
            let request = grpc_request(&principal, &message, replay_key.clone());
            let response = now(grpc_layered.call(request)).expect("infallible");
            debug_assert_eq!(response.headers()["idempotent-replayed"], "true");
            black_box(drain(response.into_body()))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
