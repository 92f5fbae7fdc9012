//! Verifying a signed webhook through `WebhookSignatureLayer` against a raw
//! HMAC-SHA256 over the same bytes (the floor any verifier pays), for
//! 1 KiB and 1 MiB bodies, arriving in one chunk or in 16 KiB chunks (what
//! a socket delivers; the layer then copies the body once).
//!
//! Run: `cargo bench -p tollgate-webhook --bench verify`

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum_core::body::Body as AxumBody;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures_util::FutureExt;
use hmac::{Hmac, Mac};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::Full;
use sha2::Sha256;
use tollgate_webhook::{Scheme, Signer, Verifier, WebhookSignatureLayer};
use tower::{Layer, ServiceExt};

const SECRET: &str = "It's a Secret to Everybody";

/// A body delivered in several frames, like hyper's `Incoming`.
struct Chunked(VecDeque<Bytes>);

impl Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }
}

fn request<B>(headers: &HeaderMap, body: B) -> Request<B> {
    let mut request = Request::post("/webhooks").body(body).unwrap();
    request.headers_mut().extend(headers.clone());
    request
}

// The handler: answers at once, whatever the body.
async fn handle<B>(_request: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::new())))
}

fn verify(c: &mut Criterion) {
    let handler = tower::service_fn(handle::<Full<Bytes>>);
    let verifier = Verifier::new(Scheme::github(), SECRET).unwrap();
    let layer = WebhookSignatureLayer::new(verifier).max_body_size(2 << 20);
    let service = layer.layer(tower::service_fn(handle::<AxumBody>));
    let chunked_service = layer.layer(tower::service_fn(handle::<AxumBody>));

    for (label, size) in [("1KiB", 1024usize), ("1MiB", 1 << 20)] {
        let body = Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let headers = Signer::new(Scheme::github(), SECRET)
            .unwrap()
            .sign(&body, 0, "")
            .unwrap();
        let signature = headers["x-hub-signature-256"].to_str().unwrap();
        let tag = hex::decode(&signature["sha256=".len()..]).unwrap();

        let mut group = c.benchmark_group(format!("webhook_verify_{label}"));
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function("raw_hmac_sha256", |b| {
            b.iter(|| {
                let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
                mac.update(&body);
                assert!(mac.verify_slice(&tag).is_ok());
            })
        });
        group.bench_function("bare_service", |b| {
            b.iter(|| {
                let response = handler
                    .oneshot(request(&headers, Full::new(body.clone())))
                    .now_or_never()
                    .unwrap()
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK);
            })
        });
        group.bench_function("layer", |b| {
            b.iter(|| {
                let response = service
                    .clone()
                    .oneshot(request(&headers, Full::new(body.clone())))
                    .now_or_never()
                    .unwrap()
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK);
            })
        });
        let chunks: VecDeque<Bytes> = (0..size)
            .step_by(16 * 1024)
            .map(|start| body.slice(start..(start + 16 * 1024).min(size)))
            .collect();
        // As from a socket: announced length, then 16 KiB frames.
        let mut with_length = headers.clone();
        with_length.insert(http::header::CONTENT_LENGTH, size.into());
        group.bench_function("layer_16KiB_chunks", |b| {
            b.iter_batched(
                || request(&with_length, Chunked(chunks.clone())),
                |request| {
                    let response = chunked_service
                        .clone()
                        .oneshot(request)
                        .now_or_never()
                        .unwrap()
                        .unwrap();
                    assert_eq!(response.status(), StatusCode::OK);
                },
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }
}

criterion_group!(benches, verify);
criterion_main!(benches);
