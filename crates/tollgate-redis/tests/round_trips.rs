//! The round-trip budget of a request on Redis stores, counted with
//! `MONITOR` on a redis-server of this test's own (nobody else's commands
//! in the count): commands a script runs show as client `lua` and cost no
//! round trip. Two stacks: `BearerAuthLayer` and `RateLimitLayer` straight
//! on the Redis stores, and the whole typical stack with the fleet's caches
//! (keys, allowlists, refusals) in front of them, invalidated by push.
//!
//! Without `redis-server` on `PATH` it prints a skip line and passes, unless
//! `TOLLGATE_REQUIRE_REDIS=1`.

mod servers;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use axum_core::body::Body;

use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use servers::Servers;
use tollgate_auth::{BearerAuthLayer, KeyManager, NewKey};
use tollgate_core::allowlist::{AllowlistStore, CachedAllowlistStore, IpSet};
use tollgate_core::changes::Changes;
use tollgate_core::keys::{CachedKeyStore, KeyRegistry};
use tollgate_core::rate_limit::{Plan, RateLimitStore, RefusalCache};
use tollgate_core::{Clock, KeyKind, ManualClock};
use tollgate_idempotency::IdempotencyLayer;
use tollgate_ip::{ClientIpLayer, IpAllowlistLayer};
use tollgate_ratelimit::{Plans, RateLimitLayer};
use tollgate_redis::{subscribe_changes, RedisAllowlistStore, RedisConfig, RedisKeyStore, RedisStores};
use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};

const REQUESTS: usize = 50;

// The stack, answering each request's status.
type Router = tower::util::BoxService<Request<String>, StatusCode, BoxError>;

fn router(stores: &RedisStores, limits: impl RateLimitStore) -> Router {
    let plans = Plans::empty()
        .with(Plan::new("roomy", 1_000_000).with_burst(1_000_000))
        // One request a day: every later one is refused, however slow the machine.
        .with(Plan::new("tight", 1).with_burst(1).with_daily_quota(Some(1)));
    let service = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(stores.key_store()))
        .layer(RateLimitLayer::new(limits).plans(plans))
        .service(service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new("pong".to_owned()))
        }));
    tower::util::BoxService::new(
        service
            .map_response(|response| response.status())
            .map_err(BoxError::from),
    )
}

async fn send(router: &mut Router, secret: &str) -> StatusCode {
    let request = Request::get("/v1/ping")
        .header(http::header::AUTHORIZATION, format!("Bearer {secret}"))
        .body(String::new())
        .unwrap();
    router.ready().await.unwrap().call(request).await.unwrap()
}

/// Round trips (commands not run by a script), by command, while
/// [`REQUESTS`] requests are sent one after another, each answered `expect`.
async fn counted(url: &str, router: &mut Router, secret: &str, expect: StatusCode) -> BTreeMap<String, usize> {
    monitored(url, async move {
        for _ in 0..REQUESTS {
            assert_eq!(send(router, secret).await, expect);
        }
    })
    .await
}

/// Round trips (commands not run by a script), by command, while `requests` runs.
async fn monitored(url: &str, requests: impl std::future::Future<Output = ()>) -> BTreeMap<String, usize> {
    let client = redis::Client::open(url).unwrap();
    let monitor = client.get_async_monitor().await.unwrap();
    let mut control = client.get_multiplexed_async_connection().await.unwrap();
    let mut lines = monitor.into_on_message::<String>();
    let marker = |text: &'static str| redis::cmd("ECHO").arg(text).to_owned();
    let _: String = marker("tg-start").query_async(&mut control).await.unwrap();
    requests.await;
    let _: String = marker("tg-end").query_async(&mut control).await.unwrap();
    let mut seen = Vec::new();
    let read = async {
        while let Some(line) = lines.next().await {
            let done = line.contains("\"tg-end\"");
            seen.push(line);
            if done {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("MONITOR shows the end");
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for line in seen.iter().skip_while(|line| !line.contains("\"tg-start\"")).skip(1) {
        // `<time> [<db> <client>] "<COMMAND>" …`; scripts' commands come from `lua`.
        let Some((client, command)) =
            line.split_once('[')
                .and_then(|(_, rest)| rest.split_once(']'))
                .map(|(client, rest)| {
                    (
                        client.to_owned(),
                        rest.trim().split('"').nth(1).unwrap_or("").to_uppercase(),
                    )
                })
        else {
            continue;
        };
        if client.ends_with(" lua") || command == "ECHO" {
            continue;
        }
        *counts.entry(command).or_default() += 1;
    }
    counts
}

async fn create(stores: &RedisStores, plan: &str) -> String {
    let created = KeyManager::new(stores.key_store())
        .create(
            NewKey::new("acct_budget", KeyKind::Production)
                .label("budget")
                .plan(plan),
        )
        .await
        .expect("create a key");
    created.secret.expose_secret().to_owned()
}

// Commands per request, over REQUESTS requests.
fn budget(per_request: &[(&str, usize)]) -> BTreeMap<String, usize> {
    per_request
        .iter()
        .map(|(command, count)| ((*command).to_owned(), count * REQUESTS))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_stay_within_their_round_trip_budget() {
    if !servers::available("requests_stay_within_their_round_trip_budget") {
        return;
    }
    let server = tokio::task::spawn_blocking(|| Servers::start(1, &[])).await.unwrap();
    let url = server.urls().remove(0);
    let stores = RedisStores::connect(RedisConfig::new(url.clone()).operation_timeout(Duration::from_secs(2)))
        .await
        .expect("connect to the test's server");

    // An admitted GET of a key seen before (its account pointer remembered,
    // its last use recorded within the minute): the record, then the limit.
    let roomy = create(&stores, "roomy").await;
    let mut plain = router(&stores, stores.rate_limit_store());
    assert_eq!(send(&mut plain, &roomy).await, StatusCode::OK);
    let admitted = counted(&url, &mut plain, &roomy, StatusCode::OK).await;
    assert_eq!(admitted, budget(&[("EVALSHA", 1), ("HGETALL", 1)]));

    // A key over its limit costs the same without a refusal cache...
    let tight = create(&stores, "tight").await;
    assert_eq!(send(&mut plain, &tight).await, StatusCode::OK);
    let refused = counted(&url, &mut plain, &tight, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(refused, budget(&[("EVALSHA", 1), ("HGETALL", 1)]));

    // ...and only the key's record with one.
    let tight = create(&stores, "tight").await;
    let mut cached = router(&stores, RefusalCache::new(stores.rate_limit_store()));
    assert_eq!(send(&mut cached, &tight).await, StatusCode::OK);
    assert_eq!(send(&mut cached, &tight).await, StatusCode::TOO_MANY_REQUESTS);
    let refused = counted(&url, &mut cached, &tight, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(refused, budget(&[("HGETALL", 1)]));

    // An unknown key: one GET of its (absent) account pointer.
    let unknown = "tg_live_0000000000000000000000000000000000000000000";
    let status = send(&mut plain, unknown).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let unknown_cost = counted(&url, &mut plain, unknown, StatusCode::UNAUTHORIZED).await;
    assert!(unknown_cost.values().sum::<usize>() <= REQUESTS, "{unknown_cost:?}");
    drop(server);
}

// The whole typical stack of DESIGN.md, answering each request's status.
type FullStack = tower::util::BoxService<Request<String>, StatusCode, BoxError>;

/// `ClientIp → IpAllowlist(global) → BearerAuth → IpAllowlist(account and
/// key lists) → RateLimit → Idempotency → handler` on Redis stores, as a
/// fleet instance runs it: keys through a `CachedKeyStore` and lists
/// through a `CachedAllowlistStore`, both with a long TTL because pushed
/// changes invalidate them, and refusals through a `RefusalCache`.
fn full_stack(
    stores: &RedisStores,
    keys: CachedKeyStore<RedisKeyStore>,
    lists: CachedAllowlistStore<RedisAllowlistStore>,
    clock: &ManualClock,
) -> FullStack {
    let plans = Plans::empty()
        .with(Plan::new("roomy", 1_000_000).with_burst(1_000_000))
        .with(Plan::new("tight", 1).with_burst(1).with_daily_quota(Some(1)));
    let loopback = IpSet::parse(["127.0.0.0/8"]).unwrap();
    let service = ServiceBuilder::new()
        .layer(ClientIpLayer::new())
        .layer(IpAllowlistLayer::new().global(loopback))
        .layer(BearerAuthLayer::new(keys).clock(clock.clone()))
        .layer(IpAllowlistLayer::new().store(lists))
        .layer(RateLimitLayer::new(RefusalCache::new(stores.rate_limit_store())).plans(plans))
        .layer(IdempotencyLayer::new(stores.idempotency_store()))
        .service(service_fn(|request: Request<Body>| async move {
            let status = if request.method() == http::Method::POST {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let mut response = Response::new("done".to_owned());
            *response.status_mut() = status;
            Ok::<_, Infallible>(response)
        }));
    let service = service.map_request(|mut request: Request<String>| {
        request
            .extensions_mut()
            .insert(SocketAddr::from(([127, 0, 0, 1], 40_000)));
        request
    });
    tower::util::BoxService::new(
        service
            .map_response(|response| response.status())
            .map_err(BoxError::from),
    )
}

async fn call(stack: &mut FullStack, request: Request<String>) -> StatusCode {
    stack.ready().await.unwrap().call(request).await.unwrap()
}

fn get(secret: &str) -> Request<String> {
    Request::get("/v1/ping")
        .header(http::header::AUTHORIZATION, format!("Bearer {secret}"))
        .body(String::new())
        .unwrap()
}

fn post(secret: &str, request_id: &str) -> Request<String> {
    Request::post("/v1/messages")
        .header(http::header::AUTHORIZATION, format!("Bearer {secret}"))
        .header("x-request-id", request_id)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(r#"{"to":"+15550100","text":"hello"}"#.to_owned())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_stack_costs_one_round_trip_for_a_get_and_none_for_refusals() {
    if !servers::available("the_full_stack_costs_one_round_trip_for_a_get_and_none_for_refusals") {
        return;
    }
    let server = tokio::task::spawn_blocking(|| Servers::start(1, &[])).await.unwrap();
    let url = server.urls().remove(0);
    // Last uses are written by hand here, so that no flush falls in a count.
    let config = RedisConfig::new(url.clone())
        .operation_timeout(Duration::from_secs(2))
        .last_use_flush_interval(Duration::from_secs(3600));
    let stores = RedisStores::connect(config.clone())
        .await
        .expect("connect to the test's server");
    let changes = Changes::new();
    let _subscription = subscribe_changes(&config, changes.clone()).unwrap();
    let started = std::time::Instant::now();
    while !changes.is_connected() {
        assert!(started.elapsed() < Duration::from_secs(10), "the subscriber connects");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The auth layer's and the caches' clock: the test moves it past the
    // last-use resolution (a minute) so every key's use is due again.
    let clock = ManualClock::new(SystemTime::now());
    let keys = CachedKeyStore::new(stores.key_store())
        .ttl(Duration::from_secs(3600))
        .negative_ttl(Duration::from_secs(5))
        .clock(clock.clone())
        .invalidated_by(&changes);
    let lists = CachedAllowlistStore::new(stores.allowlist_store())
        .ttl(Duration::from_secs(3600))
        .clock(clock.clone())
        .invalidated_by(&changes);
    let mut stack = full_stack(&stores, keys, lists.clone(), &clock);

    // Five keys used round-robin, one with a key allowlist and one with an
    // account allowlist of its own; each used once before counting (its
    // record, lists and last use then cached or recorded).
    let (mut secrets, mut ids) = (Vec::new(), Vec::new());
    for n in 0..5 {
        let account = if n == 4 { "acct_listed" } else { "acct_budget" };
        let created = KeyManager::new(stores.key_store())
            .create(NewKey::new(account, KeyKind::Production).label("budget").plan("roomy"))
            .await
            .expect("create a key");
        if n == 0 {
            let list = IpSet::parse(["127.0.0.1/32", "10.0.0.0/8"]).unwrap();
            lists.set_key_allowlist(&created.info.id, list).await.unwrap();
        }
        secrets.push(created.secret.expose_secret().to_owned());
        ids.push(created.info.id);
    }
    lists
        .set_account_allowlist("acct_listed", IpSet::parse(["127.0.0.0/8"]).unwrap())
        .await
        .unwrap();
    for secret in &secrets {
        assert_eq!(call(&mut stack, get(secret)).await, StatusCode::OK);
    }
    // One POST loads the completion script (a `NOSCRIPT`, then `SCRIPT LOAD`).
    let first = post(&secrets[0], "5a1b2c3d-0000-4000-8000-ffffffffffff");
    assert_eq!(call(&mut stack, first).await, StatusCode::CREATED);
    // And one flush of the first uses loads the touch script.
    assert_eq!(stores.flush_last_uses().await.unwrap(), secrets.len());

    // An admitted GET: the rate-limit script, nothing else.
    let gets = monitored(&url, async {
        for n in 0..REQUESTS {
            assert_eq!(call(&mut stack, get(&secrets[n % secrets.len()])).await, StatusCode::OK);
        }
    })
    .await;
    assert_eq!(gets, budget(&[("EVALSHA", 1)]));

    // A minute later every key's use is due: still nothing but the limit
    // on the request path; the uses are written behind, one script call
    // per account for all its keys (two accounts here).
    clock.advance(Duration::from_secs(61));
    let due = monitored(&url, async {
        for n in 0..REQUESTS {
            assert_eq!(call(&mut stack, get(&secrets[n % secrets.len()])).await, StatusCode::OK);
        }
    })
    .await;
    assert_eq!(due, budget(&[("EVALSHA", 1)]));
    assert_eq!(stores.key_store().pending_last_uses(), secrets.len());
    let flushed = monitored(&url, async {
        assert_eq!(stores.flush_last_uses().await.unwrap(), secrets.len());
    })
    .await;
    assert_eq!(flushed, BTreeMap::from([("EVALSHA".to_owned(), 2)]));
    let elsewhere = RedisStores::connect(config.clone()).await.unwrap().key_store();
    for id in &ids {
        let stored = elsewhere.find_by_id(id).await.unwrap().expect("the key");
        assert_eq!(stored.last_used_at, Some(clock.now()), "{id}'s use reached Redis");
    }

    // An idempotent POST: the rate-limit script, the claim (`SET NX GET`)
    // and the completion script.
    let posts = monitored(&url, async {
        for n in 0..REQUESTS {
            let request = post(&secrets[n % secrets.len()], &format!("5a1b2c3d-0000-4000-8000-{n:012}"));
            assert_eq!(call(&mut stack, request).await, StatusCode::CREATED);
        }
    })
    .await;
    assert_eq!(posts, budget(&[("EVALSHA", 2), ("SET", 1)]));

    // A key over its limit, behind the refusal cache: nothing at all.
    let tight = KeyManager::new(stores.key_store())
        .create(
            NewKey::new("acct_budget", KeyKind::Production)
                .label("tight")
                .plan("tight"),
        )
        .await
        .expect("create a key");
    let tight = tight.secret.expose_secret().to_owned();
    assert_eq!(call(&mut stack, get(&tight)).await, StatusCode::OK);
    assert_eq!(call(&mut stack, get(&tight)).await, StatusCode::TOO_MANY_REQUESTS);
    let refused = monitored(&url, async {
        for _ in 0..REQUESTS {
            assert_eq!(call(&mut stack, get(&tight)).await, StatusCode::TOO_MANY_REQUESTS);
        }
    })
    .await;
    assert_eq!(refused, BTreeMap::new());

    // An unknown key, repeated: its (absent) account pointer once, then
    // the negative cache until its TTL (the clock stands still here).
    let unknown = "tg_live_0000000000000000000000000000000000000000000";
    let unknown_cost = monitored(&url, async {
        for _ in 0..REQUESTS {
            assert_eq!(call(&mut stack, get(unknown)).await, StatusCode::UNAUTHORIZED);
        }
    })
    .await;
    assert_eq!(unknown_cost, BTreeMap::from([("GET".to_owned(), 1)]));
    let repeated = monitored(&url, async {
        for _ in 0..REQUESTS {
            assert_eq!(call(&mut stack, get(unknown)).await, StatusCode::UNAUTHORIZED);
        }
    })
    .await;
    assert_eq!(repeated, BTreeMap::new());
    drop(server);
}
