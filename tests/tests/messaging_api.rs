//! The messaging-api example driven over HTTP on a real socket: the real
//! router, in process, with in-memory stores on a manual clock.

mod support;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use messaging_api::config::{AccountConfig, PlanConfig};
use messaging_api::{bootstrap::bootstrap, router, stores::Stores, AppState, Config};
use serde_json::{json, Value};
use support::{TestResponse, TestServer};
use tollgate_core::conformance::FakeStore;
use tollgate_core::idempotency::MemoryIdempotencyStore;
use tollgate_core::{ManualClock, SharedClock};
use tollgate_redis::testing::TestRedis;

const SEND: &str = r#"{"to":"+15551234567","type":"text","text":{"body":"Hello"}}"#;

struct Api {
    server: TestServer,
    key: String,
    clock: ManualClock,
}

impl Api {
    async fn start(config: Config) -> Api {
        Api::start_at(config, SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_031_199)).await
    }

    async fn start_at(config: Config, now: SystemTime) -> Api {
        let clock = ManualClock::new(now);
        let stores = Stores::memory(SharedClock::from(clock.clone()));
        let api = Api::start_on(config, stores, clock).await;
        assert!(!api.key.is_empty(), "a fresh server creates a key");
        api
    }

    // `key` is empty when the account already had one (a shared Redis).
    async fn start_on(config: Config, stores: Stores, clock: ManualClock) -> Api {
        let state = AppState::new(config, stores, SharedClock::from(clock.clone()));
        let key = bootstrap(&state, None).await.expect("bootstrap").unwrap_or_default();
        let server = TestServer::start(router(state)).await;
        Api { server, key, clock }
    }

    async fn call(&self, method: &str, path: &str, key: &str, body: Option<&str>) -> TestResponse {
        self.call_with(method, path, key, body, &[]).await
    }

    async fn call_with(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> TestResponse {
        self.server.call(method, path, Some(key), body, headers).await
    }

    async fn create_key(&self, kind: &str) -> (String, String) {
        let response = self
            .call(
                "POST",
                "/v1/keys",
                &self.key,
                Some(&json!({"label": kind, "type": kind}).to_string()),
            )
            .await;
        assert_eq!(response.status, 201, "{}", response.text());
        let body = response.json();
        (
            body["id"].as_str().unwrap().to_owned(),
            body["key"].as_str().unwrap().to_owned(),
        )
    }
}

// A plan of 100 requests a second and `daily` a day, named "tiny".
fn tiny_plan(daily: u64) -> Option<PlanConfig> {
    Some(PlanConfig {
        per_second: 100,
        burst: None,
        daily: Some(daily),
    })
}

// The configuration with `acct_demo` on `plan` (else Free) and with a webhook (URL, secret).
fn demo_account_on(plan: Option<PlanConfig>, webhook: Option<(String, String)>) -> Config {
    let mut config = Config::default();
    if let Some(plan) = plan {
        config.plans.insert("tiny".into(), plan);
    }
    let (webhook_url, webhook_secret) = webhook.unzip();
    config.accounts.push(AccountConfig {
        id: Config::DEMO_ACCOUNT.into(),
        plan: if config.plans.contains_key("tiny") {
            "tiny"
        } else {
            "free"
        }
        .into(),
        webhook_url,
        webhook_secret,
        ip_allowlist: Vec::new(),
    });
    config
}

fn error_code(response: &TestResponse) -> String {
    response.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn the_bootstrap_key_works_and_missing_keys_are_refused() {
    let api = Api::start(Config::default()).await;
    let keys = api.call("GET", "/v1/keys", &api.key, None).await;
    assert_eq!(keys.status, 200);
    let listed = keys.json();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert_eq!(listed["data"][0]["label"], "Bootstrap key");
    assert_eq!(listed["data"][0]["type"], "production");
    assert!(!keys.text().contains(&api.key), "listing never shows a key");

    let anonymous = api.server.send_empty(api.server.request("GET", "/v1/keys")).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.header("www-authenticate"), "Bearer");
    assert_eq!(error_code(&anonymous), "UNAUTHORIZED");
    let wrong = api.call("GET", "/v1/keys", "tg_live_not_a_key", None).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.header("www-authenticate"), r#"Bearer error="invalid_token""#);

    let health = api.server.send_empty(api.server.request("GET", "/health")).await;
    assert_eq!((health.status.as_u16(), health.json()), (200, json!({"status": "ok"})));
    let unknown = api.call("GET", "/v1/nothing", &api.key, None).await;
    assert_eq!(
        (unknown.status.as_u16(), error_code(&unknown).as_str()),
        (404, "NOT_FOUND")
    );
}

#[tokio::test]
async fn each_key_type_has_its_rights() {
    let api = Api::start(Config::default()).await;
    let (_, sandbox) = api.create_key("sandbox").await;
    let (read_only_id, read_only) = api.create_key("read_only").await;

    // Production: live messages.
    let live = api.call("POST", "/v1/messages", &api.key, Some(SEND)).await;
    assert_eq!(live.status, 201, "{}", live.text());
    let live = live.json();
    assert_eq!(
        (live["status"].as_str(), live["sandbox"].as_bool()),
        (Some("queued"), Some(false)),
        "answered queued; handed on in the background"
    );
    assert!(live["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(live["to"], "+15551234567");

    // Sandbox: sandbox messages, visible only to sandbox keys; no key management.
    let test = api.call("POST", "/v1/messages", &sandbox, Some(SEND)).await;
    assert_eq!(test.status, 201);
    let test = test.json();
    assert_eq!(
        (test["status"].as_str(), test["sandbox"].as_bool()),
        (Some("queued"), Some(true))
    );
    let path = format!("/v1/messages/{}", test["id"].as_str().unwrap());
    assert_eq!(api.call("GET", &path, &sandbox, None).await.status, 200);
    assert_eq!(
        api.call("GET", &path, &api.key, None).await.status,
        404,
        "live keys do not see sandbox messages"
    );
    let live_path = format!("/v1/messages/{}", live["id"].as_str().unwrap());
    assert_eq!(api.call("GET", &live_path, &sandbox, None).await.status, 404);
    let refused = api
        .call("POST", "/v1/keys", &sandbox, Some(r#"{"label":"x","type":"sandbox"}"#))
        .await;
    assert_eq!(
        (refused.status.as_u16(), error_code(&refused).as_str()),
        (403, "FORBIDDEN")
    );

    // Read-only: GET endpoints only.
    assert_eq!(api.call("GET", &live_path, &read_only, None).await.status, 200);
    assert_eq!(api.call("GET", "/v1/keys", &read_only, None).await.status, 200);
    let send = api.call("POST", "/v1/messages", &read_only, Some(SEND)).await;
    assert_eq!((send.status.as_u16(), error_code(&send).as_str()), (403, "FORBIDDEN"));
    assert_eq!(send.header("www-authenticate"), r#"Bearer error="insufficient_scope""#);
    let revoke = api
        .call("DELETE", &format!("/v1/keys/{read_only_id}"), &read_only, None)
        .await;
    assert_eq!(revoke.status, 403);
}

#[tokio::test]
async fn the_eleventh_key_is_refused() {
    let api = Api::start(Config::default()).await;
    for _ in 0..9 {
        api.create_key("production").await;
    }
    let eleventh = api
        .call(
            "POST",
            "/v1/keys",
            &api.key,
            Some(r#"{"label":"one too many","type":"sandbox"}"#),
        )
        .await;
    assert_eq!(eleventh.status, 409);
    assert_eq!(error_code(&eleventh), "KEY_LIMIT_REACHED");
    assert_eq!(eleventh.json()["error"]["limit"], 10);
}

#[tokio::test]
async fn chained_rotation_cannot_grow_an_account_past_the_key_limit() {
    let api = Api::start(Config::default()).await;
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(api.create_key("production").await.0);
    }
    // Nine keys; a new second for the bootstrap key's rate limit.
    api.clock.advance(Duration::from_secs(1));
    let rotate = |id: &str| format!("/v1/keys/{id}/rotate");
    let rotated = api.call("POST", &rotate(&ids[0]), &api.key, None).await;
    assert_eq!(rotated.status, 201, "the tenth working key: {}", rotated.text());
    let (successor_id, successor) = (
        rotated.json()["id"].as_str().unwrap().to_owned(),
        rotated.json()["key"].as_str().unwrap().to_owned(),
    );

    let chained = api.call("POST", &rotate(&successor_id), &api.key, None).await;
    assert_eq!(chained.status, 409, "{}", chained.text());
    assert_eq!(error_code(&chained), "KEY_LIMIT_REACHED");
    assert_eq!(chained.json()["error"]["limit"], 10);
    let again = api.call("POST", &rotate(&ids[0]), &api.key, None).await;
    assert_eq!(again.status, 409, "{}", again.text());
    assert_eq!(error_code(&again), "KEY_RETIRING");
    let listed = api.call("GET", "/v1/keys", &api.key, None).await;
    assert_eq!(
        listed.json()["data"].as_array().unwrap().len(),
        10,
        "the refusals created nothing"
    );

    let revoked = api
        .call("DELETE", &format!("/v1/keys/{}", ids[1]), &api.key, None)
        .await;
    assert_eq!(revoked.status, 204);
    let chained = api.call("POST", &rotate(&successor_id), &api.key, None).await;
    assert_eq!(
        chained.status,
        201,
        "room again once a key is revoked: {}",
        chained.text()
    );
    assert_eq!(
        api.call("GET", "/v1/keys", &successor, None).await.status,
        200,
        "still in its grace period"
    );
}

#[tokio::test]
async fn revocation_takes_effect_at_once_and_rotation_keeps_a_grace_period() {
    let api = Api::start(Config::default()).await;
    let (revoked_id, revoked) = api.create_key("production").await;
    assert_eq!(api.call("GET", "/v1/keys", &revoked, None).await.status, 200);
    let deleted = api
        .call("DELETE", &format!("/v1/keys/{revoked_id}"), &api.key, None)
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(api.call("GET", "/v1/keys", &revoked, None).await.status, 401);

    let (old_id, old) = api.create_key("production").await;
    let rotated = api
        .call("POST", &format!("/v1/keys/{old_id}/rotate"), &api.key, None)
        .await;
    assert_eq!(rotated.status, 201, "{}", rotated.text());
    let new = rotated.json()["key"].as_str().unwrap().to_owned();
    assert_eq!(rotated.json()["replaces"], old_id);
    assert_eq!(
        api.call("GET", "/v1/keys", &old, None).await.status,
        200,
        "the old key works during the grace period"
    );
    assert_eq!(api.call("GET", "/v1/keys", &new, None).await.status, 200);
    api.clock
        .advance(Config::default().rotation_grace() + Duration::from_secs(1));
    assert_eq!(
        api.call("GET", "/v1/keys", &old, None).await.status,
        401,
        "and stops after it"
    );
    assert_eq!(api.call("GET", "/v1/keys", &new, None).await.status, 200);
}

#[tokio::test]
async fn the_eleventh_request_in_a_second_gets_the_seed_429() {
    let api = Api::start(Config::default()).await;
    for i in 0..10 {
        let response = api.call("GET", "/v1/keys", &api.key, None).await;
        assert_eq!(response.status, 200, "request {i}");
        assert_eq!(
            response.header("ratelimit-policy"),
            r#""per-second";q=10;w=1, "daily";q=1000;w=86400"#
        );
    }
    let limited = api.call("GET", "/v1/keys", &api.key, None).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("content-type"), "application/json");
    assert_eq!(limited.header("retry-after"), "1");
    assert_eq!(
        limited.text(),
        r#"{"error":{"code":"RATE_LIMITED","message":"Rate limit exceeded. Retry after 1 second.","retry_after":1}}"#
    );
    api.clock.advance(Duration::from_millis(100));
    assert_eq!(
        api.call("GET", "/v1/keys", &api.key, None).await.status,
        200,
        "one more after 100 ms"
    );

    api.clock.advance(Duration::from_secs(1));
    let usage = api.call("GET", "/v1/usage", &api.key, None).await;
    assert_eq!(usage.status, 200);
    let usage = usage.json();
    assert_eq!(usage["plan"]["name"], "free");
    assert_eq!(usage["plan"]["daily_limit"], 1000);
    assert_eq!(
        usage["keys"][0]["requests"], 13,
        "counted before the limiter, this request included"
    );
    assert_eq!(usage["keys"][0]["rate_limited"], 1);
}

#[tokio::test]
async fn a_small_configured_daily_quota_holds_until_midnight_utc() {
    let config = demo_account_on(tiny_plan(5), None);
    // 23:00 UTC.
    let api = Api::start_at(
        config,
        SystemTime::UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + 23 * 3600),
    )
    .await;
    for _ in 0..5 {
        assert_eq!(api.call("GET", "/v1/keys", &api.key, None).await.status, 200);
    }
    let refused = api.call("GET", "/v1/keys", &api.key, None).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json()["error"]["limit"], "daily");
    assert_eq!(refused.json()["error"]["retry_after"], 3600);
    api.clock.advance(Duration::from_secs(3599));
    assert_eq!(api.call("GET", "/v1/keys", &api.key, None).await.status, 429);
    api.clock.advance(Duration::from_secs(1));
    assert_eq!(
        api.call("GET", "/v1/keys", &api.key, None).await.status,
        200,
        "a new UTC day"
    );
}

#[tokio::test]
async fn a_retried_message_is_replayed_not_sent_twice() {
    let api = Api::start(Config::default()).await;
    let id = [("x-request-id", "2f1c8e9a-0d7b-4c59-9d1e-7a0f3b6c1d22")];
    let first = api.call_with("POST", "/v1/messages", &api.key, Some(SEND), &id).await;
    assert_eq!(first.status, 201);
    let again = api.call_with("POST", "/v1/messages", &api.key, Some(SEND), &id).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), "true");
    assert_eq!(again.body, first.body, "the same message, byte for byte");
    let other = SEND.replace("Hello", "Goodbye");
    let reused = api.call_with("POST", "/v1/messages", &api.key, Some(&other), &id).await;
    assert_eq!(
        (reused.status.as_u16(), error_code(&reused).as_str()),
        (422, "IDEMPOTENCY_KEY_REUSED")
    );
    let fresh = api
        .call_with(
            "POST",
            "/v1/messages",
            &api.key,
            Some(SEND),
            &[("x-request-id", "another-request")],
        )
        .await;
    assert_ne!(fresh.json()["id"], first.json()["id"]);
}

#[tokio::test]
async fn bodies_must_be_json_and_valid() {
    let api = Api::start(Config::default()).await;
    let request = api
        .server
        .request("POST", "/v1/messages")
        .header("authorization", format!("Bearer {}", api.key))
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(SEND)))
        .unwrap();
    let refused = api.server.send(request).await;
    assert_eq!(refused.status, 415);
    assert_eq!(error_code(&refused), "UNSUPPORTED_MEDIA_TYPE");

    let bad = api
        .call(
            "POST",
            "/v1/messages",
            &api.key,
            Some(r#"{"to":"12","type":"text","text":{"body":"x"}}"#),
        )
        .await;
    assert_eq!(
        (bad.status.as_u16(), error_code(&bad).as_str()),
        (400, "INVALID_REQUEST")
    );
    let broken = api.call("POST", "/v1/messages", &api.key, Some("{not json")).await;
    assert_eq!(
        (broken.status.as_u16(), error_code(&broken).as_str()),
        (400, "INVALID_REQUEST")
    );
    let ssrf = api
        .call_with(
            "POST",
            "/v1/messages",
            &api.key,
            Some(SEND),
            &[("x-webhook-url", "https://169.254.169.254/")],
        )
        .await;
    assert_eq!(ssrf.status, 400);
}

#[tokio::test]
async fn allowlists_refuse_other_addresses() {
    let api = Api::start(Config::default()).await;
    let (key_id, other) = api.create_key("production").await;
    let body = r#"{"cidrs":["203.0.113.0/24"]}"#;
    let set = api
        .call("PUT", &format!("/v1/keys/{key_id}/ip-allowlist"), &api.key, Some(body))
        .await;
    assert_eq!(set.status, 200, "{}", set.text());
    let refused = api.call("GET", "/v1/keys", &other, None).await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.text(),
        r#"{"error":{"code":"IP_NOT_ALLOWED","message":"Requests from this IP address are not allowed."}}"#
    );
    assert_eq!(
        api.call("GET", "/v1/keys", &api.key, None).await.status,
        200,
        "other keys are not affected"
    );

    let loopback = api
        .call(
            "PUT",
            "/v1/security/ip-allowlist",
            &api.key,
            Some(r#"{"cidrs":["127.0.0.0/8"]}"#),
        )
        .await;
    assert_eq!(loopback.status, 200);
    let read = api.call("GET", "/v1/security/ip-allowlist", &api.key, None).await;
    assert_eq!(read.json(), json!({"cidrs": ["127.0.0.0/8"]}));
    let bad = api
        .call(
            "PUT",
            "/v1/security/ip-allowlist",
            &api.key,
            Some(r#"{"cidrs":["300.1.2.3/8"]}"#),
        )
        .await;
    assert_eq!(bad.status, 400);
    let elsewhere = api.call("PUT", "/v1/security/ip-allowlist", &api.key, Some(body)).await;
    assert_eq!(elsewhere.status, 200);
    let locked_out = api.call("GET", "/v1/keys", &api.key, None).await;
    assert_eq!(
        (locked_out.status.as_u16(), error_code(&locked_out).as_str()),
        (403, "IP_NOT_ALLOWED")
    );
}

const EMPTY_LIST_REFUSED: &str = r#"{"error":{"code":"INVALID_REQUEST","message":"An empty list would allow no address; use DELETE to remove the restriction."}}"#;

#[tokio::test]
async fn an_empty_allowlist_is_refused_and_locks_nobody_out() {
    let api = Api::start(Config::default()).await;
    let (key_id, other) = api.create_key("production").await;
    let empty = Some(r#"{"cidrs":[]}"#);

    let account = api.call("PUT", "/v1/security/ip-allowlist", &api.key, empty).await;
    assert_eq!(account.status, 400);
    assert_eq!(account.text(), EMPTY_LIST_REFUSED);
    assert_eq!(
        api.call("GET", "/v1/keys", &api.key, None).await.status,
        200,
        "the next request still works"
    );
    let read = api.call("GET", "/v1/security/ip-allowlist", &api.key, None).await;
    assert_eq!(read.json(), json!({"cidrs": null}), "nothing was stored");

    let key = api
        .call("PUT", &format!("/v1/keys/{key_id}/ip-allowlist"), &api.key, empty)
        .await;
    assert_eq!(key.status, 400);
    assert_eq!(key.text(), EMPTY_LIST_REFUSED);
    assert_eq!(api.call("GET", "/v1/keys", &other, None).await.status, 200);
}

#[tokio::test]
async fn delete_removes_the_account_allowlist() {
    let api = Api::start(Config::default()).await;
    let set = api
        .call(
            "PUT",
            "/v1/security/ip-allowlist",
            &api.key,
            Some(r#"{"cidrs":["127.0.0.1/32","203.0.113.0/24"]}"#),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text());
    let read = api.call("GET", "/v1/security/ip-allowlist", &api.key, None).await;
    assert_eq!(read.json(), json!({"cidrs": ["127.0.0.1/32", "203.0.113.0/24"]}));

    let deleted = api.call("DELETE", "/v1/security/ip-allowlist", &api.key, None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert!(deleted.body.is_empty());
    let read = api.call("GET", "/v1/security/ip-allowlist", &api.key, None).await;
    assert_eq!((read.status.as_u16(), read.json()), (200, json!({"cidrs": null})));
    assert_eq!(
        api.call("DELETE", "/v1/security/ip-allowlist", &api.key, None)
            .await
            .status,
        204,
        "removing no list is fine too"
    );
}

#[tokio::test]
async fn delete_removes_a_key_allowlist_that_locked_the_key_out() {
    let api = Api::start(Config::default()).await;
    let (key_id, other) = api.create_key("production").await;
    let path = format!("/v1/keys/{key_id}/ip-allowlist");
    let set = api
        .call("PUT", &path, &api.key, Some(r#"{"cidrs":["203.0.113.0/24"]}"#))
        .await;
    assert_eq!(set.status, 200, "{}", set.text());
    let refused = api.call("GET", "/v1/keys", &other, None).await;
    assert_eq!(
        (refused.status.as_u16(), error_code(&refused).as_str()),
        (403, "IP_NOT_ALLOWED")
    );

    let deleted = api.call("DELETE", &path, &api.key, None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert_eq!(api.call("GET", "/v1/keys", &other, None).await.status, 200, "lifted");
    assert_eq!(
        api.call("DELETE", &path, &api.key, None).await.status,
        204,
        "removing no list is fine too"
    );

    let unknown = api
        .call("DELETE", "/v1/keys/key_0000000000000000/ip-allowlist", &api.key, None)
        .await;
    assert_eq!(
        (unknown.status.as_u16(), error_code(&unknown).as_str()),
        (404, "NOT_FOUND")
    );
}

#[tokio::test]
async fn a_rotated_keys_successor_keeps_its_ip_allowlist() {
    // A successor without the old key's list would work from anywhere.
    let api = Api::start(Config::default()).await;
    let (key_id, old) = api.create_key("production").await;
    let set = api
        .call(
            "PUT",
            &format!("/v1/keys/{key_id}/ip-allowlist"),
            &api.key,
            Some(r#"{"cidrs":["203.0.113.0/24"]}"#),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text());
    let refused = api.call("GET", "/v1/keys", &old, None).await;
    assert_eq!(
        (refused.status.as_u16(), error_code(&refused).as_str()),
        (403, "IP_NOT_ALLOWED")
    );

    let rotated = api
        .call("POST", &format!("/v1/keys/{key_id}/rotate"), &api.key, None)
        .await;
    assert_eq!(rotated.status, 201, "{}", rotated.text());
    let new = rotated.json()["key"].as_str().unwrap().to_owned();
    let refused = api.call("GET", "/v1/keys", &new, None).await;
    assert_eq!(
        (refused.status.as_u16(), error_code(&refused).as_str()),
        (403, "IP_NOT_ALLOWED"),
        "the successor is held to the same list: {}",
        refused.text()
    );
}

#[tokio::test]
async fn only_production_keys_delete_allowlists() {
    let api = Api::start(Config::default()).await;
    let (_, sandbox) = api.create_key("sandbox").await;
    let (read_only_id, read_only) = api.create_key("read_only").await;
    let key_path = format!("/v1/keys/{read_only_id}/ip-allowlist");
    for key in [&sandbox, &read_only] {
        for path in ["/v1/security/ip-allowlist", key_path.as_str()] {
            let refused = api.call("DELETE", path, key, None).await;
            assert_eq!(
                (refused.status.as_u16(), error_code(&refused).as_str()),
                (403, "FORBIDDEN"),
                "DELETE {path}"
            );
        }
    }
}

#[tokio::test]
async fn a_token_failing_the_checksum_gets_the_unknown_key_401() {
    let api = Api::start(Config::default()).await;
    let unknown_key = tollgate_auth::KeyFormat::default().generate(tollgate_core::KeyKind::Production);
    let unknown = api.call("GET", "/v1/keys", unknown_key.expose_secret(), None).await;
    assert_eq!(
        (unknown.status.as_u16(), error_code(&unknown).as_str()),
        (401, "UNAUTHORIZED")
    );

    // The real key with its last checksum character changed.
    let last = if api.key.ends_with('A') { 'B' } else { 'A' };
    let garbage = format!("{}{last}", &api.key[..api.key.len() - 1]);
    assert!(garbage.starts_with("tg_live_") && garbage.len() == api.key.len());
    let refused = api.call("GET", "/v1/keys", &garbage, None).await;
    assert_eq!(refused.status, 401);
    assert_eq!(error_code(&refused), "UNAUTHORIZED");
    assert_eq!(refused.header("www-authenticate"), unknown.header("www-authenticate"));
    assert_eq!(refused.text(), unknown.text(), "the same body as an unknown key");
}

#[tokio::test]
async fn twenty_bad_keys_from_one_address_lock_it_out_for_the_minute_good_key_included() {
    let api = Api::start(Config::default()).await;
    for attempt in 0..20 {
        let wrong = api
            .call("GET", "/v1/keys", &format!("tg_live_wrong{attempt}"), None)
            .await;
        assert_eq!(
            (wrong.status.as_u16(), error_code(&wrong).as_str()),
            (401, "UNAUTHORIZED")
        );
    }
    let locked = api.call("GET", "/v1/keys", &api.key, None).await;
    assert_eq!(locked.status, 429, "{}", locked.text());
    assert_eq!(locked.header("retry-after"), "60");
    assert_eq!(
        locked.json(),
        json!({"error": {
            "code": "RATE_LIMITED",
            "message": "Too many failed authentications from this address. Retry after 60 seconds.",
            "retry_after": 60,
        }})
    );
    api.clock.advance(Duration::from_secs(60));
    let keys = api.call("GET", "/v1/keys", &api.key, None).await;
    assert_eq!(keys.status, 200, "the minute has passed: {}", keys.text());
}

#[tokio::test]
async fn message_events_reach_a_verifying_webhook_receiver() {
    let secret = tollgate_webhook::WebhookSecret::generate().unwrap();
    let (seed, mut seed_events) = receiver("seed", &secret).await;
    let (standard, mut standard_events) = receiver("standard", &secret).await;
    let webhook = (format!("http://{}/webhooks", seed.addr), secret.expose().to_owned());
    let config = Config {
        allow_private_webhook_urls: true,
        ..demo_account_on(None, Some(webhook))
    };
    // Real time: the receivers check Standard Webhooks timestamps against their clocks.
    let api = Api::start_at(config, SystemTime::now()).await;

    // To the account's webhook, checked in the seed's scheme (X-Webhook-Signature).
    let sent = api.call("POST", "/v1/messages", &api.key, Some(SEND)).await;
    assert_eq!(sent.status, 201);
    assert_eq!(sent.json()["status"], "queued");
    let event = next_event(&mut seed_events).await;
    assert_eq!(event["type"], "message.status");
    assert_eq!(event["data"]["id"], sent.json()["id"]);
    assert_eq!(event["data"]["status"], "queued");
    let event = next_event(&mut seed_events).await;
    assert_eq!(event["type"], "message.status");
    assert_eq!(event["data"]["id"], sent.json()["id"]);
    assert_eq!(event["data"]["status"], "sent");
    assert_eq!(event["data"]["to"], "+15551234567");
    assert_eq!(event["data"]["created_at"], sent.json()["created_at"]);
    let path = format!("/v1/messages/{}", sent.json()["id"].as_str().unwrap());
    let read = api.call("GET", &path, &api.key, None).await;
    assert_eq!(
        (read.status.as_u16(), read.json()["status"].as_str()),
        (200, Some("sent"))
    );

    // X-Webhook-URL overrides it for one message, checked with Standard Webhooks headers.
    let override_url = format!("http://{}/webhooks", standard.addr);
    let sent = api
        .call_with(
            "POST",
            "/v1/messages",
            &api.key,
            Some(SEND),
            &[("x-webhook-url", override_url.as_str())],
        )
        .await;
    assert_eq!(sent.status, 201, "{}", sent.text());
    for status in ["queued", "sent"] {
        let event = next_event(&mut standard_events).await;
        assert_eq!(event["data"]["id"], sent.json()["id"]);
        assert_eq!(event["data"]["status"], status);
    }

    // Sandbox messages are never delivered.
    let (_, sandbox) = api.create_key("sandbox").await;
    assert_eq!(api.call("POST", "/v1/messages", &sandbox, Some(SEND)).await.status, 201);
    let nothing = tokio::time::timeout(Duration::from_millis(300), seed_events.recv()).await;
    assert!(nothing.is_err(), "no event for a sandbox message");

    // Setting the webhook issues a fresh secret, once; hostile URLs are refused.
    let set = api
        .call(
            "PUT",
            "/v1/webhooks",
            &api.key,
            Some(&json!({"url": override_url}).to_string()),
        )
        .await;
    assert_eq!(set.status, 200);
    let fresh = set.json()["secret"].as_str().unwrap().to_owned();
    assert!(fresh.starts_with("whsec_") && fresh != secret.expose());
    let hostile = api
        .call("PUT", "/v1/webhooks", &api.key, Some(r#"{"url":"http://localhost/x"}"#))
        .await;
    assert_eq!(
        (hostile.status.as_u16(), error_code(&hostile).as_str()),
        (400, "INVALID_WEBHOOK_URL")
    );
}

const NOT_ABSOLUTE: &str = r#"{"error":{"code":"INVALID_WEBHOOK_URL","message":"X-Webhook-URL is not a valid webhook URL: the URL is not absolute."}}"#;
const NOT_HTTPS: &str = r#"{"error":{"code":"INVALID_WEBHOOK_URL","message":"X-Webhook-URL is not a valid webhook URL: the URL's scheme is not https."}}"#;
const NOT_PUBLIC: &str = r#"{"error":{"code":"INVALID_WEBHOOK_URL","message":"X-Webhook-URL must point to a public host that webhooks may be sent to."}}"#;

#[tokio::test]
async fn a_refused_webhook_url_is_400_before_the_body_and_leaves_the_request_id_unused() {
    let secret = tollgate_webhook::WebhookSecret::generate().unwrap();
    let (seed, _seed_events) = receiver("seed", &secret).await;
    let (standard, mut standard_events) = receiver("standard", &secret).await;
    let webhook = (format!("http://{}/webhooks", seed.addr), secret.expose().to_owned());
    let config = Config {
        allow_private_webhook_urls: true,
        ..demo_account_on(None, Some(webhook))
    };
    let api = Api::start_at(config, SystemTime::now()).await;
    let request_id = ("x-request-id", "webhook-url-1");

    // Malformed, with a body that is not JSON either.
    let malformed = api
        .call_with(
            "POST",
            "/v1/messages",
            &api.key,
            Some("{not json"),
            &[("x-webhook-url", "not-a-url"), request_id],
        )
        .await;
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.text(), NOT_ABSOLUTE);

    // Refused destination, with a good body and the same request id.
    let local = api
        .call_with(
            "POST",
            "/v1/messages",
            &api.key,
            Some(SEND),
            &[("x-webhook-url", "http://localhost/hooks"), request_id],
        )
        .await;
    assert_eq!(local.status, 400);
    assert_eq!(local.text(), NOT_PUBLIC);

    // Before the content-type rule too (415 otherwise).
    let plain_text = api
        .server
        .request("POST", "/v1/messages")
        .header("authorization", format!("Bearer {}", api.key))
        .header("content-type", "text/plain")
        .header("x-webhook-url", "ftp://hooks.example.com/in")
        .header(request_id.0, request_id.1)
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let plain_text = api.server.send(plain_text).await;
    assert_eq!(plain_text.status, 400);
    assert_eq!(plain_text.text(), NOT_HTTPS);

    // But after authentication.
    let anonymous = api
        .server
        .send_empty(
            api.server
                .request("POST", "/v1/messages")
                .header("x-webhook-url", "not-a-url"),
        )
        .await;
    assert_eq!(
        (anonymous.status.as_u16(), error_code(&anonymous).as_str()),
        (401, "UNAUTHORIZED")
    );

    // The request id is unused: with a good URL the message is sent, and
    // its events go to that URL.
    let override_url = format!("http://{}/webhooks", standard.addr);
    let good = [("x-webhook-url", override_url.as_str()), request_id];
    let sent = api.call_with("POST", "/v1/messages", &api.key, Some(SEND), &good).await;
    assert_eq!(sent.status, 201, "{}", sent.text());
    assert_eq!(sent.header("idempotent-replayed"), "");
    assert_eq!(sent.json()["status"], "queued");
    for status in ["queued", "sent"] {
        let event = next_event(&mut standard_events).await;
        assert_eq!(event["type"], "message.status");
        assert_eq!(event["data"]["id"], sent.json()["id"]);
        assert_eq!(event["data"]["status"], status);
    }
    let replayed = api.call_with("POST", "/v1/messages", &api.key, Some(SEND), &good).await;
    assert_eq!(replayed.status, 201);
    assert_eq!(replayed.header("idempotent-replayed"), "true");
    assert_eq!(replayed.body, sent.body);
}

async fn receiver(
    scheme: &str,
    secret: &tollgate_webhook::WebhookSecret,
) -> (TestServer, tokio::sync::broadcast::Receiver<Bytes>) {
    let options = webhook_receiver::Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        scheme: scheme.into(),
        secret: secret.clone(),
        limits: webhook_receiver::HttpLimits::default(),
    };
    let (events, received) = tokio::sync::broadcast::channel(8);
    let server = TestServer::start(webhook_receiver::router(&options, events).unwrap()).await;
    (server, received)
}

async fn next_event(events: &mut tokio::sync::broadcast::Receiver<Bytes>) -> Value {
    let body = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("an event within 10 s")
        .expect("the receiver is running");
    serde_json::from_slice(&body).expect("a JSON event")
}

/// Two instances of the API on one Redis share keys, quotas and
/// idempotency records. Needs `REDIS_URL` (skipped without it, a failure
/// without it under `TOLLGATE_REQUIRE_REDIS=1`).
#[tokio::test]
async fn two_instances_on_redis_share_keys_quotas_and_replays() {
    let Some(redis) = TestRedis::connect_with("two_instances_on_redis", |config| {
        config.operation_timeout(Duration::from_secs(5))
    })
    .await
    else {
        return;
    };
    let config = demo_account_on(tiny_plan(6), None);
    let stores = || async {
        Stores::redis_with(redis.config().clone())
            .await
            .expect("Redis is reachable")
    };
    let clock = ManualClock::new(SystemTime::now());
    let first = Api::start_on(config.clone(), stores().await, clock.clone()).await;
    let second = Api::start_on(config, stores().await, clock).await;
    assert!(!first.key.is_empty(), "the first instance bootstraps the account");
    assert!(second.key.is_empty(), "the second finds the key already there");
    let key = first.key.clone();

    // A key made on one instance works on the other at once; revoked on
    // one, it is refused by the other within the one-second TTL of the
    // other's key cache (`Stores::redis_with` caches key lookups).
    let (id, other) = first.create_key("read_only").await;
    assert_eq!(second.call("GET", "/v1/keys", &other, None).await.status, 200);
    assert_eq!(
        first.call("DELETE", &format!("/v1/keys/{id}"), &key, None).await.status,
        204
    );
    let revoked = std::time::Instant::now();
    assert_eq!(
        first.call("GET", "/v1/keys", &other, None).await.status,
        401,
        "at once where it was revoked"
    );
    loop {
        let status = second.call("GET", "/v1/keys", &other, None).await.status;
        if status == 401 {
            break;
        }
        // 429: still authenticated from the cache, then over the tiny daily quota.
        assert!(status == 200 || status == 429, "unexpected {status}");
        assert!(
            revoked.elapsed() < Duration::from_millis(1_500),
            "still admitted {:?} after the revocation",
            revoked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // One X-Request-ID: executed on the first, replayed by the second.
    let request_id = [("x-request-id", "fleet-request-1")];
    let sent = first
        .call_with("POST", "/v1/messages", &key, Some(SEND), &request_id)
        .await;
    assert_eq!(sent.status, 201);
    let replayed = second
        .call_with("POST", "/v1/messages", &key, Some(SEND), &request_id)
        .await;
    assert_eq!(replayed.header("idempotent-replayed"), "true");
    assert_eq!(replayed.body, sent.body);

    // Six requests a day for the account's key, counted across both: four
    // were used above (create, delete, and two messages; the read-only key has its own).
    assert_eq!(second.call("GET", "/v1/keys", &key, None).await.status, 200);
    assert_eq!(first.call("GET", "/v1/keys", &key, None).await.status, 200);
    assert_eq!(second.call("GET", "/v1/keys", &key, None).await.status, 429);
    assert_eq!(first.call("GET", "/v1/keys", &key, None).await.status, 429);

    redis.cleanup().await;
}

/// Whether `needle` is anywhere in a response the store was asked to keep:
/// body, header or trailer (trailers are stored among the headers).
fn holds(store: &FakeStore<MemoryIdempotencyStore>, needle: &str) -> bool {
    let found = |haystack: &[u8]| haystack.windows(needle.len()).any(|window| window == needle.as_bytes());
    store.completed().iter().any(|stored| {
        found(&stored.body)
            || stored
                .headers
                .iter()
                .any(|(name, value)| found(name.as_bytes()) || found(value))
    })
}

const ALREADY_CREATED: &str =
    "A key was already created for this X-Request-ID; its value was shown once and is not shown again.";

#[tokio::test]
async fn a_retried_key_creation_is_409_with_the_key_id_and_the_key_is_never_stored() {
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_031_199));
    let recording = FakeStore::new(MemoryIdempotencyStore::new());
    let mut stores = Stores::memory(SharedClock::from(clock.clone()));
    stores.idempotency = std::sync::Arc::new(recording.clone());
    let api = Api::start_on(Config::default(), stores, clock).await;
    let count = || async {
        api.call("GET", "/v1/keys", &api.key, None).await.json()["data"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(count().await, 1);

    let id = [("x-request-id", "7d3c0a52-1f4e-4b8a-9c6d-2e5f8a1b3c4d")];
    let body = r#"{"label":"Production Server","type":"production"}"#;
    let created = api.call_with("POST", "/v1/keys", &api.key, Some(body), &id).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let key_id = created.json()["id"].as_str().unwrap().to_owned();
    let secret = created.json()["key"].as_str().unwrap().to_owned();
    assert_eq!(count().await, 2);

    let again = api.call_with("POST", "/v1/keys", &api.key, Some(body), &id).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.header("idempotent-replayed"), "true");
    assert_eq!(again.header("content-type"), "application/json");
    assert_eq!(
        again.text(),
        format!(r#"{{"error":{{"code":"KEY_ALREADY_CREATED","message":"{ALREADY_CREATED}","key_id":"{key_id}"}}}}"#)
    );
    assert_eq!(count().await, 2, "no second key was created");
    assert_eq!(
        api.call("GET", "/v1/keys", &secret, None).await.status,
        200,
        "the key works"
    );

    // A rotation's retry names the new key and the one it replaces.
    let rotate = format!("/v1/keys/{key_id}/rotate");
    let id = [("x-request-id", "0b9e4f1a-6c2d-4e7f-8a3b-5d1c9e2f4a6b")];
    let rotated = api.call_with("POST", &rotate, &api.key, None, &id).await;
    assert_eq!(rotated.status, 201, "{}", rotated.text());
    let new_id = rotated.json()["id"].as_str().unwrap().to_owned();
    let new_secret = rotated.json()["key"].as_str().unwrap().to_owned();
    assert_eq!(count().await, 3);
    let again = api.call_with("POST", &rotate, &api.key, None, &id).await;
    assert_eq!(again.status, 409);
    assert_eq!(
        again.text(),
        format!(
            r#"{{"error":{{"code":"KEY_ALREADY_CREATED","message":"{ALREADY_CREATED}","key_id":"{new_id}","replaces":"{key_id}"}}}}"#
        )
    );
    assert_eq!(count().await, 3, "no second rotation");

    assert_eq!(recording.completed().len(), 2, "both substitutes were stored");
    assert!(holds(&recording, &key_id) && holds(&recording, &new_id));
    assert!(!holds(&recording, &secret), "the created key is nowhere in the store");
    assert!(!holds(&recording, &new_secret), "nor the rotated one");
}

#[tokio::test]
async fn one_accounts_flood_of_idempotent_requests_does_not_evict_anothers_records() {
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_031_199));
    let mut stores = Stores::memory(SharedClock::from(clock.clone()));
    // Room for eight records in all: the flood meets the store's ceiling.
    stores.idempotency = std::sync::Arc::new(
        MemoryIdempotencyStore::new()
            .with_clock(clock.clone())
            .with_max_entries(8),
    );
    let quiet_key = tollgate_auth::KeyManager::from_shared(stores.keys.clone())
        .create(tollgate_auth::NewKey::new("acct_quiet", tollgate_core::KeyKind::Production).plan("tiny"))
        .await
        .expect("a key for the quiet account");
    let quiet_key = quiet_key.secret.expose_secret().to_owned();
    let mut config = demo_account_on(tiny_plan(10_000), None);
    let mut quiet = config.accounts[0].clone();
    quiet.id = "acct_quiet".into();
    config.accounts.push(quiet);
    let api = Api::start_on(config, stores, clock).await;

    let quiet_id = [("x-request-id", "quiet-1")];
    let first = api
        .call_with("POST", "/v1/messages", &quiet_key, Some(SEND), &quiet_id)
        .await;
    assert_eq!(first.status, 201, "{}", first.text());
    for n in 0..20 {
        let id = format!("flood-{n}");
        let sent = api
            .call_with(
                "POST",
                "/v1/messages",
                &api.key,
                Some(SEND),
                &[("x-request-id", id.as_str())],
            )
            .await;
        assert_eq!(sent.status, 201, "{}", sent.text());
    }
    let again = api
        .call_with("POST", "/v1/messages", &quiet_key, Some(SEND), &quiet_id)
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(
        again.header("idempotent-replayed"),
        "true",
        "the quiet account's record survived"
    );
    assert_eq!(again.body, first.body);
    // The flooding account paid with its own oldest records.
    let oldest = api
        .call_with(
            "POST",
            "/v1/messages",
            &api.key,
            Some(SEND),
            &[("x-request-id", "flood-0")],
        )
        .await;
    assert_eq!(oldest.status, 201);
    assert_eq!(oldest.header("idempotent-replayed"), "");
}

#[tokio::test]
async fn revoked_keys_leave_the_list_after_thirty_days() {
    let api = Api::start(Config::default()).await;
    let (key_id, _) = api.create_key("sandbox").await;
    let listed = |response: TestResponse| -> Vec<String> {
        response.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| format!("{} {}", key["id"].as_str().unwrap(), key["status"].as_str().unwrap()))
            .collect()
    };
    assert_eq!(
        api.call("DELETE", &format!("/v1/keys/{key_id}"), &api.key, None)
            .await
            .status,
        204
    );
    api.clock.advance(Duration::from_secs(30 * 86_400 - 1));
    let keys = listed(api.call("GET", "/v1/keys", &api.key, None).await);
    assert!(keys.contains(&format!("{key_id} revoked")), "{keys:?}");
    api.clock.advance(Duration::from_secs(1));
    let keys = listed(api.call("GET", "/v1/keys", &api.key, None).await);
    assert_eq!(keys.len(), 1, "only the bootstrap key is left: {keys:?}");
    assert!(!keys.iter().any(|key| key.starts_with(&key_id)), "{keys:?}");
}

#[tokio::test]
async fn allowed_networks_confine_webhook_urls_to_them() {
    let secret = tollgate_webhook::WebhookSecret::generate().unwrap();
    let mut config = Config {
        allow_private_webhook_urls: true,
        ..demo_account_on(
            None,
            Some(("http://127.0.0.1:9/hooks".into(), secret.expose().to_owned())),
        )
    };
    config.webhooks.allowed_networks = vec!["127.0.0.0/8".parse().unwrap()];
    let api = Api::start_at(config, SystemTime::now()).await;
    let set = |url: &str| json!({ "url": url }).to_string();

    let inside = api
        .call("PUT", "/v1/webhooks", &api.key, Some(&set("http://127.0.0.2:9/in")))
        .await;
    assert_eq!(inside.status, 200, "{}", inside.text());
    assert_eq!(inside.json()["url"], "http://127.0.0.2:9/in");
    // Private, so the guard alone would take them; outside the networks.
    for outside in ["http://10.0.0.1/in", "http://[::1]:9/in", "http://192.168.1.1/in"] {
        let refused = api.call("PUT", "/v1/webhooks", &api.key, Some(&set(outside))).await;
        assert_eq!(refused.status, 400, "{outside}");
        assert_eq!(refused.text(), NOT_PUBLIC, "{outside}");
    }
    let header = api
        .call_with(
            "POST",
            "/v1/messages",
            &api.key,
            Some(SEND),
            &[("x-webhook-url", "http://10.1.2.3/in")],
        )
        .await;
    assert_eq!(header.status, 400);
    assert_eq!(header.text(), NOT_PUBLIC);
    let allowed = api
        .call_with(
            "POST",
            "/v1/messages",
            &api.key,
            Some(SEND),
            &[("x-webhook-url", "http://127.0.0.1:9/in")],
        )
        .await;
    assert_eq!(allowed.status, 201, "{}", allowed.text());
}

#[tokio::test]
async fn without_allowed_networks_private_urls_follow_the_guard_alone() {
    let config = Config {
        allow_private_webhook_urls: true,
        ..demo_account_on(None, None)
    };
    let api = Api::start_at(config, SystemTime::now()).await;
    let body = json!({ "url": "http://10.0.0.1/in" }).to_string();
    let response = api.call("PUT", "/v1/webhooks", &api.key, Some(&body)).await;
    assert_eq!(response.status, 200, "{}", response.text());
}
