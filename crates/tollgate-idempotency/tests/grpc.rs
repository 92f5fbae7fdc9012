//! gRPC unary calls through `IdempotencyLayer`: a response whose status
//! travels in its trailers is stored and replayed with them, and refusals
//! are gRPC statuses.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use tokio::sync::Semaphore;
use tollgate_core::idempotency::MemoryIdempotencyStore;
use tollgate_core::{KeyKind, ManualClock, Principal};
use tollgate_idempotency::{IdempotencyBody, IdempotencyLayer, IDEMPOTENT_REPLAYED, X_REQUEST_ID};
use tower::{Layer, Service, ServiceExt};

type InnerRequest = Request<axum_core::body::Body>;

const KEY: &str = "5a1b2c3d-0000-4000-8000-000000000001";
const SEND: &str = "/messaging.v1.Messaging/SendMessage";

/// One length-prefixed, uncompressed gRPC message.
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(5 + message.len());
    frame.put_u8(0);
    frame.put_u32(u32::try_from(message.len()).unwrap());
    frame.put_slice(message);
    frame.freeze()
}

/// A response body as a gRPC server sends it: data frames, then trailers.
struct GrpcBody(VecDeque<Frame<Bytes>>);

impl Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
}

/// What the handler answers: a message and `grpc-status` in the trailers,
/// or a trailers-only status in the headers.
#[derive(Clone, Copy)]
enum Answer {
    Message { grpc_status: u8, trailer_padding: usize },
    TrailersOnly { grpc_status: u8 },
}

/// A unary gRPC handler that counts its runs, optionally waiting for a
/// permit so a test can hold a call in flight.
#[derive(Clone)]
struct Handler {
    runs: Arc<AtomicUsize>,
    answer: Answer,
    gate: Option<Arc<Semaphore>>,
}

impl Handler {
    fn new(answer: Answer) -> Handler {
        Handler {
            runs: Arc::new(AtomicUsize::new(0)),
            answer,
            gate: None,
        }
    }

    fn ok() -> Handler {
        Handler::new(Answer::Message {
            grpc_status: 0,
            trailer_padding: 0,
        })
    }

    fn gated(mut self, gate: Arc<Semaphore>) -> Handler {
        self.gate = Some(gate);
        self
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

impl Service<InnerRequest> for Handler {
    type Response = Response<GrpcBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Response<GrpcBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: InnerRequest) -> Self::Future {
        let run = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        let (answer, gate) = (self.answer, self.gate.clone());
        Box::pin(async move {
            if let Some(gate) = gate {
                gate.acquire().await.expect("open gate").forget();
            }
            let received = request.into_body().collect().await.unwrap().to_bytes();
            let mut response = Response::new(GrpcBody(VecDeque::new()));
            response
                .headers_mut()
                .insert("content-type", HeaderValue::from_static("application/grpc"));
            match answer {
                Answer::Message {
                    grpc_status,
                    trailer_padding,
                } => {
                    let message = format!("run={run} received={}", received.len());
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", HeaderValue::from(u16::from(grpc_status)));
                    trailers.insert("x-run", HeaderValue::from(run));
                    trailers.insert("x-trace-bin", HeaderValue::from_static("AAEC"));
                    if trailer_padding > 0 {
                        let padding = HeaderValue::from_str(&"p".repeat(trailer_padding)).unwrap();
                        trailers.insert("x-padding", padding);
                    }
                    response
                        .body_mut()
                        .0
                        .extend([Frame::data(grpc_frame(message.as_bytes())), Frame::trailers(trailers)]);
                }
                Answer::TrailersOnly { grpc_status } => {
                    response
                        .headers_mut()
                        .insert("grpc-status", HeaderValue::from(u16::from(grpc_status)));
                }
            }
            Ok(response)
        })
    }
}

fn call(path: &str, message: &[u8]) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header(X_REQUEST_ID, KEY)
        .extension(Principal::new("acct_1", "key_1", KeyKind::Production))
        .body(Full::new(grpc_frame(message)))
        .unwrap()
}

/// Everything a gRPC client sees of a response.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    data: Bytes,
    trailers: Option<HeaderMap>,
}

impl Reply {
    fn replayed(&self) -> bool {
        self.headers
            .get(IDEMPOTENT_REPLAYED)
            .is_some_and(|value| value == "true")
    }

    /// `grpc-status` from the trailers, or from the headers of a trailers-only answer.
    fn grpc_status(&self) -> &str {
        let fields = self.trailers.as_ref().unwrap_or(&self.headers);
        fields["grpc-status"].to_str().unwrap()
    }
}

async fn send<S>(service: &mut S, request: Request<Full<Bytes>>) -> Reply
where
    S: Service<Request<Full<Bytes>>, Response = Response<IdempotencyBody<GrpcBody>>, Error = Infallible>,
{
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.expect("a whole body");
    Reply {
        status: parts.status,
        headers: parts.headers,
        trailers: collected.trailers().cloned(),
        data: collected.to_bytes(),
    }
}

fn store() -> MemoryIdempotencyStore {
    MemoryIdempotencyStore::new().with_clock(ManualClock::at_unix_secs(1_700_000_000))
}

#[tokio::test]
async fn a_retried_unary_call_is_replayed_with_the_same_message_and_trailers() {
    let handler = Handler::ok();
    let store = store();
    let mut service = IdempotencyLayer::new(store.clone()).layer(handler.clone());

    let first = send(&mut service, call(SEND, b"to=+15551234567")).await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(!first.replayed());
    assert_eq!(first.data, grpc_frame(b"run=1 received=20"));
    let trailers = first.trailers.clone().expect("the first answer keeps its trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["x-run"], "1");
    assert_eq!(trailers.len(), 3);

    for _ in 0..2 {
        let retry = send(&mut service, call(SEND, b"to=+15551234567")).await;
        assert!(retry.replayed());
        assert_eq!(retry.status, StatusCode::OK);
        assert_eq!(retry.headers["content-type"], "application/grpc");
        assert_eq!(retry.data, first.data, "the same message");
        assert_eq!(retry.trailers, first.trailers, "the same trailers, after the data");
    }
    assert_eq!(handler.runs(), 1, "the handler ran once");
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn a_trailers_only_error_status_is_replayed_too() {
    let handler = Handler::new(Answer::TrailersOnly { grpc_status: 3 });
    let mut service = IdempotencyLayer::new(store()).layer(handler.clone());
    let first = send(&mut service, call(SEND, b"to=garbage")).await;
    let retry = send(&mut service, call(SEND, b"to=garbage")).await;
    assert_eq!((first.grpc_status(), retry.grpc_status()), ("3", "3"));
    assert!(retry.replayed());
    assert_eq!((retry.data.len(), retry.trailers.as_ref()), (0, None));
    assert_eq!(
        handler.runs(),
        1,
        "INVALID_ARGUMENT is the call's answer, kept like a 4xx"
    );
}

#[tokio::test]
async fn refusals_are_grpc_statuses() {
    let gate = Arc::new(Semaphore::new(0));
    let handler = Handler::ok().gated(gate.clone());
    let mut service = IdempotencyLayer::new(store()).layer(handler.clone());

    let mut first = tokio_test::task::spawn(
        ServiceExt::<Request<Full<Bytes>>>::ready(&mut service)
            .await
            .unwrap()
            .call(call(SEND, b"one")),
    );
    assert!(first.poll().is_pending());
    let busy = send(&mut service, call(SEND, b"one")).await;
    assert_eq!(busy.status, StatusCode::OK, "gRPC statuses travel in HTTP 200");
    assert_eq!(busy.headers["content-type"], "application/grpc");
    assert_eq!(busy.grpc_status(), "10", "409 in progress is ABORTED");
    assert_eq!(busy.headers["retry-after"], "1");
    assert!(
        busy.data.is_empty() && busy.trailers.is_none(),
        "a trailers-only answer"
    );

    gate.add_permits(1);
    let first = first.await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let reused = send(&mut service, call(SEND, b"another message")).await;
    assert_eq!(reused.grpc_status(), "3", "422 key reused is INVALID_ARGUMENT");
    assert!(reused.headers["grpc-message"]
        .to_str()
        .unwrap()
        .contains("already used with a different request"));
    let mut bad_key = call(SEND, b"one");
    bad_key.headers_mut().insert(X_REQUEST_ID, HeaderValue::from_static(""));
    assert_eq!(send(&mut service, bad_key).await.grpc_status(), "3");
    assert_eq!(handler.runs(), 1);
}

#[tokio::test]
async fn responses_too_large_to_store_pass_through_intact() {
    // The message is 5 + 17 bytes; the trailers 11 + 1, 5 + 1 and 11 + 4 bytes.
    let whole = 22 + 12 + 6 + 15;
    let cases = [
        ("trailers over the limit", 0, whole - 1),
        ("trailers far over the limit", 4096, 1024),
        ("data over the limit", 0, 10),
    ];
    for (case, trailer_padding, limit) in cases {
        let handler = Handler::new(Answer::Message {
            grpc_status: 0,
            trailer_padding,
        });
        let store = store();
        let mut service = IdempotencyLayer::new(store.clone())
            .max_response_body(limit)
            .layer(handler.clone());
        for run in 1..=2 {
            let reply = send(&mut service, call(SEND, b"to=+15551234567")).await;
            assert!(!reply.replayed(), "{case}");
            assert_eq!(
                reply.data,
                grpc_frame(format!("run={run} received=20").as_bytes()),
                "{case}"
            );
            let trailers = reply.trailers.expect(case);
            assert_eq!(trailers["grpc-status"], "0", "{case}");
            assert_eq!(trailers["x-run"], run.to_string().as_str(), "{case}");
            assert_eq!(
                trailers.get("x-padding").map(|value| value.len()).unwrap_or(0),
                trailer_padding,
                "{case}"
            );
            assert!(store.is_empty(), "{case}: nothing stored, the claim released");
        }
        assert_eq!(handler.runs(), 2, "{case}: the retry ran again");
    }

    // Exactly at the limit, data and trailers included: stored.
    let handler = Handler::ok();
    let mut service = IdempotencyLayer::new(store())
        .max_response_body(whole)
        .layer(handler.clone());
    send(&mut service, call(SEND, b"to=+15551234567")).await;
    assert!(send(&mut service, call(SEND, b"to=+15551234567")).await.replayed());
    assert_eq!(handler.runs(), 1);
}

#[tokio::test]
async fn server_failures_are_not_stored_when_server_errors_are_not() {
    let failures = [
        Answer::Message {
            grpc_status: 13,
            trailer_padding: 0,
        },
        Answer::TrailersOnly { grpc_status: 14 },
    ];
    for answer in failures {
        let handler = Handler::new(answer);
        let store = store();
        let mut service = IdempotencyLayer::new(store.clone())
            .store_server_errors(false)
            .layer(handler.clone());
        let first = send(&mut service, call(SEND, b"x")).await;
        assert!(["13", "14"].contains(&first.grpc_status()));
        assert!(!send(&mut service, call(SEND, b"x")).await.replayed());
        assert_eq!(handler.runs(), 2, "INTERNAL and UNAVAILABLE are retried");
        assert!(store.is_empty());
    }
    // A client error is the call's answer: stored even then.
    let handler = Handler::new(Answer::Message {
        grpc_status: 5,
        trailer_padding: 0,
    });
    let mut service = IdempotencyLayer::new(store())
        .store_server_errors(false)
        .layer(handler.clone());
    send(&mut service, call(SEND, b"x")).await;
    let retry = send(&mut service, call(SEND, b"x")).await;
    assert_eq!((retry.grpc_status(), retry.replayed()), ("5", true));
    assert_eq!(handler.runs(), 1);
}

#[tokio::test]
async fn only_when_keeps_other_calls_out() {
    let handler = Handler::ok();
    let store = store();
    let mut service = IdempotencyLayer::new(store.clone())
        .only_when(|_, uri| uri.path() == SEND)
        .require_key()
        .layer(handler.clone());
    let stream = "/messaging.v1.Messaging/StreamMessages";
    for _ in 0..2 {
        assert!(!send(&mut service, call(stream, b"x")).await.replayed());
    }
    let mut keyless = call(stream, b"x");
    keyless.headers_mut().remove(X_REQUEST_ID);
    assert_eq!(
        send(&mut service, keyless).await.grpc_status(),
        "0",
        "a required key is required only where the layer applies"
    );
    assert_eq!(handler.runs(), 3);
    assert!(store.is_empty());

    send(&mut service, call(SEND, b"x")).await;
    assert!(send(&mut service, call(SEND, b"x")).await.replayed());
    assert_eq!(handler.runs(), 4);
}
