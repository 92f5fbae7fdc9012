//! The round-trip budget of a request through `BearerAuthLayer` and
//! `RateLimitLayer` on Redis stores, counted with `MONITOR` on a
//! redis-server of this test's own (nobody else's commands in the count):
//! commands a script runs show as client `lua` and cost no round trip.
//!
//! Without `redis-server` on `PATH` it prints a skip line and passes, unless
//! `TOLLGATE_REQUIRE_REDIS=1`.

mod servers;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use servers::Servers;
use tollgate_auth::{BearerAuthLayer, KeyManager, NewKey};
use tollgate_core::rate_limit::{Plan, RateLimitStore, RefusalCache};
use tollgate_core::KeyKind;
use tollgate_ratelimit::{Plans, RateLimitLayer};
use tollgate_redis::{RedisConfig, RedisStores};
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
    let client = redis::Client::open(url).unwrap();
    let monitor = client.get_async_monitor().await.unwrap();
    let mut control = client.get_multiplexed_async_connection().await.unwrap();
    let mut lines = monitor.into_on_message::<String>();
    let marker = |text: &'static str| redis::cmd("ECHO").arg(text).to_owned();
    let _: String = marker("tg-start").query_async(&mut control).await.unwrap();
    for _ in 0..REQUESTS {
        assert_eq!(send(router, secret).await, expect);
    }
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
