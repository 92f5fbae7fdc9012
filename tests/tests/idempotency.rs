//! IdempotencyLayer behind BearerAuthLayer through a real axum server: a
//! client retrying `POST /v1/messages` with the same `X-Request-ID` sends the
//! message once, whatever the network does.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::Full;
use serde_json::{json, Value};
use support::{TestResponse, TestServer};
use tollgate_auth::{BearerAuthLayer, KeyManager, NewKey};
use tollgate_core::idempotency::MemoryIdempotencyStore;
use tollgate_core::keys::MemoryKeyStore;
use tollgate_core::{KeyKind, ManualClock, Principal};
use tollgate_idempotency::{IdempotencyLayer, IDEMPOTENCY_KEY, X_REQUEST_ID};

const REQUEST_ID: &str = "1f7b0d2e-9a53-4c4e-8b0a-3d1c2e4f5a6b";
const BODY: &str = r#"{"to":"+15550100","text":"Your code is 123456"}"#;

/// The messages actually sent, across every request.
#[derive(Clone, Default)]
struct Outbox {
    sent: Arc<AtomicUsize>,
}

async fn send_message(
    State(outbox): State<Outbox>,
    principal: Principal,
    Json(message): Json<Value>,
) -> (StatusCode, HeaderMap, Json<Value>) {
    let n = outbox.sent.fetch_add(1, Ordering::SeqCst) + 1;
    // Stay in flight a little, as a real send does.
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    let id = format!("msg_{n}");
    let mut headers = HeaderMap::new();
    headers.insert(header::LOCATION, format!("/v1/messages/{id}").parse().unwrap());
    headers.insert(header::SET_COOKIE, format!("seen={n}").parse().unwrap());
    (
        StatusCode::CREATED,
        headers,
        Json(json!({
            "id": id,
            "account": principal.account_id(),
            "environment": principal.environment().as_str(),
            "to": message["to"],
            "status": "queued",
        })),
    )
}

struct Api {
    server: Arc<TestServer>,
    keys: KeyManager,
    outbox: Outbox,
    clock: ManualClock,
}

impl Api {
    async fn start(configure: impl FnOnce(IdempotencyLayer) -> IdempotencyLayer) -> Api {
        let key_store = MemoryKeyStore::new();
        let clock = ManualClock::at_unix_secs(1_700_000_000);
        let keys = KeyManager::new(key_store.clone()).clock(clock.clone());
        let idempotency_store = MemoryIdempotencyStore::new().with_clock(clock.clone());
        let outbox = Outbox::default();
        let router = Router::new()
            .route("/v1/messages", post(send_message).get(|| async { "[]" }))
            .with_state(outbox.clone())
            // Outermost last: authentication runs first and hands the
            // Principal to the idempotency layer.
            .layer(configure(IdempotencyLayer::new(idempotency_store)))
            .layer(BearerAuthLayer::new(key_store).clock(clock.clone()));
        Api {
            server: Arc::new(TestServer::start(router).await),
            keys,
            outbox,
            clock,
        }
    }

    async fn key(&self, account: &str, kind: KeyKind) -> String {
        let created = self.keys.create(NewKey::new(account, kind)).await.expect("a new key");
        created.secret.expose_secret().to_owned()
    }

    fn sent(&self) -> usize {
        self.outbox.sent.load(Ordering::SeqCst)
    }
}

async fn post_message(server: &TestServer, api_key: &str, id_header: Option<(&str, &str)>, body: &str) -> TestResponse {
    let mut request = server
        .request("POST", "/v1/messages")
        .header(header::AUTHORIZATION, format!("Bearer {api_key}"))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some((name, value)) = id_header {
        request = request.header(name, value);
    }
    server
        .send(
            request
                .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
                .unwrap(),
        )
        .await
}

#[tokio::test]
async fn a_retried_message_is_sent_once_and_replayed_byte_for_byte() {
    let api = Api::start(|layer| layer).await;
    let key = api.key("acct_1", KeyKind::Production).await;
    let id = Some(("X-Request-ID", REQUEST_ID));

    let first = post_message(&api.server, &key, id, BODY).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.header("idempotent-replayed"), "");
    assert_eq!(
        first.json(),
        json!({"id":"msg_1","account":"acct_1","environment":"live","to":"+15550100","status":"queued"})
    );
    assert_eq!(first.header("set-cookie"), "seen=1");

    let retry = post_message(&api.server, &key, id, BODY).await;
    assert_eq!(retry.status, StatusCode::CREATED);
    assert_eq!(retry.header("idempotent-replayed"), "true");
    assert_eq!(retry.body, first.body, "the same bytes");
    assert_eq!(retry.header("location"), "/v1/messages/msg_1");
    assert_eq!(retry.header("content-type"), "application/json");
    assert_eq!(retry.header("content-length"), first.header("content-length"));
    assert_eq!(retry.header("set-cookie"), "", "cookies are not replayed");
    assert_eq!(api.sent(), 1, "one message, however many retries");
}

#[tokio::test]
async fn misuse_is_refused_with_clear_codes() {
    let api = Api::start(|layer| layer.max_request_body(256)).await;
    let key = api.key("acct_1", KeyKind::Production).await;
    let id = Some(("X-Request-ID", REQUEST_ID));
    post_message(&api.server, &key, id, BODY).await;

    let reused = post_message(&api.server, &key, id, r#"{"to":"+15550199","text":"hi"}"#).await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.json()["error"]["code"], "IDEMPOTENCY_KEY_REUSED");

    let too_long = "x".repeat(256);
    let invalid = post_message(&api.server, &key, Some(("X-Request-ID", too_long.as_str())), BODY).await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert_eq!(invalid.json()["error"]["code"], "INVALID_IDEMPOTENCY_KEY");

    let large = format!(r#"{{"to":"+15550100","text":"{}"}}"#, "a".repeat(300));
    let too_large = post_message(&api.server, &key, Some(("X-Request-ID", "another-id")), &large).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        too_large.text(),
        r#"{"error":{"code":"PAYLOAD_TOO_LARGE","message":"The request body exceeds the limit of 256 bytes.","max_bytes":256}}"#
    );

    // Authentication comes first: an unknown caller never reaches the store.
    let anonymous = post_message(
        &api.server,
        "tg_live_not_a_key",
        Some(("X-Request-ID", "fresh-id")),
        BODY,
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let fresh = post_message(&api.server, &key, Some(("X-Request-ID", "fresh-id")), BODY).await;
    assert_eq!(fresh.status, StatusCode::CREATED);
    assert_eq!(fresh.header("idempotent-replayed"), "");

    assert_eq!(api.sent(), 2);
}

#[tokio::test]
async fn accounts_and_environments_never_see_each_others_responses() {
    let api = Api::start(|layer| layer).await;
    let first = api.key("acct_1", KeyKind::Production).await;
    let second = api.key("acct_2", KeyKind::Production).await;
    let sandbox = api.key("acct_1", KeyKind::Sandbox).await;
    let rotated = api.key("acct_1", KeyKind::Production).await;
    let id = Some(("X-Request-ID", REQUEST_ID));

    let one = post_message(&api.server, &first, id, BODY).await;
    let two = post_message(&api.server, &second, id, BODY).await;
    let test = post_message(&api.server, &sandbox, id, BODY).await;
    assert_eq!(one.json()["account"], "acct_1");
    assert_eq!(two.json()["account"], "acct_2");
    assert_eq!(test.json()["environment"], "sandbox");
    assert!([&one, &two, &test]
        .iter()
        .all(|r| r.header("idempotent-replayed").is_empty()));
    assert_eq!(api.sent(), 3);

    // Another live key of acct_1 is the same caller: its retry is a replay.
    let again = post_message(&api.server, &rotated, id, BODY).await;
    assert_eq!(again.header("idempotent-replayed"), "true");
    assert_eq!(again.body, one.body);
    assert_eq!(api.sent(), 3);
}

#[tokio::test]
async fn a_key_expires_after_24_hours() {
    let api = Api::start(|layer| layer).await;
    let key = api.key("acct_1", KeyKind::Production).await;
    let id = Some(("X-Request-ID", REQUEST_ID));
    post_message(&api.server, &key, id, BODY).await;
    api.clock.advance(Duration::from_secs(24 * 3600 - 1));
    assert_eq!(
        post_message(&api.server, &key, id, BODY)
            .await
            .header("idempotent-replayed"),
        "true"
    );
    api.clock.advance(Duration::from_secs(1));
    let again = post_message(&api.server, &key, id, BODY).await;
    assert_eq!(again.json()["id"], "msg_2");
    assert_eq!(api.sent(), 2);
}

#[tokio::test]
async fn the_drafts_idempotency_key_header_and_a_required_key() {
    let api = Api::start(|layer| layer.headers([IDEMPOTENCY_KEY, X_REQUEST_ID]).require_key()).await;
    let key = api.key("acct_1", KeyKind::Production).await;

    let missing = post_message(&api.server, &key, None, BODY).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.json()["error"]["code"], "IDEMPOTENCY_KEY_MISSING");
    let read = api
        .server
        .send_empty(
            api.server
                .request("GET", "/v1/messages")
                .header(header::AUTHORIZATION, format!("Bearer {key}")),
        )
        .await;
    assert_eq!((read.status, read.text()), (StatusCode::OK, "[]"), "reads need no key");

    let quoted = format!("\"{REQUEST_ID}\"");
    let first = post_message(&api.server, &key, Some(("Idempotency-Key", quoted.as_str())), BODY).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let bare = post_message(&api.server, &key, Some(("Idempotency-Key", REQUEST_ID)), BODY).await;
    let legacy = post_message(&api.server, &key, Some(("X-Request-ID", REQUEST_ID)), BODY).await;
    for retry in [&bare, &legacy] {
        assert_eq!(retry.header("idempotent-replayed"), "true");
        assert_eq!(retry.body, first.body);
    }
    assert_eq!(api.sent(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_over_http_send_once() {
    const CLIENTS: usize = 32;
    let api = Api::start(|layer| layer).await;
    let key = Arc::new(api.key("acct_1", KeyKind::Production).await);
    let start = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (server, key, start) = (api.server.clone(), key.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                post_message(&server, &key, Some(("X-Request-ID", REQUEST_ID)), BODY).await
            })
        })
        .collect();
    let mut responses = Vec::new();
    for task in tasks {
        responses.push(task.await.expect("no client panicked"));
    }

    assert_eq!(api.sent(), 1, "exactly one message sent");
    let executed: Vec<&TestResponse> = responses
        .iter()
        .filter(|r| r.status == StatusCode::CREATED && r.header("idempotent-replayed").is_empty())
        .collect();
    let replays = responses
        .iter()
        .filter(|r| r.status == StatusCode::CREATED && r.header("idempotent-replayed") == "true")
        .count();
    let in_progress = responses
        .iter()
        .filter(|r| r.status == StatusCode::CONFLICT && r.json()["error"]["code"] == "IDEMPOTENCY_IN_PROGRESS")
        .count();
    assert_eq!(executed.len(), 1);
    assert_eq!(1 + replays + in_progress, CLIENTS, "every response accounted for");
    assert!(responses
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .all(|r| r.body == executed[0].body));
    assert!(responses
        .iter()
        .filter(|r| r.status == StatusCode::CONFLICT)
        .all(|r| r.header("retry-after") == "1"));
}
