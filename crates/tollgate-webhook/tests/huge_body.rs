//! A 100 MB webhook body is refused at the size limit having read little
//! more than the limit, whether or not its signature header looks right.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use tollgate_webhook::{Scheme, Signer, Verifier, WebhookSignatureLayer};
use tower::{Layer, ServiceExt};

const CHUNK: usize = 64 * 1024;
const HUNDRED_MB: usize = 100 * 1024 * 1024;
const LIMIT: usize = 1024 * 1024;
const SECRET: &str = "seed-secret";

struct Flood {
    left: usize,
    read: Arc<AtomicUsize>,
}

impl Body for Flood {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let len = self.left.min(CHUNK);
        self.left -= len;
        self.read.fetch_add(len, Ordering::SeqCst);
        static ZEROS: [u8; CHUNK] = [0; CHUNK];
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&ZEROS[..len])))))
    }
}

#[tokio::test]
async fn a_100_mb_webhook_is_refused_at_the_limit_without_being_read_whole() {
    let calls = Arc::new(AtomicUsize::new(0));
    let handler = {
        let calls = calls.clone();
        tower::service_fn(move |_request: Request<axum_core::body::Body>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
        })
    };
    let verifier = Verifier::new(Scheme::hex(), SECRET).unwrap();
    let service = WebhookSignatureLayer::new(verifier).max_body_size(LIMIT).layer(handler);
    // A well-formed signature (of some other body), so the body is read.
    let headers = Signer::new(Scheme::hex(), SECRET).unwrap().sign(b"{}", 0, "").unwrap();
    let read = Arc::new(AtomicUsize::new(0));
    let mut request = Request::post("/webhooks")
        .body(Flood {
            left: HUNDRED_MB,
            read: read.clone(),
        })
        .unwrap();
    request.headers_mut().extend(headers);
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        body,
        r#"{"error":{"code":"PAYLOAD_TOO_LARGE","message":"The request body exceeds 1048576 bytes.","limit":1048576}}"#
    );
    let read = read.load(Ordering::SeqCst);
    assert!(read <= LIMIT + CHUNK, "{read} bytes read for a {LIMIT}-byte limit");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}
