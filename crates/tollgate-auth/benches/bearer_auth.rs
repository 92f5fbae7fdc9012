//! Per-request cost of `BearerAuthLayer` over a `MemoryKeyStore` holding
//! 10,000 keys, against the bare service and tower-http's static-token
//! `ValidateRequestHeaderLayer::bearer`, in the same run with the same request.
//!
//! Every service here answers without waiting, so requests are driven by
//! polling with a no-op waker: the figures are the middleware's cost, not
//! an executor's. Each iteration builds its request (as a server would have
//! just parsed it, so it is hot in cache), so every figure includes that
//! construction: read the layers' cost as the difference from `bare_service`.
//!
//! `cargo bench -p tollgate-auth --bench bearer_auth -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderValue;
use tollgate_auth::{hash_key, BearerAuthLayer, KeyFormat};
use tollgate_core::KeyKind;
use tower::Layer;
use tower_http::validate_request::ValidateRequestHeaderLayer;

mod fixture;

use fixture::{bare, populated_store, request, serve};

fn bearer_auth(c: &mut Criterion) {
    let (store, headers) = populated_store();
    let mut next = 0usize;
    let mut next_header = move || {
        next = (next + 1) % headers.len();
        headers[next].clone()
    };
    let first = next_header();

    let mut group = c.benchmark_group("bearer_auth");

    let mut service = bare();
    group.bench_function("bare_service", |b| {
        b.iter(|| black_box(serve(&mut service, request(&first))))
    });

    let token = first.to_str().unwrap().trim_start_matches("Bearer ").to_owned();
    // Deprecated as "too basic to be useful in real applications" (one static
    // token), but it is the closest existing bearer check: the baseline.
    #[allow(deprecated)]
    let mut service = ValidateRequestHeaderLayer::bearer(&token).layer(bare());
    group.bench_function("tower_http_validate_bearer", |b| {
        b.iter(|| black_box(serve(&mut service, request(&first))))
    });

    let mut service = BearerAuthLayer::new(store.clone()).layer(bare());
    let response = serve(&mut service, request(&first));
    assert_eq!(response.status(), 200, "the benchmarked key authenticates");
    group.bench_function("tollgate_valid_key_10k_store", |b| {
        b.iter(|| black_box(serve(&mut service, request(&next_header()))))
    });

    let unknown = KeyFormat::default().generate(KeyKind::Production);
    let unknown = HeaderValue::from_str(&format!("Bearer {}", unknown.expose_secret())).unwrap();
    let response = serve(&mut service, request(&unknown));
    assert_eq!(response.status(), 401);
    group.bench_function("tollgate_unknown_key_401", |b| {
        b.iter(|| black_box(serve(&mut service, request(&unknown))))
    });

    let mut strict = BearerAuthLayer::new(store)
        .require_checksum(KeyFormat::default())
        .layer(bare());
    let garbage = HeaderValue::from_static("Bearer tg_live_this-is-not-a-real-key-at-all");
    group.bench_function("tollgate_checksum_rejects_garbage_401", |b| {
        b.iter(|| black_box(serve(&mut strict, request(&garbage))))
    });

    // What hashing alone costs, to read the figures above against.
    let token = first.to_str().unwrap()[7..].to_owned();
    group.bench_function("sha256_of_a_key", |b| b.iter(|| hash_key(black_box(&token))));
    group.finish();
}

criterion_group!(benches, bearer_auth);
criterion_main!(benches);
