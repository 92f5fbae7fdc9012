//! BearerAuthLayer and RequireScopeLayer through a real axum server: exact
//! statuses, bodies and challenges as a client sees them.

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{delete, get};
use axum::{Json, Router};
use http::request::Parts;
use http::StatusCode;
use serde_json::{json, Value};
use support::{TestResponse, TestServer};
use tollgate_auth::{BearerAuthLayer, KeyManager, NewKey, RequireScopeLayer};
use tollgate_core::allowlist::AllowlistStore;
use tollgate_core::keys::{KeyRegistry, MemoryKeyStore};
use tollgate_core::{Clock, KeyKind, ManualClock, Principal, Scope};

const MISSING_KEY: &str = r#"{"error":{"code":"UNAUTHORIZED","message":"Missing API key. Send it in the Authorization header: Bearer YOUR_API_KEY."}}"#;
const MALFORMED: &str =
    r#"{"error":{"code":"UNAUTHORIZED","message":"Malformed Authorization header. Expected: Bearer YOUR_API_KEY."}}"#;
const INVALID_KEY: &str = r#"{"error":{"code":"UNAUTHORIZED","message":"Invalid API key."}}"#;
const READ_ONLY: &str =
    r#"{"error":{"code":"FORBIDDEN","message":"This API key is read-only: only GET and HEAD requests are allowed."}}"#;
const INVALID_TOKEN: &str = r#"Bearer error="invalid_token""#;

async fn whoami(principal: Principal) -> Json<Value> {
    Json(json!({
        "account_id": principal.account_id(),
        "key_id": principal.key_id(),
        "kind": principal.kind().as_str(),
        "environment": principal.environment().as_str(),
        "plan": principal.plan(),
    }))
}

async fn list_messages(principal: Principal) -> Json<Value> {
    Json(json!({ "messages": [], "environment": principal.environment().as_str() }))
}

async fn send_message(principal: Principal) -> (StatusCode, Json<Value>) {
    (
        StatusCode::ACCEPTED,
        Json(json!({ "queued": true, "by": principal.key_id() })),
    )
}

struct Api {
    server: TestServer,
    keys: KeyManager,
    clock: ManualClock,
}

impl Api {
    async fn start() -> Api {
        let store = MemoryKeyStore::new();
        let clock = ManualClock::at_unix_secs(1_700_000_000);
        let keys = KeyManager::new(store.clone()).clock(clock.clone());
        let messages = get(list_messages)
            .post(send_message)
            .route_layer(RequireScopeLayer::by_method(Scope::READ, Scope::new("messages:write")));
        let analytics = get(|| async { "analytics" })
            .route_layer(RequireScopeLayer::any_of([Scope::READ, Scope::new("analytics:read")]));
        let templates = delete(|| async { StatusCode::NO_CONTENT }).route_layer(RequireScopeLayer::custom(
            |principal: &Principal, parts: &Parts| {
                principal.has_scope("templates:write") && !parts.uri.path().ends_with("/protected")
            },
        ));
        let authenticated = Router::new()
            .route("/v1/me", get(whoami))
            .route("/v1/messages", messages)
            .route("/v1/analytics", analytics)
            .route("/v1/templates/{name}", templates)
            .layer(BearerAuthLayer::new(store).clock(clock.clone()));
        let router = Router::new()
            .route("/health", get(|| async { "ok" }))
            // A scope rule with no authentication in front: a wiring mistake.
            .route(
                "/unguarded",
                get(|| async { "unreachable" }).route_layer(RequireScopeLayer::require(Scope::READ)),
            )
            .merge(authenticated);
        Api {
            server: TestServer::start(router).await,
            keys,
            clock,
        }
    }

    async fn key(&self, new: NewKey) -> (String, String) {
        let created = self.keys.create(new).await.expect("create a key");
        (created.info.id.clone(), created.secret.expose_secret().to_owned())
    }

    async fn call(&self, method: &str, path: &str, key: Option<&str>) -> TestResponse {
        let mut request = self.server.request(method, path);
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        self.server.send_empty(request).await
    }
}

fn assert_refused(response: &TestResponse, status: StatusCode, challenge: &str, body: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    assert_eq!(response.header("www-authenticate"), challenge);
    assert_eq!(response.header("content-type"), "application/json");
    assert_eq!(response.text(), body);
}

#[tokio::test]
async fn requests_without_a_usable_header_are_401() {
    let api = Api::start().await;
    let response = api.call("GET", "/v1/me", None).await;
    assert_refused(&response, StatusCode::UNAUTHORIZED, "Bearer", MISSING_KEY);

    let long = format!("Bearer {}", "k".repeat(10 * 1024));
    for (value, challenge) in [
        ("Basic dXNlcjpwYXNz", "Bearer"),
        ("Bearer", "Bearer"),
        ("Bearer two words", INVALID_TOKEN),
        (long.as_str(), INVALID_TOKEN),
    ] {
        let request = api.server.request("GET", "/v1/me").header("authorization", value);
        let response = api.server.send_empty(request).await;
        assert_refused(&response, StatusCode::UNAUTHORIZED, challenge, MALFORMED);
    }

    let (_, key) = api.key(NewKey::new("acct_1", KeyKind::Production)).await;
    let request = api
        .server
        .request("GET", "/v1/me")
        .header("authorization", format!("Bearer {key}"))
        .header("authorization", format!("Bearer {key}"));
    let response = api.server.send_empty(request).await;
    assert_refused(&response, StatusCode::UNAUTHORIZED, "Bearer", MALFORMED);
}

#[tokio::test]
async fn unknown_and_revoked_keys_get_the_same_401() {
    let api = Api::start().await;
    let (id, key) = api.key(NewKey::new("acct_1", KeyKind::Production)).await;
    assert_eq!(api.call("GET", "/v1/me", Some(&key)).await.status, StatusCode::OK);
    api.keys.revoke("acct_1", &id).await.unwrap();
    let revoked = api.call("GET", "/v1/me", Some(&key)).await;
    assert_refused(&revoked, StatusCode::UNAUTHORIZED, INVALID_TOKEN, INVALID_KEY);
    let unknown = api
        .call("GET", "/v1/me", Some("tg_live_000000000000000000000000000000000000"))
        .await;
    assert_refused(&unknown, StatusCode::UNAUTHORIZED, INVALID_TOKEN, INVALID_KEY);
    assert_eq!(revoked.body, unknown.body);
}

#[tokio::test]
async fn handlers_read_the_principal() {
    let api = Api::start().await;
    let (id, key) = api
        .key(NewKey::new("acct_1", KeyKind::Production).plan("premium"))
        .await;
    let response = api.call("GET", "/v1/me", Some(&key)).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        response.json(),
        json!({"account_id": "acct_1", "key_id": id, "kind": "production", "environment": "live", "plan": "premium"})
    );
    let (_, sandbox) = api.key(NewKey::new("acct_1", KeyKind::Sandbox)).await;
    let response = api.call("GET", "/v1/me", Some(&sandbox)).await;
    assert_eq!(response.json()["environment"], "sandbox");
    assert_eq!(response.json()["kind"], "sandbox");
}

#[tokio::test]
async fn key_kinds_decide_the_methods() {
    let api = Api::start().await;
    let (id, production) = api.key(NewKey::new("acct_1", KeyKind::Production)).await;
    let (_, sandbox) = api.key(NewKey::new("acct_1", KeyKind::Sandbox)).await;
    let (_, read_only) = api.key(NewKey::new("acct_1", KeyKind::ReadOnly)).await;

    let response = api.call("POST", "/v1/messages", Some(&production)).await;
    assert_eq!(response.status, StatusCode::ACCEPTED);
    assert_eq!(response.json(), json!({"queued": true, "by": id}));
    assert_eq!(
        api.call("POST", "/v1/messages", Some(&sandbox)).await.status,
        StatusCode::ACCEPTED
    );
    let response = api.call("GET", "/v1/messages", Some(&sandbox)).await;
    assert_eq!(response.json(), json!({"messages": [], "environment": "sandbox"}));

    let response = api.call("GET", "/v1/messages", Some(&read_only)).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        api.call("HEAD", "/v1/messages", Some(&read_only)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        api.call("GET", "/v1/analytics", Some(&read_only)).await.text(),
        "analytics"
    );
    for method in ["POST", "DELETE"] {
        let response = api.call(method, "/v1/messages", Some(&read_only)).await;
        assert_refused(
            &response,
            StatusCode::FORBIDDEN,
            r#"Bearer error="insufficient_scope""#,
            READ_ONLY,
        );
    }
}

#[tokio::test]
async fn route_scopes_are_403_with_the_missing_scope() {
    let api = Api::start().await;
    let (_, writer) = api
        .key(NewKey::new("acct_1", KeyKind::Production).scopes([Scope::new("messages:write")]))
        .await;
    assert_eq!(
        api.call("POST", "/v1/messages", Some(&writer)).await.status,
        StatusCode::ACCEPTED
    );
    let response = api.call("GET", "/v1/messages", Some(&writer)).await;
    assert_refused(
        &response,
        StatusCode::FORBIDDEN,
        r#"Bearer error="insufficient_scope", scope="read""#,
        r#"{"error":{"code":"FORBIDDEN","message":"This API key does not have the permission this request requires.","required_scope":"read"}}"#,
    );
    let response = api.call("GET", "/v1/analytics", Some(&writer)).await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
    assert_eq!(
        response.header("www-authenticate"),
        r#"Bearer error="insufficient_scope""#
    );
    assert_eq!(response.json()["error"]["code"], "FORBIDDEN");

    let (_, templater) = api
        .key(NewKey::new("acct_1", KeyKind::Production).scopes([Scope::new("templates:write")]))
        .await;
    assert_eq!(
        api.call("DELETE", "/v1/templates/welcome", Some(&templater))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call("DELETE", "/v1/templates/protected", Some(&templater))
            .await
            .status,
        StatusCode::FORBIDDEN,
        "a custom rule sees the request"
    );
    assert_eq!(
        api.call("DELETE", "/v1/templates/welcome", Some(&writer)).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_rotated_key_works_through_its_grace_period() {
    let api = Api::start().await;
    let (old_id, old) = api.key(NewKey::new("acct_1", KeyKind::Production)).await;
    let rotated = api
        .keys
        .rotate("acct_1", &old_id, Duration::from_secs(300))
        .await
        .unwrap();
    let new = rotated.secret.expose_secret().to_owned();
    assert_eq!(api.call("GET", "/v1/me", Some(&old)).await.status, StatusCode::OK);
    assert_eq!(
        api.call("GET", "/v1/me", Some(&new)).await.json()["key_id"],
        rotated.info.id
    );
    api.clock.advance(Duration::from_secs(300));
    let response = api.call("GET", "/v1/me", Some(&old)).await;
    assert_refused(&response, StatusCode::UNAUTHORIZED, INVALID_TOKEN, INVALID_KEY);
    assert_eq!(api.call("GET", "/v1/me", Some(&new)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn routes_outside_the_layer_are_public_and_a_scope_rule_alone_is_401() {
    let api = Api::start().await;
    let response = api.call("GET", "/health", None).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.text(), "ok");
    let (_, key) = api.key(NewKey::new("acct_1", KeyKind::Production)).await;
    let response = api.call("GET", "/unguarded", Some(&key)).await;
    assert_refused(&response, StatusCode::UNAUTHORIZED, "Bearer", MISSING_KEY);
}

#[tokio::test]
async fn last_use_is_visible_to_the_key_manager() {
    let api = Api::start().await;
    let (id, key) = api.key(NewKey::new("acct_1", KeyKind::ReadOnly)).await;
    assert_eq!(api.keys.get("acct_1", &id).await.unwrap().last_used_at, None);
    api.call("GET", "/v1/me", Some(&key)).await;
    let used = api.keys.get("acct_1", &id).await.unwrap();
    assert_eq!(used.last_used_at, Some(api.clock.now()));
}

/// A rotation carries the whole key over — label, kind, scopes, plan,
/// expiry and IP allowlist — on the backend given; the successor is
/// refused from the addresses the old key was.
async fn rotation_carries_the_key_over(keys: Arc<dyn KeyRegistry>, lists: Arc<dyn AllowlistStore>) {
    let account = tollgate_core::conformance::unique_name("acct_rot");
    let manager = KeyManager::from_shared(keys).allowlists(lists.clone());
    let network: ipnet::IpNet = "203.0.113.0/24".parse().expect("a network");
    let expires = std::time::SystemTime::now() + Duration::from_secs(86_400);
    let old = manager
        .create(
            NewKey::new(account.as_str(), KeyKind::ReadOnly)
                .label("Dashboards")
                .plan("premium")
                .scopes([Scope::new("analytics:read")])
                .expires_at(expires)
                .ip_allowlist([network]),
        )
        .await
        .expect("a key");
    let new = manager
        .rotate(&account, &old.info.id, Duration::from_secs(60))
        .await
        .expect("a rotation");
    let (old, new) = (old.info, new.info);
    assert_ne!(new.id, old.id);
    assert_eq!(
        (&new.label, new.kind, &new.scopes, &new.plan),
        (&old.label, old.kind, &old.scopes, &old.plan)
    );
    // Backends keep times at their own resolution; the expiry is carried as stored.
    assert_eq!(
        new.expires_at,
        manager.get(&account, &old.id).await.expect("old").expires_at
    );
    let list = lists.key_allowlist(&new.id).await.expect("read the list");
    assert_eq!(list.map(|list| list.networks().to_vec()), Some(vec![network]));
    let again = manager.rotate(&account, &old.id, Duration::from_secs(60)).await;
    assert!(
        matches!(again, Err(tollgate_auth::KeyManagerError::Retiring)),
        "{again:?}"
    );
}

#[tokio::test]
async fn rotation_carries_the_key_over_in_memory() {
    rotation_carries_the_key_over(
        Arc::new(MemoryKeyStore::new()),
        Arc::new(tollgate_core::allowlist::MemoryAllowlistStore::new()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_carries_the_key_over_on_redis() {
    let Some(redis) = tollgate_redis::testing::TestRedis::connect("rotation_carries_the_key_over_on_redis").await
    else {
        return;
    };
    rotation_carries_the_key_over(Arc::new(redis.key_store()), Arc::new(redis.allowlist_store())).await;
}
