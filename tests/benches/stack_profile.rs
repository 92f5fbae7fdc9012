//! Instruction counts per request through whole axum stacks, for callgrind:
//! runs one scenario a fixed number of times inside `measured`, so a
//! profile restricted to that function divided by the iteration count is
//! the cost of one request, without setup and without a timer's noise.
//!
//! ```text
//! cargo bench -p tollgate-tests --bench stack_profile --no-run
//! valgrind --tool=callgrind --toggle-collect='*measured*' \
//!     target/release/deps/stack_profile-<hash> full 20000
//! callgrind_annotate callgrind.out.<pid>
//! ```
//!
//! Scenarios (or `all`): `bare`, `auth`, `rate_limit`, `allowlist`,
//! `idempotency`, `full`. Run without valgrind it prints each scenario's
//! mean time per request.
//!
//! Every scenario is an axum `Router` answering `GET /v1/ping` with 200
//! `pong` (and, for `idempotency`, `POST /v1/ping` with 201 `pong`), its
//! middleware added with `Router::layer` as the `http_load` bench does
//! (the handler and the full stack are its `stacks.rs`), served in
//! process: `poll_ready` then `call` on the router, each future polled
//! once (`now_or_never`; every store here is in memory, so nothing waits)
//! inside a current-thread Tokio runtime's context.
//!
//! Every request carries a real key of the 10,000 (round-robin) as bearer
//! and `ConnectInfo<SocketAddr>` (127.0.0.1). The layer scenarios that come
//! after authentication in a real stack (`rate_limit`, `allowlist`,
//! `idempotency`) get the key's `Principal` in their extensions directly,
//! with no auth layer. Limits are far above anything reached.

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use futures_util::FutureExt;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use tollgate_auth::{BearerAuthLayer, KeyManager, NewKey};
use tollgate_core::allowlist::{AllowlistStore, IpSet, MemoryAllowlistStore};
use tollgate_core::idempotency::MemoryIdempotencyStore;
use tollgate_core::keys::MemoryKeyStore;
use tollgate_core::rate_limit::MemoryRateLimitStore;
use tollgate_core::{KeyKind, Principal};
use tollgate_idempotency::IdempotencyLayer;
use tollgate_ip::{ClientIpLayer, IpAllowlistLayer};
use tollgate_ratelimit::RateLimitLayer;
use tower::{Service, ServiceBuilder};

// The http_load bench's stacks, so both benches measure the same routers.
#[path = "http_load/stacks.rs"]
mod stacks;

// Distinct keys (`KEYS`, 10,000), all of one account; requests go round-robin over them.
use stacks::{full_stack, handler, ping, plans, ACCOUNT, KEYS, PATH, PLAN};

const WARM_UP: usize = 4 * KEYS;
const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40_000);
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const JSON_BODY: &str = r#"{"to":"+15550100","text":"ping"}"#;

const SCENARIOS: [&str; 6] = ["bare", "auth", "rate_limit", "allowlist", "idempotency", "full"];

// The only function callgrind collects in (`--toggle-collect='*measured*'`).
#[inline(never)]
fn measured(iters: usize, mut op: impl FnMut(usize)) {
    for i in 0..iters {
        op(i);
    }
}

fn run(iters: usize, mut op: impl FnMut(usize)) -> f64 {
    for i in 0..WARM_UP {
        op(i);
    }
    let start = Instant::now();
    measured(iters, op);
    start.elapsed().as_nanos() as f64 / iters as f64
}

// ---- the stacks ----

async fn created() -> (StatusCode, &'static str) {
    (StatusCode::CREATED, "pong")
}

fn handler_with_post() -> Router {
    Router::new().route(PATH, get(ping).post(created))
}

// ---- requests ----

struct Fixture {
    keys: Arc<MemoryKeyStore>,
    authorizations: Vec<HeaderValue>,
    principals: Vec<Principal>,
}

fn fixture() -> Fixture {
    let keys = Arc::new(MemoryKeyStore::new());
    let manager = KeyManager::from_shared(keys.clone()).max_active_keys(None);
    let mut authorizations = Vec::with_capacity(KEYS);
    let mut principals = Vec::with_capacity(KEYS);
    for _ in 0..KEYS {
        let created = manager
            .create(
                NewKey::new(ACCOUNT, KeyKind::Production)
                    .label("stack_profile")
                    .plan(PLAN),
            )
            .now_or_never()
            .expect("the memory store answers at once")
            .expect("create a key");
        let value = format!("Bearer {}", created.secret.expose_secret());
        authorizations.push(HeaderValue::from_str(&value).expect("a header value"));
        principals.push(
            Principal::new(
                created.info.account_id.as_str(),
                created.info.id.as_str(),
                created.info.kind,
            )
            .with_scopes(created.info.scopes.iter().cloned())
            .with_plan(created.info.plan.as_str()),
        );
    }
    assert_eq!(keys.len(), KEYS);
    Fixture {
        keys,
        authorizations,
        principals,
    }
}

impl Fixture {
    fn get(&self, i: usize) -> Request<Body> {
        let mut request = Request::get(PATH).body(Body::empty()).unwrap();
        request
            .headers_mut()
            .insert(AUTHORIZATION, self.authorizations[i % KEYS].clone());
        request.extensions_mut().insert(ConnectInfo(PEER));
        request
    }

    fn get_with_principal(&self, i: usize) -> Request<Body> {
        let mut request = self.get(i);
        request.extensions_mut().insert(self.principals[i % KEYS].clone());
        request
    }

    // A small JSON POST under a fresh X-Request-ID (`n` never repeats).
    fn post_with_principal(&self, i: usize, n: u64) -> Request<Body> {
        let mut request = Request::post(PATH).body(Body::from(JSON_BODY)).unwrap();
        let headers = request.headers_mut();
        headers.insert(AUTHORIZATION, self.authorizations[i % KEYS].clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let id = format!("00000000-0000-4000-8000-{n:012x}");
        headers.insert(X_REQUEST_ID, HeaderValue::try_from(id).expect("a header value"));
        request.extensions_mut().insert(ConnectInfo(PEER));
        request.extensions_mut().insert(self.principals[i % KEYS].clone());
        request
    }
}

// One request through the router: both futures must be ready at once.
fn serve(router: &mut Router, request: Request<Body>) -> Response<Body> {
    let ready = std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(router, cx))
        .now_or_never()
        .expect("the router is ready at once");
    ready.unwrap_or_else(|never: Infallible| match never {});
    let response = router
        .call(request)
        .now_or_never()
        .expect("the response is ready at once");
    response.unwrap_or_else(|never: Infallible| match never {})
}

fn expect(router: &mut Router, request: Request<Body>, status: StatusCode) {
    let response = serve(router, request);
    assert_eq!(response.status(), status);
    black_box(response);
}

fn scenario(name: &str, fx: &Fixture, iters: usize) -> f64 {
    match name {
        "bare" => {
            let mut router = handler();
            run(iters, |i| expect(&mut router, fx.get(i), StatusCode::OK))
        }
        "auth" => {
            let mut router = handler().layer(BearerAuthLayer::from_shared(fx.keys.clone()));
            run(iters, |i| expect(&mut router, fx.get(i), StatusCode::OK))
        }
        "rate_limit" => {
            let mut router = handler().layer(RateLimitLayer::new(MemoryRateLimitStore::new()).plans(plans()));
            run(iters, |i| expect(&mut router, fx.get_with_principal(i), StatusCode::OK))
        }
        "allowlist" => {
            let allowlists = MemoryAllowlistStore::new();
            allowlists
                .set_account_allowlist(ACCOUNT, IpSet::parse(["127.0.0.0/8"]).expect("a valid network"))
                .now_or_never()
                .expect("the memory store answers at once")
                .expect("set the account's list");
            let mut router = handler().layer(
                ServiceBuilder::new()
                    .layer(ClientIpLayer::new())
                    .layer(IpAllowlistLayer::new().store(allowlists)),
            );
            run(iters, |i| expect(&mut router, fx.get_with_principal(i), StatusCode::OK))
        }
        "idempotency" => {
            let mut router = handler_with_post().layer(IdempotencyLayer::new(MemoryIdempotencyStore::new()));
            let mut next: u64 = 0;
            run(iters, |i| {
                next += 1;
                expect(&mut router, fx.post_with_principal(i, next), StatusCode::CREATED)
            })
        }
        "full" => {
            let mut router = full_stack(
                Arc::clone(&fx.keys),
                MemoryAllowlistStore::new(),
                MemoryRateLimitStore::new(),
                MemoryIdempotencyStore::new(),
            );
            run(iters, |i| expect(&mut router, fx.get(i), StatusCode::OK))
        }
        other => panic!("unknown scenario {other:?}; expected one of {SCENARIOS:?} or all"),
    }
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|arg| arg != "--bench");
    let name = args.next().unwrap_or_else(|| "all".to_owned());
    let iters: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(200_000);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let _context = runtime.enter();

    let names: Vec<&str> = match name.as_str() {
        "all" => SCENARIOS.to_vec(),
        one => vec![one],
    };
    let fx = fixture();
    for name in names {
        let nanos = scenario(name, &fx, iters);
        println!("{name}: {nanos:.1} ns/request over {iters} requests");
    }
}
