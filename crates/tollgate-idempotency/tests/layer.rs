//! Service-level behaviour of `IdempotencyLayer`, driven through
//! `poll_ready`/`call` with an in-memory store and a manual clock.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Either, Full};
use tokio::sync::Semaphore;
use tollgate_core::conformance::{self, FakeStore};
use tollgate_core::idempotency::MemoryIdempotencyStore;
use tollgate_core::{ErrorFormat, KeyKind, ManualClock, Principal, Renderer};
use tollgate_idempotency::{IdempotencyLayer, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, X_REQUEST_ID};
use tower::{Layer, Service, ServiceExt};

type InnerRequest = Request<axum_core::body::Body>;

const KEY: &str = "5a1b2c3d-0000-4000-8000-000000000001";

/// Counts its runs, echoes the request and its run number, and sets the
/// headers a replay must reproduce (and one it must not).
#[derive(Clone)]
struct Api {
    runs: Arc<AtomicUsize>,
}

impl Api {
    fn new() -> Api {
        Api {
            runs: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    fn service(
        &self,
    ) -> impl Service<InnerRequest, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send> + Clone + Send
    {
        let runs = self.runs.clone();
        tower::service_fn(move |request: InnerRequest| {
            let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Ok(echo(request, run).await) }
        })
    }
}

async fn echo(request: InnerRequest, run: usize) -> Response<Full<Bytes>> {
    // Client bodies here never announce their length (`Sent`); the bytes
    // the layer buffered do.
    let buffered = request.body().size_hint().exact().is_some();
    let (parts, body) = request.into_parts();
    let body = body.collect().await.expect("a readable body").to_bytes();
    let text = format!(
        "run={run} {} {} buffered={buffered} body={}",
        parts.method,
        parts.uri,
        String::from_utf8_lossy(&body)
    );
    Response::builder()
        .status(StatusCode::CREATED)
        .header("content-type", "text/plain")
        .header("location", format!("/v1/messages/msg_{run}"))
        .header("x-multi", "one")
        .header("x-multi", "two")
        .header("set-cookie", format!("session={run}"))
        .body(Full::new(Bytes::from(text)))
        .expect("a valid response")
}

fn principal(account: &str) -> Principal {
    Principal::new(account, format!("key_{account}"), KeyKind::Production)
}

/// A request body as a client streams it: its length not announced.
struct Sent(Option<Bytes>);

impl Sent {
    fn new(body: &'static str) -> Sent {
        Sent(Some(Bytes::from_static(body.as_bytes())))
    }
}

impl Body for Sent {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|chunk| Ok(Frame::data(chunk))))
    }
}

fn request(method: Method, path: &str, key: Option<&str>, body: &'static str) -> Request<Sent> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .extension(principal("acct_1"));
    if let Some(key) = key {
        builder = builder.header(X_REQUEST_ID, key);
    }
    builder.body(Sent::new(body)).unwrap()
}

fn post(body: &'static str) -> Request<Sent> {
    request(Method::POST, "/v1/messages", Some(KEY), body)
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn replayed(&self) -> bool {
        self.headers
            .get(IDEMPOTENT_REPLAYED)
            .is_some_and(|value| value == "true")
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8")
    }

    fn code(&self) -> String {
        let json: serde_json::Value = serde_json::from_slice(&self.body).expect("a JSON error body");
        json["error"]["code"].as_str().expect("a code").to_owned()
    }
}

async fn send<S, B>(service: &mut S, request: Request<B>) -> Reply
where
    S: Service<Request<B>, Response = Response<tollgate_idempotency::IdempotencyBody<Full<Bytes>>>>,
    S::Error: std::fmt::Debug,
{
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.expect("a whole body").to_bytes(),
    }
}

/// The response future of `request`, called on `service` once it is ready,
/// not yet polled.
async fn call<S>(service: &mut S, request: Request<Sent>) -> S::Future
where
    S: Service<Request<Sent>>,
    S::Error: std::fmt::Debug,
{
    ServiceExt::<Request<Sent>>::ready(service).await.unwrap().call(request)
}

fn memory_store() -> (MemoryIdempotencyStore, ManualClock) {
    let clock = ManualClock::at_unix_secs(1_700_000_000);
    (MemoryIdempotencyStore::new().with_clock(clock.clone()), clock)
}

/// What most tests start from: the counting API, and a layer over a memory
/// store (the layer holds a clone of `store`) on a manual clock.
struct Setup {
    api: Api,
    layer: IdempotencyLayer,
    store: MemoryIdempotencyStore,
    clock: ManualClock,
}

fn setup() -> Setup {
    let (store, clock) = memory_store();
    Setup {
        api: Api::new(),
        layer: IdempotencyLayer::new(store.clone()),
        store,
        clock,
    }
}

#[tokio::test]
async fn a_retry_is_replayed_byte_for_byte_and_the_handler_runs_once() {
    let Setup { api, layer, store, .. } = setup();
    let mut service = layer.layer(api.service());

    let first = send(&mut service, post(r#"{"to":"+15550100"}"#)).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(!first.replayed());
    assert_eq!(
        first.text(),
        r#"run=1 POST /v1/messages buffered=true body={"to":"+15550100"}"#
    );
    assert_eq!(
        first.headers["set-cookie"], "session=1",
        "the first response is untouched"
    );

    for _ in 0..3 {
        let retry = send(&mut service, post(r#"{"to":"+15550100"}"#)).await;
        assert_eq!(retry.status, first.status);
        assert_eq!(retry.body, first.body);
        assert!(retry.replayed());
        let mut expected = first.headers.clone();
        expected.remove("set-cookie");
        let mut replayed = retry.headers.clone();
        replayed.remove(IDEMPOTENT_REPLAYED);
        assert_eq!(replayed, expected, "every stored header, in order, except Set-Cookie");
        let multi: Vec<&HeaderValue> = retry.headers.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["one", "two"]);
    }
    assert_eq!(api.runs(), 1);
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn the_same_key_with_another_request_is_422() {
    let Setup { api, layer, .. } = setup();
    let mut service = layer.layer(api.service());
    assert_eq!(send(&mut service, post(r#"{"to":"+15550100"}"#)).await.status, 201);

    let changed_body = send(&mut service, post(r#"{"to":"+15550199"}"#)).await;
    assert_eq!(changed_body.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(changed_body.code(), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(changed_body.headers["content-type"], "application/json");

    let changed_path = request(Method::POST, "/v1/templates", Some(KEY), r#"{"to":"+15550100"}"#);
    assert_eq!(send(&mut service, changed_path).await.status, 422);
    let changed_query = request(Method::POST, "/v1/messages?x=1", Some(KEY), r#"{"to":"+15550100"}"#);
    assert_eq!(send(&mut service, changed_query).await.status, 422);
    let changed_method = request(Method::PATCH, "/v1/messages", Some(KEY), r#"{"to":"+15550100"}"#);
    assert_eq!(send(&mut service, changed_method).await.status, 422);
    assert_eq!(api.runs(), 1);
}

#[tokio::test]
async fn bad_keys_are_400_and_never_reach_the_handler() {
    let Setup { api, layer, .. } = setup();
    let mut service = layer.layer(api.service());
    let too_long = "k".repeat(256);
    let bad: [&[u8]; 6] = [
        b"",
        too_long.as_bytes(),
        "cl\u{e9}-\u{1f600}".as_bytes(),
        b"tab\tinside",
        b"with space",
        br#""unterminated\""#,
    ];
    for raw in bad {
        let mut request = post("{}");
        request
            .headers_mut()
            .insert(X_REQUEST_ID, HeaderValue::from_bytes(raw).unwrap());
        let reply = send(&mut service, request).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{:?}",
            String::from_utf8_lossy(raw)
        );
        assert_eq!(reply.code(), "INVALID_IDEMPOTENCY_KEY");
        assert!(reply.text().contains("X-Request-ID") || reply.text().contains("x-request-id"));
    }
    let mut repeated = post("{}");
    repeated
        .headers_mut()
        .append(X_REQUEST_ID, HeaderValue::from_static("a"));
    let reply = send(&mut service, repeated).await;
    assert_eq!(
        (reply.status.as_u16(), reply.code().as_str()),
        (400, "INVALID_IDEMPOTENCY_KEY")
    );
    assert_eq!(api.runs(), 0);

    let longest = "k".repeat(255);
    let mut fine = post("{}");
    fine.headers_mut()
        .insert(X_REQUEST_ID, HeaderValue::from_str(&longest).unwrap());
    assert_eq!(send(&mut service, fine).await.status, 201);
    assert_eq!(api.runs(), 1);
}

#[tokio::test]
async fn idempotency_key_in_its_structured_string_form_names_the_same_key() {
    let Setup { api, layer, .. } = setup();
    let mut service = layer.headers([IDEMPOTENCY_KEY, X_REQUEST_ID]).layer(api.service());
    let with = |name: HeaderName, value: &'static str| {
        let mut request = request(Method::POST, "/v1/messages", None, "{}");
        request.headers_mut().insert(name, HeaderValue::from_static(value));
        request
    };
    let first = send(&mut service, with(IDEMPOTENCY_KEY, "\"abc-123\"")).await;
    assert!(!first.replayed());
    let bare = send(&mut service, with(IDEMPOTENCY_KEY, "abc-123")).await;
    let legacy = send(&mut service, with(X_REQUEST_ID, "abc-123")).await;
    assert!(bare.replayed() && legacy.replayed());
    assert_eq!(bare.body, first.body);
    assert_eq!(api.runs(), 1);

    let mut both = with(IDEMPOTENCY_KEY, "\"one\"");
    both.headers_mut().insert(X_REQUEST_ID, HeaderValue::from_static("two"));
    let reply = send(&mut service, both).await;
    assert_eq!(
        (reply.status.as_u16(), reply.code().as_str()),
        (400, "INVALID_IDEMPOTENCY_KEY")
    );
}

/// A body that fails the test if anything reads it.
struct Untouchable;

impl Body for Untouchable {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        panic!("the body of an oversized request must not be read")
    }
}

/// Chunks with no announced length, as a streaming client sends them.
struct Chunks(VecDeque<Bytes>);

impl Chunks {
    fn of(chunk: &'static [u8], count: usize) -> Chunks {
        Chunks((0..count).map(|_| Bytes::from_static(chunk)).collect())
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }
}

fn keyed<B>(body: B) -> Request<B> {
    Request::post("/v1/messages")
        .header(X_REQUEST_ID, KEY)
        .extension(principal("acct_1"))
        .body(body)
        .unwrap()
}

#[tokio::test]
async fn oversized_bodies_are_413_and_announced_ones_are_not_read() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let handler = tower::service_fn(move |request: InnerRequest| {
        counter.fetch_add(1, Ordering::SeqCst);
        let (_, body) = request.into_parts();
        async move {
            assert!(body.size_hint().exact().is_some(), "buffered");
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }
    });
    let Setup { layer, .. } = setup();
    let mut service = layer.max_request_body(1024).layer(handler);
    let mut announced = keyed(Untouchable);
    announced
        .headers_mut()
        .insert("content-length", HeaderValue::from_static("1025"));
    let reply = send(&mut service, announced).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        reply.text(),
        r#"{"error":{"code":"PAYLOAD_TOO_LARGE","message":"The request body exceeds the limit of 1024 bytes.","max_bytes":1024}}"#
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);

    // Unannounced (chunked): refused once the limit is crossed.
    let Setup { api, layer, .. } = setup();
    let handler = tower::service_fn({
        let runs = api.runs.clone();
        move |request: InnerRequest| {
            let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                let body = request.into_body().collect().await.unwrap().to_bytes();
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                    "run={run} len={}",
                    body.len()
                )))))
            }
        }
    });
    let mut service = layer.max_request_body(1024).layer(handler);
    let reply = send(&mut service, keyed(Chunks::of(&[b'x'; 100], 11))).await;
    assert_eq!(
        (reply.status.as_u16(), reply.code().as_str()),
        (413, "PAYLOAD_TOO_LARGE")
    );
    assert_eq!(api.runs(), 0);
    // Exactly the limit, in many chunks, reaches the handler whole.
    let reply = send(&mut service, keyed(Chunks::of(&[b'x'; 128], 8))).await;
    assert_eq!((reply.status, reply.text()), (StatusCode::OK, "run=1 len=1024"));
    let replay = send(&mut service, keyed(Chunks::of(&[b'x'; 256], 4))).await;
    assert!(replay.replayed(), "the same bytes in other chunks are the same request");
    assert_eq!(api.runs(), 1);
}

#[tokio::test]
async fn equal_keys_of_different_accounts_or_environments_never_meet() {
    let Setup { api, layer, .. } = setup();
    let mut service = layer.layer(api.service());
    let from = |principal: Principal| {
        let mut request = post("{}");
        request.extensions_mut().insert(principal);
        request
    };
    let first = send(&mut service, from(principal("acct_1"))).await;
    let other = send(&mut service, from(principal("acct_2"))).await;
    let sandbox = send(
        &mut service,
        from(Principal::new("acct_1", "key_sbx", KeyKind::Sandbox)),
    )
    .await;
    assert!(!first.replayed() && !other.replayed() && !sandbox.replayed());
    assert_eq!(api.runs(), 3, "each account and environment executes its own request");
    // Another key of the same account shares its idempotency keys.
    let rotated = send(
        &mut service,
        from(Principal::new("acct_2", "key_new", KeyKind::Production)),
    )
    .await;
    assert!(rotated.replayed());
    assert_eq!(rotated.body, other.body);
    assert_ne!(other.body, first.body);
    assert_eq!(api.runs(), 3);
}

#[tokio::test]
async fn a_key_runs_again_after_its_ttl() {
    let Setup {
        api,
        layer,
        store,
        clock,
    } = setup();
    let mut service = layer.layer(api.service());
    send(&mut service, post("{}")).await;
    clock.advance(Duration::from_secs(24 * 3600 - 1));
    assert!(send(&mut service, post("{}")).await.replayed());
    clock.advance(Duration::from_secs(1));
    let again = send(&mut service, post("{}")).await;
    assert!(!again.replayed());
    assert!(again.text().starts_with("run=2 "));
    assert_eq!(api.runs(), 2);
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn a_configured_ttl_is_honoured() {
    let Setup { api, layer, clock, .. } = setup();
    let mut service = layer.ttl(Duration::from_secs(60)).layer(api.service());
    send(&mut service, post("{}")).await;
    clock.advance(Duration::from_secs(59));
    assert!(send(&mut service, post("{}")).await.replayed());
    clock.advance(Duration::from_secs(1));
    assert!(!send(&mut service, post("{}")).await.replayed());
}

#[tokio::test]
async fn a_claim_left_by_a_crashed_instance_is_409_until_its_lock_expires() {
    let Setup { api, layer, clock, .. } = setup();
    // Another instance (sharing the store) claimed the key and died mid-request:
    // its future is leaked, so nothing ever releases the claim.
    let gate = Arc::new(Semaphore::new(0));
    let mut crashed = layer.clone().layer(gated(&Api::new(), gate));
    let mut lost = Box::pin(call(&mut crashed, post("{}")).await);
    assert!(futures_poll_once(lost.as_mut()).is_pending());
    std::mem::forget(lost);

    let mut service = layer.layer(api.service());
    let busy = send(&mut service, post("{}")).await;
    assert_eq!(busy.status, StatusCode::CONFLICT);
    assert_eq!(busy.headers["retry-after"], "1");
    assert_eq!(
        busy.text(),
        r#"{"error":{"code":"IDEMPOTENCY_IN_PROGRESS","message":"A request with this idempotency key is still being processed. Retry later.","retry_after":1}}"#
    );
    clock.advance(Duration::from_secs(59));
    assert_eq!(send(&mut service, post("{}")).await.status, 409);
    assert_eq!(api.runs(), 0);
    clock.advance(Duration::from_secs(1));
    assert_eq!(send(&mut service, post("{}")).await.status, 201);
    assert_eq!(api.runs(), 1);
}

fn futures_poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(std::task::Waker::noop()))
}

/// A handler that waits for a permit before answering, so a test can hold a
/// request in flight.
fn gated(
    api: &Api,
    gate: Arc<Semaphore>,
) -> impl Service<InnerRequest, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send> + Clone {
    let runs = api.runs.clone();
    tower::service_fn(move |request: InnerRequest| {
        let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
        let gate = gate.clone();
        async move {
            gate.acquire().await.expect("open gate").forget();
            Ok(echo(request, run).await)
        }
    })
}

#[tokio::test]
async fn a_key_in_flight_is_409_then_replayed_once_done() {
    let Setup { api, layer, .. } = setup();
    let gate = Arc::new(Semaphore::new(0));
    let mut service = layer
        .retry_after(Duration::from_secs(3))
        .layer(gated(&api, gate.clone()));

    let mut first = tokio_test::task::spawn(call(&mut service, post("{}")).await);
    assert!(first.poll().is_pending());
    assert_eq!(api.runs(), 1);

    let busy = send(&mut service, post("{}")).await;
    assert_eq!(
        (busy.status.as_u16(), busy.code().as_str()),
        (409, "IDEMPOTENCY_IN_PROGRESS")
    );
    assert_eq!(busy.headers["retry-after"], "3");
    let reused = send(&mut service, post(r#"{"other":true}"#)).await;
    assert_eq!(reused.status, 422, "another request under a key in flight");

    gate.add_permits(1);
    let first = first.await.unwrap();
    assert_eq!(first.status(), 201);
    let replay = send(&mut service, post("{}")).await;
    assert!(replay.replayed());
    assert_eq!(replay.body, first.into_body().collect().await.unwrap().to_bytes());
    assert_eq!(api.runs(), 1);
}

#[tokio::test]
async fn an_inner_error_releases_the_key_for_a_retry() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let flaky = tower::service_fn(move |request: InnerRequest| {
        let run = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if run == 1 {
                return Err("database connection lost");
            }
            Ok(echo(request, run).await)
        }
    });
    let Setup { layer, store, .. } = setup();
    let mut service = layer.layer(flaky);
    let response = call(&mut service, post("{}")).await;
    let error = response.await.unwrap_err();
    assert_eq!(error, "database connection lost");
    assert!(store.is_empty(), "the claim was released before the error was returned");
    let retry = send(&mut service, post("{}")).await;
    assert_eq!(retry.status, 201);
    assert!(retry.text().starts_with("run=2 "));
    assert!(send(&mut service, post("{}")).await.replayed());
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_dropped_response_future_releases_the_key_for_a_retry() {
    let Setup { api, layer, store, .. } = setup();
    let gate = Arc::new(Semaphore::new(0));
    let mut service = layer.layer(gated(&api, gate.clone()));

    let mut abandoned = tokio_test::task::spawn(call(&mut service, post("{}")).await);
    assert!(abandoned.poll().is_pending());
    assert_eq!(store.len(), 1, "claimed");
    drop(abandoned); // the client went away
    assert!(store.is_empty(), "the memory store's abort finishes inside drop");

    gate.add_permits(1);
    let retry = send(&mut service, post("{}")).await;
    assert_eq!(retry.status, 201);
    assert!(retry.text().starts_with("run=2 "));
    assert_eq!(api.runs(), 2);
}

#[test]
fn a_dropped_response_future_releases_the_key_without_a_runtime_too() {
    let Setup { api, layer, store, .. } = setup();
    let gate = Arc::new(Semaphore::new(0));
    let mut service = layer.layer(gated(&api, gate.clone()));
    let mut abandoned = tokio_test::task::spawn(service.call(post("{}")));
    assert!(abandoned.poll().is_pending());
    assert_eq!(store.len(), 1);
    drop(abandoned);
    assert!(store.is_empty());
}

// The abort of a store that answers over the network (here: held at a
// gate) cannot finish inside `drop`: the runtime must finish it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_abort_on_drop_is_finished_by_the_runtime() {
    let api = Api::new();
    let gate = Arc::new(Semaphore::new(0));
    let (memory, _clock) = memory_store();
    let store = FakeStore::new(memory.clone());
    let mut service = IdempotencyLayer::new(store.clone()).layer(gated(&api, gate.clone()));
    let mut abandoned = tokio_test::task::spawn(call(&mut service, post("{}")).await);
    assert!(abandoned.poll().is_pending());
    let held = conformance::Gate::closed();
    store.gate(Some(held.clone()));
    drop(abandoned);
    // A safety net against a hang, not a synchronisation: the abort waits
    // at the gate only once a runtime task polls it.
    tokio::time::timeout(Duration::from_secs(10), async {
        while held.waiting() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the abort ran on the runtime");
    held.open();
    assert_eq!(store.calls("abort"), 1);
    assert!(memory.is_empty(), "the runtime finished the abort");
}

#[tokio::test]
async fn server_errors_are_stored_unless_configured_otherwise() {
    let failing = |runs: Arc<AtomicUsize>| {
        tower::service_fn(move |_request: InnerRequest| {
            let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                let mut response = Response::new(Full::new(Bytes::from(format!("boom {run}"))));
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                Ok::<_, Infallible>(response)
            }
        })
    };
    let runs = Arc::new(AtomicUsize::new(0));
    let Setup { layer, .. } = setup();
    let mut service = layer.layer(failing(runs.clone()));
    send(&mut service, post("{}")).await;
    let replay = send(&mut service, post("{}")).await;
    assert_eq!(
        (replay.status.as_u16(), replay.text(), replay.replayed()),
        (500, "boom 1", true)
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    let runs = Arc::new(AtomicUsize::new(0));
    let Setup { layer, store, .. } = setup();
    let mut service = layer.store_server_errors(false).layer(failing(runs.clone()));
    assert_eq!(send(&mut service, post("{}")).await.text(), "boom 1");
    assert!(store.is_empty());
    let retry = send(&mut service, post("{}")).await;
    assert_eq!((retry.text(), retry.replayed()), ("boom 2", false));
}

#[tokio::test]
async fn responses_too_large_to_store_pass_through_whole_and_release_the_key() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let big = tower::service_fn(move |request: InnerRequest| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            // Announced (exact size) for one path, streamed for the other.
            let body = if request.uri().path() == "/announced" {
                Either::Left(Full::new(Bytes::from(vec![b'a'; 2048])))
            } else {
                Either::Right(Chunks::of(&[b's'; 512], 4))
            };
            Ok::<_, Infallible>(Response::new(body))
        }
    });
    let Setup { layer, store, .. } = setup();
    let mut service = layer.max_response_body(1024).layer(big);
    for (path, byte) in [("/announced", b'a'), ("/streamed", b's')] {
        for run in 0..2 {
            let request = request(Method::POST, path, Some(KEY), "{}");
            let response = call(&mut service, request).await;
            let response = response.await.unwrap();
            assert!(!response.headers().contains_key(IDEMPOTENT_REPLAYED), "{path} {run}");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body.len(), 2048, "{path}: the client gets the whole body");
            assert!(body.iter().all(|b| *b == byte));
            assert!(store.is_empty(), "{path}: nothing stored, the claim released");
        }
    }
    assert_eq!(runs.load(Ordering::SeqCst), 4, "each retry ran again");
}

#[tokio::test]
async fn other_methods_pass_through_untouched() {
    let Setup { api, layer, store, .. } = setup();
    let mut service = layer.layer(api.service());
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        for _ in 0..2 {
            let reply = send(&mut service, request(method.clone(), "/v1/messages", Some(KEY), "x")).await;
            assert!(!reply.replayed());
            assert!(reply.text().contains("buffered=false"), "{}", reply.text());
            assert!(reply.headers.contains_key("set-cookie"), "nothing is filtered");
        }
    }
    assert_eq!(api.runs(), 6);
    assert!(store.is_empty());

    let Setup { api, layer, .. } = setup();
    let mut service = layer.methods([Method::PUT]).layer(api.service());
    send(&mut service, request(Method::PUT, "/v1/messages", Some(KEY), "x")).await;
    assert!(send(&mut service, request(Method::PUT, "/v1/messages", Some(KEY), "x"))
        .await
        .replayed());
    send(&mut service, post("x")).await;
    assert!(!send(&mut service, post("x")).await.replayed());
}

#[tokio::test]
async fn keyless_requests_pass_through_unless_a_key_is_required() {
    let Setup { api, layer, .. } = setup();
    let mut service = layer.layer(api.service());
    for _ in 0..2 {
        let reply = send(&mut service, request(Method::POST, "/v1/messages", None, "{}")).await;
        assert!(reply.text().contains("buffered=false"));
    }
    assert_eq!(api.runs(), 2);

    let Setup { layer, .. } = setup();
    let mut service = layer
        .require_key_when(|method, uri| method == Method::POST && uri.path() == "/v1/messages")
        .layer(api.service());
    let missing = send(&mut service, request(Method::POST, "/v1/messages", None, "{}")).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        missing.text(),
        r#"{"error":{"code":"IDEMPOTENCY_KEY_MISSING","message":"This request requires an idempotency key in the x-request-id header."}}"#
    );
    let elsewhere = send(&mut service, request(Method::POST, "/v1/templates", None, "{}")).await;
    assert_eq!(elsewhere.status, 201);
    let read = send(&mut service, request(Method::GET, "/v1/messages", None, "")).await;
    assert_eq!(read.status, 201, "GET is not deduplicated, so never requires a key");

    let Setup { layer, .. } = setup();
    let mut service = layer.require_key().layer(api.service());
    let missing = send(&mut service, request(Method::PATCH, "/anything", None, "{}")).await;
    assert_eq!(
        (missing.status.as_u16(), missing.code().as_str()),
        (400, "IDEMPOTENCY_KEY_MISSING")
    );
}

#[tokio::test]
async fn requests_without_a_principal_pass_through_unless_a_fallback_scope_is_set() {
    let anonymous = || {
        Request::post("/webhooks/inbound")
            .header(X_REQUEST_ID, KEY)
            .body(Sent::new("{}"))
            .unwrap()
    };
    let Setup { api, layer, store, .. } = setup();
    let mut service = layer.layer(api.service());
    assert!(send(&mut service, anonymous()).await.text().contains("buffered=false"));
    assert!(!send(&mut service, anonymous()).await.replayed());
    assert_eq!(api.runs(), 2);
    assert!(store.is_empty());

    let Setup { layer, .. } = setup();
    let mut service = layer.fallback_scope("public").layer(api.service());
    send(&mut service, anonymous()).await;
    assert!(send(&mut service, anonymous()).await.replayed());
    assert_eq!(api.runs(), 3);
}

/// A store that is down.
fn down_store() -> FakeStore<MemoryIdempotencyStore> {
    let store = FakeStore::new(MemoryIdempotencyStore::new());
    store.fail_all();
    store
}

#[tokio::test]
async fn a_store_outage_fails_closed_by_default_and_open_on_request() {
    let api = Api::new();
    let mut closed = IdempotencyLayer::new(down_store()).layer(api.service());
    let reply = send(&mut closed, post("{}")).await;
    assert_eq!(
        (reply.status.as_u16(), reply.code().as_str()),
        (503, "SERVICE_UNAVAILABLE")
    );
    assert_eq!(api.runs(), 0);

    let mut open = IdempotencyLayer::new(down_store()).fail_open(true).layer(api.service());
    for run in 1..=2 {
        let reply = send(&mut open, post("{}")).await;
        assert_eq!(reply.status, 201);
        assert!(reply.text().starts_with(&format!("run={run} ")));
        assert!(
            reply.text().contains("buffered=true"),
            "the handler still gets the body"
        );
    }
}

#[tokio::test]
async fn a_store_that_answers_later_is_awaited_for_every_step() {
    let api = Api::new();
    let (memory, _clock) = memory_store();
    let store = FakeStore::new(memory.clone()).asynchronous();
    let mut service = IdempotencyLayer::new(store.clone()).layer(api.service());
    let first = send(&mut service, post("{}")).await;
    assert_eq!((first.status, first.replayed()), (StatusCode::CREATED, false));
    let retry = send(&mut service, post("{}")).await;
    assert!(retry.replayed());
    assert_eq!(retry.body, first.body);
    assert_eq!((store.calls("begin"), store.calls("complete")), (2, 1));
    assert_eq!(api.runs(), 1);
    assert_eq!(memory.len(), 1);
}

#[tokio::test]
async fn refusals_use_the_configured_renderer() {
    let Setup { api, layer, .. } = setup();
    let mut service = layer
        .renderer(Renderer::json(ErrorFormat::ProblemJson))
        .layer(api.service());
    let mut request = post("{}");
    request.headers_mut().insert(X_REQUEST_ID, HeaderValue::from_static(""));
    let reply = send(&mut service, request).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.headers["content-type"], "application/problem+json");
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["code"], "INVALID_IDEMPOTENCY_KEY");
    assert_eq!(json["status"], 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_requests_with_one_key_run_the_handler_once() {
    const REQUESTS: usize = 100;
    const HELD_UNTIL_ANSWERED: usize = 50;
    let runs = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let half_answered = Arc::new(tokio::sync::Notify::new());
    let counter = runs.clone();
    let held = half_answered.clone();
    let slow = tower::service_fn(move |request: InnerRequest| {
        let run = counter.fetch_add(1, Ordering::SeqCst) + 1;
        let held = held.clone();
        async move {
            // Stay in flight until half the others have been answered (they
            // can only be 409s), then race the rest: replays or 409s.
            held.notified().await;
            Ok::<_, Infallible>(echo(request, run).await)
        }
    });
    let Setup { layer, .. } = setup();
    let service = layer.layer(slow);
    let start = Arc::new(tokio::sync::Barrier::new(REQUESTS));
    let tasks: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let mut service = service.clone();
            let (start, answered, half_answered) = (start.clone(), answered.clone(), half_answered.clone());
            tokio::spawn(async move {
                start.wait().await;
                let reply = send(&mut service, post(r#"{"to":"+15550100"}"#)).await;
                if answered.fetch_add(1, Ordering::SeqCst) + 1 == HELD_UNTIL_ANSWERED {
                    half_answered.notify_one();
                }
                reply
            })
        })
        .collect();
    let mut replies = Vec::with_capacity(REQUESTS);
    for task in tasks {
        replies.push(task.await.expect("no task panicked"));
    }

    assert_eq!(runs.load(Ordering::SeqCst), 1, "exactly one execution");
    let executed: Vec<&Reply> = replies
        .iter()
        .filter(|reply| reply.status == 201 && !reply.replayed())
        .collect();
    let replayed: Vec<&Reply> = replies
        .iter()
        .filter(|reply| reply.status == 201 && reply.replayed())
        .collect();
    let conflicts = replies
        .iter()
        .filter(|reply| reply.status == 409 && reply.code() == "IDEMPOTENCY_IN_PROGRESS")
        .count();
    assert_eq!(executed.len(), 1);
    assert_eq!(
        executed.len() + replayed.len() + conflicts,
        REQUESTS,
        "every response is the execution, a replay or a 409"
    );
    assert!(conflicts >= HELD_UNTIL_ANSWERED, "{conflicts} conflicts");
    assert!(replayed.iter().all(|reply| reply.body == executed[0].body));
    println!("1 execution, {} replays, {conflicts} conflicts", replayed.len());
}

/// A memory store that records every response it is asked to keep.
type Recording = tollgate_core::conformance::FakeStore<MemoryIdempotencyStore>;

fn recording() -> Recording {
    tollgate_core::conformance::FakeStore::new(MemoryIdempotencyStore::new())
}

const SECRET: &str = "sk_live_the_secret_shown_once";

/// Whether `needle` is anywhere in a stored response: body, header or trailer.
fn holds(stored: &tollgate_core::idempotency::StoredResponse, needle: &str) -> bool {
    let found = |haystack: &[u8]| haystack.windows(needle.len()).any(|window| window == needle.as_bytes());
    found(&stored.body)
        || stored
            .headers
            .iter()
            .any(|(name, value)| found(name.as_bytes()) || found(value))
}

/// Creates a "key" on every run and says what the layer may store of it.
fn secret_api(
    runs: Arc<AtomicUsize>,
    say: Option<tollgate_idempotency::Storable>,
) -> impl Service<InnerRequest, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send> + Clone + Send {
    tower::service_fn(move |_request: InnerRequest| {
        let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
        let say = say.clone();
        async move {
            let mut response = Response::builder()
                .status(StatusCode::CREATED)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(format!(
                    r#"{{"id":"key_{run}","key":"{SECRET}"}}"#
                ))))
                .unwrap();
            if let Some(say) = say {
                response.extensions_mut().insert(say);
            }
            Ok(response)
        }
    })
}

#[tokio::test]
async fn a_replacement_is_stored_and_replayed_instead_of_the_secret() {
    use tollgate_idempotency::{Storable, StoredReplacement};
    let store = recording();
    let runs = Arc::new(AtomicUsize::new(0));
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("set-cookie", HeaderValue::from_static("session=1"));
    let substitute = r#"{"error":{"code":"KEY_ALREADY_CREATED","key_id":"key_1"}}"#;
    let say = Storable::Replace(StoredReplacement::new(StatusCode::CONFLICT, substitute).with_headers(headers));
    let mut service = IdempotencyLayer::new(store.clone()).layer(secret_api(runs.clone(), Some(say)));

    let response = call(&mut service, post("{}")).await.await.unwrap();
    assert!(
        response.extensions().get::<Storable>().is_none(),
        "the extension is not handed on"
    );
    assert_eq!(response.status(), StatusCode::CREATED);
    let first = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(first, format!(r#"{{"id":"key_1","key":"{SECRET}"}}"#));

    let completed = store.completed();
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].status, 409);
    assert_eq!(completed[0].body, substitute);
    assert!(!holds(&completed[0], SECRET), "the secret is never stored");
    assert!(!holds(&completed[0], "session=1"), "Set-Cookie is dropped as ever");

    for _ in 0..2 {
        let retry = send(&mut service, post("{}")).await;
        assert_eq!(retry.status, StatusCode::CONFLICT);
        assert!(retry.replayed());
        assert_eq!(retry.headers["content-type"], "application/json");
        assert_eq!(retry.body, substitute, "the substitute, byte for byte");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the handler ran once");
    assert_eq!(store.inner().len(), 1);
}

#[tokio::test]
async fn skip_stores_nothing_and_a_retry_runs_again() {
    let store = recording();
    let runs = Arc::new(AtomicUsize::new(0));
    let say = Some(tollgate_idempotency::Storable::Skip);
    let mut service = IdempotencyLayer::new(store.clone()).layer(secret_api(runs.clone(), say));
    for run in 1..=2 {
        let reply = send(&mut service, post("{}")).await;
        assert_eq!(reply.status, StatusCode::CREATED);
        assert!(!reply.replayed());
        assert_eq!(reply.text(), format!(r#"{{"id":"key_{run}","key":"{SECRET}"}}"#));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2, "a retry runs the handler again");
    assert!(store.completed().is_empty(), "nothing was stored");
    assert!(store.inner().is_empty(), "the claim was released");
}
