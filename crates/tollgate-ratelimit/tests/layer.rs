//! Service-level tests of `RateLimitLayer`: driven through `poll_ready` and
//! `call`, with a manual clock.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tollgate_core::conformance::FakeStore;
use tollgate_core::rate_limit::{MemoryRateLimitStore, Plan};
use tollgate_core::{ErrorFormat, KeyKind, ManualClock, Principal, Renderer};
use tollgate_ratelimit::{FailurePolicy, KeyExtractor, MissingKey, Plans, RateLimitLayer};
use tower::{Layer, Service, ServiceExt};

const T0: u64 = 1_700_000_000; // 2023-11-14T22:13:20Z, 6,400 s before midnight UTC

type Body = Full<Bytes>;

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |value| value.to_str().unwrap())
    }
}

// An inner service that counts its calls.
#[derive(Clone, Default)]
struct Handler {
    calls: Arc<AtomicUsize>,
}

impl Handler {
    fn service(
        &self,
    ) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send> + Clone + Send + 'static
    {
        let calls = self.calls.clone();
        tower::service_fn(move |_request: Request<Body>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"handled")))) }
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn caller(account: &str, key: &str, plan: &str) -> Principal {
    Principal::new(account, key, KeyKind::Production).with_plan(plan)
}

fn request_as(principal: Option<&Principal>) -> Request<Body> {
    let mut request = Request::post("/v1/messages").body(Full::default()).unwrap();
    if let Some(principal) = principal {
        request.extensions_mut().insert(principal.clone());
    }
    request
}

async fn send<S>(service: &mut S, request: Request<Body>) -> Reply
where
    S: Service<Request<Body>, Response = Response<tollgate_core::ResponseBody<Body>>, Error = Infallible>,
{
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

fn manual_store() -> (MemoryRateLimitStore, ManualClock) {
    let clock = ManualClock::at_unix_secs(T0);
    (MemoryRateLimitStore::new().with_clock(clock.clone()), clock)
}

#[tokio::test]
async fn a_free_key_gets_its_burst_then_the_seeds_429() {
    let (store, clock) = manual_store();
    let handler = Handler::default();
    let mut service = RateLimitLayer::new(store).layer(handler.service());
    let free = caller("acct_1", "key_1", "free");

    for i in 0..10u64 {
        let reply = send(&mut service, request_as(Some(&free))).await;
        assert_eq!(reply.status, StatusCode::OK, "request {i}");
        assert_eq!(reply.body, "handled");
        assert_eq!(reply.header("ratelimit"), format!("\"per-second\";r={};t=1", 9 - i));
        assert_eq!(
            reply.header("ratelimit-policy"),
            r#""per-second";q=10;w=1, "daily";q=1000;w=86400"#
        );
    }
    let refused = send(&mut service, request_as(Some(&free))).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        refused.body,
        r#"{"error":{"code":"RATE_LIMITED","message":"Rate limit exceeded. Retry after 1 second.","retry_after":1}}"#
    );
    assert_eq!(refused.header("content-type"), "application/json");
    assert_eq!(refused.header("retry-after"), "1");
    assert_eq!(refused.header("ratelimit"), r#""per-second";r=0;t=1"#);
    assert_eq!(
        refused.header("ratelimit-policy"),
        r#""per-second";q=10;w=1, "daily";q=1000;w=86400"#
    );
    assert_eq!(handler.calls(), 10, "the refused request never reached the handler");

    clock.advance(Duration::from_millis(100));
    assert_eq!(send(&mut service, request_as(Some(&free))).await.status, StatusCode::OK);
    assert_eq!(
        send(&mut service, request_as(Some(&free))).await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "100 ms buys exactly one request"
    );
}

#[tokio::test]
async fn the_daily_quota_refuses_until_midnight_utc_and_says_so() {
    let (store, clock) = manual_store();
    let mut service = RateLimitLayer::new(store)
        .legacy_headers(true)
        .layer(Handler::default().service());
    let free = caller("acct_1", "key_1", "free");
    for i in 0..1_000 {
        let reply = send(&mut service, request_as(Some(&free))).await;
        assert_eq!(reply.status, StatusCode::OK, "request {i}");
        clock.advance(Duration::from_millis(100));
    }
    // 100 s after T0: 6,300 s to midnight.
    let refused = send(&mut service, request_as(Some(&free))).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        refused.body,
        r#"{"error":{"code":"RATE_LIMITED","message":"Daily quota of 1000 requests exceeded. Retry after 6300 seconds.","retry_after":6300,"limit":"daily"}}"#
    );
    assert_eq!(refused.header("retry-after"), "6300");
    assert_eq!(refused.header("ratelimit"), r#""daily";r=0;t=6300"#);
    assert_eq!(refused.header("x-ratelimit-limit"), "1000");
    assert_eq!(refused.header("x-ratelimit-remaining"), "0");
    assert_eq!(refused.header("x-ratelimit-reset"), "6300");

    clock.advance(Duration::from_secs(6_300) - Duration::from_nanos(1));
    assert_eq!(
        send(&mut service, request_as(Some(&free))).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    clock.advance(Duration::from_nanos(1));
    let next_day = send(&mut service, request_as(Some(&free))).await;
    assert_eq!(next_day.status, StatusCode::OK);
    assert_eq!(next_day.header("x-ratelimit-limit"), "10");
    assert_eq!(next_day.header("x-ratelimit-remaining"), "9");
}

#[tokio::test]
async fn enterprise_keys_have_no_daily_limit() {
    let (store, clock) = manual_store();
    let plans = Plans::default().with(Plan::enterprise(50));
    let mut service = RateLimitLayer::new(store)
        .plans(plans)
        .layer(Handler::default().service());
    let enterprise = caller("acct_1", "key_1", "enterprise");
    for second in 0..40 {
        for _ in 0..50 {
            let reply = send(&mut service, request_as(Some(&enterprise))).await;
            assert_eq!(reply.status, StatusCode::OK, "second {second}");
            assert_eq!(reply.header("ratelimit-policy"), r#""per-second";q=50;w=1"#);
        }
        assert_eq!(
            send(&mut service, request_as(Some(&enterprise))).await.status,
            StatusCode::TOO_MANY_REQUESTS
        );
        clock.advance(Duration::from_secs(1));
    }
}

#[tokio::test]
async fn weighted_requests_spend_their_cost() {
    let (store, _clock) = manual_store();
    let mut service = RateLimitLayer::new(store)
        .cost_fn(|parts, plan| {
            let recipients = parts
                .headers
                .get("x-recipients")
                .and_then(|value| value.to_str().ok()?.parse().ok());
            recipients.unwrap_or(plan.cost)
        })
        .layer(Handler::default().service());
    let free = caller("acct_1", "key_1", "free");
    let batch = |recipients: &str| {
        let mut request = request_as(Some(&free));
        request
            .headers_mut()
            .insert("x-recipients", recipients.parse().unwrap());
        request
    };
    let reply = send(&mut service, batch("7")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("ratelimit"), r#""per-second";r=3;t=1"#);
    let refused = send(&mut service, batch("4")).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.header("ratelimit"), r#""per-second";r=3;t=1"#);
    let too_big = send(&mut service, batch("11")).await;
    assert_eq!(too_big.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(too_big.body.contains(r#""limit":"per-second""#), "{}", too_big.body);
    assert_eq!(too_big.header("retry-after"), "", "retrying cannot help");
    assert_eq!(send(&mut service, batch("3")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn keys_are_limited_independently_and_clones_share_quotas() {
    let (store, _clock) = manual_store();
    let layer = RateLimitLayer::new(store).plans(Plans::empty().with(Plan::new("tiny", 2)));
    let first = layer.layer(Handler::default().service());
    let mut second = first.clone();
    let mut other_stack = layer.layer(Handler::default().service());
    let key_a = caller("acct_1", "key_a", "tiny");
    let key_b = caller("acct_1", "key_b", "tiny");

    let mut first = first;
    assert_eq!(send(&mut first, request_as(Some(&key_a))).await.status, StatusCode::OK);
    assert_eq!(send(&mut second, request_as(Some(&key_a))).await.status, StatusCode::OK);
    assert_eq!(
        send(&mut other_stack, request_as(Some(&key_a))).await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "services from one layer share the store"
    );
    assert_eq!(send(&mut first, request_as(Some(&key_b))).await.status, StatusCode::OK);
}

#[tokio::test]
async fn other_keys_account_ip_route_and_closures() {
    let (store, _clock) = manual_store();
    let plans = Plans::empty().with(Plan::new("tiny", 1));
    let mut by_account = RateLimitLayer::new(store.clone())
        .key(KeyExtractor::account())
        .plans(plans.clone())
        .layer(Handler::default().service());
    let key_a = caller("acct_1", "key_a", "tiny");
    let key_b = caller("acct_1", "key_b", "tiny");
    assert_eq!(
        send(&mut by_account, request_as(Some(&key_a))).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(&mut by_account, request_as(Some(&key_b))).await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "one account, one limit"
    );

    let mut by_header = RateLimitLayer::new(store)
        .key_fn(|parts| Some(parts.headers.get("x-tenant")?.to_str().ok()?.to_owned()))
        .plan_fn(|_| Some(Plan::new("anonymous", 1)))
        .layer(Handler::default().service());
    let tenant = |name: &'static str| {
        let mut request = request_as(None);
        request.headers_mut().insert("x-tenant", name.parse().unwrap());
        request
    };
    assert_eq!(send(&mut by_header, tenant("t1")).await.status, StatusCode::OK);
    assert_eq!(
        send(&mut by_header, tenant("t1")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(send(&mut by_header, tenant("t2")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn requests_without_a_key_are_refused_by_default_or_passed_through() {
    let handler = Handler::default();
    let mut strict = RateLimitLayer::in_memory().layer(handler.service());
    let reply = send(&mut strict, request_as(None)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.body,
        r#"{"error":{"code":"UNAUTHORIZED","message":"Missing API key."}}"#
    );
    assert_eq!(reply.header("www-authenticate"), "Bearer");
    assert_eq!(handler.calls(), 0);

    let mut lenient = RateLimitLayer::in_memory()
        .missing_key(MissingKey::PassThrough)
        .layer(handler.service());
    let reply = send(&mut lenient, request_as(None)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("ratelimit"), "", "nothing was counted");
    assert_eq!(handler.calls(), 1);
}

#[tokio::test]
async fn unknown_plans_fall_back_and_no_plan_is_a_500() {
    let (store, _clock) = manual_store();
    let mut service = RateLimitLayer::new(store.clone()).layer(Handler::default().service());
    let gold = caller("acct_1", "key_1", "gold");
    let reply = send(&mut service, request_as(Some(&gold))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("ratelimit-policy"),
        r#""per-second";q=10;w=1, "daily";q=1000;w=86400"#,
        "the free plan"
    );
    let mut no_fallback = RateLimitLayer::new(store)
        .plans(Plans::empty())
        .layer(Handler::default().service());
    let reply = send(&mut no_fallback, request_as(Some(&gold))).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        reply.body,
        r#"{"error":{"code":"INTERNAL_ERROR","message":"No rate-limit plan applies to this request."}}"#
    );
}

// A store whose backend is down.
fn down_store() -> FakeStore<MemoryRateLimitStore> {
    let store = FakeStore::new(MemoryRateLimitStore::new());
    store.fail_all();
    store
}

#[tokio::test]
async fn a_failed_store_fails_closed_by_default_or_open() {
    let handler = Handler::default();
    let free = caller("acct_1", "key_1", "free");
    let mut closed = RateLimitLayer::new(down_store()).layer(handler.service());
    let reply = send(&mut closed, request_as(Some(&free))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        reply.body,
        r#"{"error":{"code":"SERVICE_UNAVAILABLE","message":"The service is temporarily unavailable. Please retry."}}"#
    );
    assert_eq!(handler.calls(), 0);

    let mut open = RateLimitLayer::new(down_store())
        .failure_policy(FailurePolicy::Open)
        .layer(handler.service());
    let reply = send(&mut open, request_as(Some(&free))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("ratelimit"), "");
    assert_eq!(handler.calls(), 1);
}

#[tokio::test]
async fn refusals_use_the_renderer_and_the_request_headers() {
    let (store, _clock) = manual_store();
    let mut service = RateLimitLayer::new(store)
        .plans(Plans::empty().with(Plan::new("tiny", 1)))
        .renderer(Renderer::json(ErrorFormat::Negotiate))
        .layer(Handler::default().service());
    let tiny = caller("acct_1", "key_1", "tiny");
    send(&mut service, request_as(Some(&tiny))).await;
    let mut problem = request_as(Some(&tiny));
    problem
        .headers_mut()
        .insert("accept", "application/problem+json".parse().unwrap());
    let reply = send(&mut service, problem).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.header("content-type"), "application/problem+json");
    assert_eq!(reply.header("ratelimit"), r#""per-second";r=0;t=1"#);

    let mut grpc = request_as(Some(&tiny));
    grpc.headers_mut()
        .insert(CONTENT_TYPE, "application/grpc".parse().unwrap());
    let reply = send(&mut service, grpc).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("grpc-status"), "8");
    assert_eq!(reply.headers[RETRY_AFTER], "1");
}

#[test]
fn readiness_is_the_inner_services() {
    let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let mut service = tower_test::mock::Spawn::new(RateLimitLayer::in_memory().layer(mock));
    handle.allow(0);
    assert!(
        service.poll_ready().is_pending(),
        "not ready while the inner service is not"
    );
    handle.allow(1);
    assert!(service.poll_ready().is_ready());
}

// 16 tasks × 50 requests for one key, on a multi-thread runtime.
async fn hammer<S>(service: S, principal: &Principal) -> usize
where
    S: Service<Request<Body>, Response = Response<tollgate_core::ResponseBody<Body>>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let service = service.clone();
            let principal = principal.clone();
            tokio::spawn(async move {
                let mut admitted = 0;
                for _ in 0..50 {
                    let response = service.clone().oneshot(request_as(Some(&principal))).await.unwrap();
                    match response.status() {
                        StatusCode::OK => admitted += 1,
                        StatusCode::TOO_MANY_REQUESTS => {}
                        other => panic!("unexpected {other}"),
                    }
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    admitted
}

#[test]
fn concurrent_requests_through_the_layer_admit_exactly_the_limit() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (store, _clock) = manual_store();
        let handler = Handler::default();
        let plans = Plans::empty()
            .with(Plan::new("daily-bound", 300).with_daily_quota(Some(250)))
            .with(Plan::new("burst-bound", 120));
        let service = RateLimitLayer::new(store).plans(plans).layer(handler.service());

        let daily_bound = caller("acct_1", "key_1", "daily-bound");
        assert_eq!(
            hammer(service.clone(), &daily_bound).await,
            250,
            "exactly the daily quota"
        );
        let burst_bound = caller("acct_1", "key_2", "burst-bound");
        assert_eq!(hammer(service, &burst_bound).await, 120, "exactly the burst");
        assert_eq!(handler.calls(), 370);
    });
}

#[tokio::test]
async fn a_full_store_refuses_new_keys_with_503_even_failing_open() {
    let (store, _clock) = manual_store();
    // One key per shard; free keys owe their daily usage until midnight.
    let store = store.with_capacity(64);
    let handler = Handler::default();
    let mut service = RateLimitLayer::new(store.clone())
        .failure_policy(FailurePolicy::Open)
        .layer(handler.service());
    let (mut admitted, mut refused) = (0, 0);
    let mut known = None;
    for i in 0..1_000 {
        let principal = caller("acct_1", &format!("key_{i}"), "free");
        let reply = send(&mut service, request_as(Some(&principal))).await;
        match reply.status {
            StatusCode::OK => {
                admitted += 1;
                known.get_or_insert(principal);
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                refused += 1;
                assert_eq!(
                    reply.body,
                    r#"{"error":{"code":"SERVICE_UNAVAILABLE","message":"The rate limiter is at capacity. Retry shortly."}}"#
                );
                assert_eq!(reply.header("retry-after"), "1");
                assert_eq!(reply.header("ratelimit"), "", "no decision was made");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(admitted + refused, 1_000);
    assert!(admitted <= 64 && refused >= 936, "{admitted} admitted");
    assert_eq!(store.len(), admitted, "every admitted key is tracked");
    assert_eq!(handler.calls(), admitted);
    // A key already tracked keeps its limits at the cap.
    let reply = send(&mut service, request_as(known.as_ref())).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("ratelimit"), "\"per-second\";r=8;t=1");
}
