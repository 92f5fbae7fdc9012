//! End to end: an axum router behind `BearerAuthLayer` and
//! `RateLimitLayer`, over real HTTP on loopback. The rate-limit store runs
//! on a manual clock, so no outcome depends on how fast the machine is.

mod support;

use std::time::Duration;

use axum::routing::post;
use axum::Router;
use tollgate_auth::{BearerAuthLayer, CreatedKey, KeyManager, NewKey};
use tollgate_core::keys::MemoryKeyStore;
use tollgate_core::rate_limit::MemoryRateLimitStore;
use tollgate_core::{KeyKind, ManualClock};
use tollgate_ratelimit::RateLimitLayer;

use support::{TestResponse, TestServer};

// 2023-11-14T22:13:20Z: 6,400 s before midnight UTC.
const T0: u64 = 1_700_000_000;

const SEED_429: &str =
    r#"{"error":{"code":"RATE_LIMITED","message":"Rate limit exceeded. Retry after 1 second.","retry_after":1}}"#;
const FREE_POLICY: &str = r#""per-second";q=10;w=1, "daily";q=1000;w=86400"#;

struct Api {
    server: TestServer,
    keys: KeyManager,
    clock: ManualClock,
}

impl Api {
    async fn start() -> Api {
        let key_store = MemoryKeyStore::new();
        let clock = ManualClock::at_unix_secs(T0);
        let limits = MemoryRateLimitStore::new().with_clock(clock.clone());
        let router = Router::new()
            .route("/v1/messages", post(|| async { "sent" }))
            // Outermost last: authentication runs first, then the limit.
            .layer(RateLimitLayer::new(limits))
            .layer(BearerAuthLayer::new(key_store.clone()));
        Api {
            server: TestServer::start(router).await,
            keys: KeyManager::new(key_store),
            clock,
        }
    }

    async fn key(&self, account: &str, plan: &str) -> CreatedKey {
        self.keys
            .create(NewKey::new(account, KeyKind::Production).plan(plan))
            .await
            .expect("a new key")
    }

    async fn send(&self, key: &CreatedKey) -> TestResponse {
        let request = self
            .server
            .request("POST", "/v1/messages")
            .header("authorization", format!("Bearer {}", key.secret.expose_secret()));
        self.server.send_empty(request).await
    }
}

#[tokio::test]
async fn a_free_key_gets_ten_then_the_seeds_429() {
    let api = Api::start().await;
    let key = api.key("acct_1", "free").await;
    for i in 0..10 {
        let response = api.send(&key).await;
        assert_eq!(response.status, 200, "request {i}: {}", response.text());
        assert_eq!(response.text(), "sent");
        assert_eq!(response.header("ratelimit"), format!("\"per-second\";r={};t=1", 9 - i));
        assert_eq!(response.header("ratelimit-policy"), FREE_POLICY);
    }

    let refused = api.send(&key).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.text(), SEED_429, "the seed's body, byte for byte");
    assert_eq!(refused.header("content-type"), "application/json");
    assert_eq!(refused.header("retry-after"), "1");
    assert_eq!(refused.header("ratelimit"), r#""per-second";r=0;t=1"#);
    assert_eq!(refused.header("ratelimit-policy"), FREE_POLICY);

    api.clock.advance(Duration::from_millis(100));
    assert_eq!(api.send(&key).await.status, 200, "a unit every 100 ms");
    assert_eq!(api.send(&key).await.status, 429);
}

#[tokio::test]
async fn two_keys_of_one_account_are_limited_independently() {
    let api = Api::start().await;
    let first = api.key("acct_1", "free").await;
    let second = api.key("acct_1", "free").await;
    for _ in 0..10 {
        assert_eq!(api.send(&first).await.status, 200);
    }
    assert_eq!(api.send(&first).await.status, 429);

    let other = api.send(&second).await;
    assert_eq!(other.status, 200, "{}", other.text());
    assert_eq!(other.header("ratelimit"), r#""per-second";r=9;t=1"#);
}

#[tokio::test]
async fn each_key_gets_its_plans_limits() {
    let api = Api::start().await;
    let premium = api.key("acct_2", "premium").await;
    let response = api.send(&premium).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("ratelimit-policy"),
        r#""per-second";q=100;w=1, "daily";q=100000;w=86400"#
    );
    assert_eq!(response.header("ratelimit"), r#""per-second";r=99;t=1"#);

    let enterprise = api.key("acct_3", "enterprise").await;
    let response = api.send(&enterprise).await;
    assert_eq!(response.header("ratelimit-policy"), r#""per-second";q=1000;w=1"#);
}

#[tokio::test]
async fn the_daily_quota_holds_until_midnight_utc() {
    let api = Api::start().await;
    let key = api.key("acct_1", "free").await;
    for i in 0..1_000 {
        let response = api.send(&key).await;
        assert_eq!(response.status, 200, "request {i}");
        api.clock.advance(Duration::from_millis(100));
    }
    let refused = api.send(&key).await;
    assert_eq!(refused.status, 429);
    assert_eq!(
        refused.text(),
        r#"{"error":{"code":"RATE_LIMITED","message":"Daily quota of 1000 requests exceeded. Retry after 6300 seconds.","retry_after":6300,"limit":"daily"}}"#
    );
    assert_eq!(refused.header("retry-after"), "6300");
    assert_eq!(refused.header("ratelimit"), r#""daily";r=0;t=6300"#);

    api.clock.advance(Duration::from_secs(6_300));
    let next_day = api.send(&key).await;
    assert_eq!(next_day.status, 200);
    assert_eq!(next_day.header("ratelimit"), r#""per-second";r=9;t=1"#);
}

#[tokio::test]
async fn unauthenticated_requests_never_reach_the_limit() {
    let api = Api::start().await;
    let response = api.server.send_empty(api.server.request("POST", "/v1/messages")).await;
    assert_eq!(response.status, 401);
    assert_eq!(response.header("ratelimit"), "");
}
