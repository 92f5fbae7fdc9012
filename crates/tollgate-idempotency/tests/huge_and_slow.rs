//! Hostile bodies: a 100 MB body is refused at the limit having read little
//! more than the limit, a request body that never ends holds no claim, and
//! a response body that never ends holds its claim only until the lock
//! timeout.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use tollgate_core::idempotency::MemoryIdempotencyStore;
use tollgate_core::{KeyKind, ManualClock, Principal};
use tollgate_idempotency::{IdempotencyLayer, X_REQUEST_ID};
use tower::{Layer, Service, ServiceExt};

type InnerRequest = Request<axum_core::body::Body>;

const CHUNK: usize = 64 * 1024;
const HUNDRED_MB: usize = 100 * 1024 * 1024;
const LIMIT: usize = 1024 * 1024;

/// A body of `total` bytes in 64 KiB chunks, counting what is read of it.
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

/// One chunk, then nothing ever again.
struct Endless(Option<Bytes>);

impl Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.0.take() {
            Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            None => Poll::Pending,
        }
    }
}

fn keyed<B>(body: B) -> Request<B> {
    Request::post("/v1/messages")
        .header(X_REQUEST_ID, "req_hostile_1")
        .extension(Principal::new("acct_1", "key_1", KeyKind::Production))
        .body(body)
        .unwrap()
}

fn counting_handler(
    runs: Arc<AtomicUsize>,
) -> impl Service<InnerRequest, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send> + Clone {
    tower::service_fn(move |request: InnerRequest| {
        let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let text = format!("run={run} len={}", body.len());
            Ok::<_, Infallible>(
                Response::builder()
                    .status(201)
                    .body(Full::new(Bytes::from(text)))
                    .unwrap(),
            )
        }
    })
}

async fn status_and_text<F, B, E>(future: F) -> (StatusCode, String)
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    B::Error: std::fmt::Debug,
    E: std::fmt::Debug,
{
    let response = future.await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

// Polls a future a few times without waiting on it.
async fn poll_a_little<F: Future + Unpin>(future: &mut F) {
    for _ in 0..20 {
        let ready = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx).is_ready())).await;
        assert!(!ready, "the request must still be waiting");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_100_mb_body_is_refused_at_the_limit_without_being_read_whole() {
    let runs = Arc::new(AtomicUsize::new(0));
    let service = IdempotencyLayer::new(MemoryIdempotencyStore::new())
        .max_request_body(LIMIT)
        .layer(counting_handler(runs.clone()));
    let read = Arc::new(AtomicUsize::new(0));
    let flood = Flood {
        left: HUNDRED_MB,
        read: read.clone(),
    };
    let (status, text) = status_and_text(service.clone().oneshot(keyed(flood))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(text.contains("PAYLOAD_TOO_LARGE"), "{text}");
    let read = read.load(Ordering::SeqCst);
    assert!(read <= LIMIT + CHUNK, "{read} bytes read for a {LIMIT}-byte limit");
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    // No claim was left behind: the same key with a small body runs.
    let small = Full::new(Bytes::from_static(b"{}"));
    let (status, text) = status_and_text(service.oneshot(keyed(small))).await;
    assert_eq!((status, text.as_str()), (StatusCode::CREATED, "run=1 len=2"));
}

#[tokio::test]
async fn a_request_body_that_never_ends_holds_no_claim() {
    let runs = Arc::new(AtomicUsize::new(0));
    let service = IdempotencyLayer::new(MemoryIdempotencyStore::new()).layer(counting_handler(runs.clone()));
    // The fingerprint covers the body, so the key is claimed only once the
    // body is whole: a body that never ends never claims it.
    let mut stuck = Box::pin(
        service
            .clone()
            .oneshot(keyed(Endless(Some(Bytes::from_static(b"{\"to\":"))))),
    );
    poll_a_little(&mut stuck).await;
    let whole = Full::new(Bytes::from_static(b"{\"to\":1}"));
    let (status, text) = status_and_text(service.oneshot(keyed(whole))).await;
    assert_eq!((status, text.as_str()), (StatusCode::CREATED, "run=1 len=8"));
    poll_a_little(&mut stuck).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the endless request never reached the handler"
    );
}

#[tokio::test]
async fn a_response_body_that_never_ends_releases_the_claim_after_the_lock_timeout() {
    let clock = ManualClock::at_unix_secs(1_700_000_000);
    let store = MemoryIdempotencyStore::new().with_clock(clock.clone());
    let runs = Arc::new(AtomicUsize::new(0));
    let handler = {
        let runs = runs.clone();
        tower::service_fn(move |_request: InnerRequest| {
            let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                let body = if run == 1 {
                    // The first run streams forever.
                    http_body_util::Either::Left(Endless(Some(Bytes::from_static(b"partial"))))
                } else {
                    http_body_util::Either::Right(Full::new(Bytes::from(format!("run={run}"))))
                };
                Ok::<_, Infallible>(Response::builder().status(201).body(body).unwrap())
            }
        })
    };
    let service = IdempotencyLayer::new(store)
        .lock_timeout(Duration::from_secs(5))
        .layer(handler);
    let request = || keyed(Full::new(Bytes::from_static(b"{}")));

    let mut stuck = Box::pin(service.clone().oneshot(request()));
    poll_a_little(&mut stuck).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let (status, text) = status_and_text(service.clone().oneshot(request())).await;
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    assert!(text.contains("IDEMPOTENCY_IN_PROGRESS"), "{text}");

    clock.advance(Duration::from_secs(5));
    let (status, text) = status_and_text(service.clone().oneshot(request())).await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::CREATED, "run=2"),
        "the claim expired"
    );
    drop(stuck);
}
