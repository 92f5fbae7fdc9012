//! Many distinct spoofed idempotency ids through the layer keep the memory
//! store within its entry and byte bounds: 20,000 by default,
//! 1,000,000 with `TOLLGATE_FULL_BOUNDS=1`.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tollgate_core::idempotency::MemoryIdempotencyStore;
use tollgate_core::{KeyKind, Principal};
use tollgate_idempotency::{IdempotencyLayer, X_REQUEST_ID};
use tower::{Layer, ServiceExt};

const MAX_ENTRIES: usize = 1_000;
const MAX_BYTES: usize = 256 * 1024;

#[tokio::test]
async fn a_flood_of_distinct_ids_stays_within_the_bounds() {
    let requests: usize = if std::env::var_os("TOLLGATE_FULL_BOUNDS").is_some() {
        1_000_000
    } else {
        20_000
    };
    let store = MemoryIdempotencyStore::new()
        .with_max_entries(MAX_ENTRIES)
        .with_max_bytes(MAX_BYTES);
    let handler = tower::service_fn(|_request: Request<axum_core::body::Body>| async {
        Ok::<_, Infallible>(
            Response::builder()
                .status(201)
                .body(Full::new(Bytes::from_static(&[b'x'; 200])))
                .unwrap(),
        )
    });
    let service = IdempotencyLayer::new(store.clone()).layer(handler);
    let principal = Principal::new("acct_1", "key_1", KeyKind::Production);
    let (mut most_entries, mut most_bytes) = (0, 0);
    for i in 0..requests {
        let request = Request::post("/v1/messages")
            .header(X_REQUEST_ID, format!("spoofed-{i:016}"))
            .extension(principal.clone())
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "request {i}");
        response.into_body().collect().await.unwrap();
        if i % 97 == 0 {
            most_entries = most_entries.max(store.len());
            most_bytes = most_bytes.max(store.bytes());
        }
    }
    most_entries = most_entries.max(store.len());
    most_bytes = most_bytes.max(store.bytes());
    assert!(most_entries <= MAX_ENTRIES, "{most_entries} entries");
    assert!(most_bytes <= MAX_BYTES, "{most_bytes} bytes");
    // The bound is what holds them: it is reached.
    assert!(most_entries >= MAX_ENTRIES / 2 || most_bytes >= MAX_BYTES / 2);
}
