use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use tollgate_core::conformance::{self, FakeStore};
use tollgate_core::keys::{CachedKeyStore, KeyRegistry, MemoryKeyStore};
use tollgate_core::{Clock, Environment, KeyKind, ManualClock, ResponseBody, StoreFuture};
use tower::{service_fn, Service, ServiceExt};

use super::*;
use crate::{hash_key, KeyManager, NewKey};

const INVALID_KEY_BODY: &str = r#"{"error":{"code":"UNAUTHORIZED","message":"Invalid API key."}}"#;
const MISSING_KEY_BODY: &str = r#"{"error":{"code":"UNAUTHORIZED","message":"Missing API key. Send it in the Authorization header: Bearer YOUR_API_KEY."}}"#;
const MALFORMED_BODY: &str =
    r#"{"error":{"code":"UNAUTHORIZED","message":"Malformed Authorization header. Expected: Bearer YOUR_API_KEY."}}"#;
const INVALID_TOKEN: &str = r#"Bearer error="invalid_token""#;

// A memory store seen through the test's controls: call counts, faults, a gate.
type Store = FakeStore<MemoryKeyStore>;

struct Fixture {
    store: Store,
    clock: ManualClock,
    keys: KeyManager,
    handler_calls: Arc<AtomicUsize>,
}

impl Fixture {
    fn new() -> Fixture {
        let store = FakeStore::new(MemoryKeyStore::new());
        let clock = ManualClock::at_unix_secs(1_700_000_000);
        let keys = KeyManager::new(store.clone()).clock(clock.clone());
        Fixture {
            store,
            clock,
            keys,
            handler_calls: Arc::default(),
        }
    }

    async fn key(&self, kind: KeyKind) -> (String, String) {
        let created = self.keys.create(NewKey::new("acct_1", kind)).await.expect("create");
        (created.info.id, created.secret.expose_secret().to_owned())
    }

    fn layer(&self) -> BearerAuthLayer {
        BearerAuthLayer::new(self.store.clone()).clock(self.clock.clone())
    }

    // The handler answers with the principal's key id and environment.
    fn service(
        &self,
        layer: BearerAuthLayer,
    ) -> impl Service<
        Request<Full<Bytes>>,
        Response = Response<ResponseBody<Full<Bytes>>>,
        Error = Infallible,
        Future = impl Send,
    > + Clone {
        let calls = self.handler_calls.clone();
        layer.layer(service_fn(move |request: Request<Full<Bytes>>| {
            calls.fetch_add(1, Ordering::SeqCst);
            let principal = request.extensions().get::<Principal>().cloned();
            async move {
                let body = principal.map_or("no principal".to_owned(), |principal| {
                    format!("{} {}", principal.key_id(), principal.environment().as_str())
                });
                Ok(Response::new(Full::new(Bytes::from(body))))
            }
        }))
    }

    async fn send(&self, method: Method, authorization: Option<&[u8]>) -> Reply {
        self.send_with(self.layer(), method, authorization).await
    }

    async fn send_with(&self, layer: BearerAuthLayer, method: Method, authorization: Option<&[u8]>) -> Reply {
        let mut request = Request::builder().method(method).uri("/v1/messages");
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
        }
        send(self.service(layer), request.body(Full::default()).unwrap()).await
    }

    fn calls(&self) -> usize {
        self.handler_calls.load(Ordering::SeqCst)
    }

    fn lookups(&self) -> usize {
        self.store.calls("find_by_hash")
    }

    fn last_use_writes(&self) -> usize {
        self.store.calls("record_last_use")
    }
}

struct Reply {
    status: StatusCode,
    challenge: Option<String>,
    body: String,
}

async fn send<Svc>(service: Svc, request: Request<Full<Bytes>>) -> Reply
where
    Svc: Service<Request<Full<Bytes>>, Response = Response<ResponseBody<Full<Bytes>>>, Error = Infallible>,
{
    let response = service.oneshot(request).await.unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|value| value.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        challenge,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

fn bearer(key: &str) -> Vec<u8> {
    format!("Bearer {key}").into_bytes()
}

/// A request to `/v1/messages` with `key` as its bearer token.
fn authorized(method: Method, key: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri("/v1/messages")
        .header(AUTHORIZATION, format!("Bearer {key}"))
        .body(Full::default())
        .unwrap()
}

#[tokio::test]
async fn a_valid_key_reaches_the_handler_with_its_principal() {
    let fixture = Fixture::new();
    let (id, key) = fixture.key(KeyKind::Production).await;
    let reply = fixture.send(Method::POST, Some(&bearer(&key))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, format!("{id} live"));
    assert_eq!(reply.challenge, None);
    let reply = fixture
        .send(Method::GET, Some(format!("bearer {key}").as_bytes()))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "the scheme is case-insensitive");
    assert_eq!(fixture.calls(), 2);
}

#[tokio::test]
async fn a_missing_header_is_401_with_a_bare_challenge() {
    let fixture = Fixture::new();
    let reply = fixture.send(Method::GET, None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.challenge.as_deref(), Some("Bearer"));
    assert_eq!(reply.body, MISSING_KEY_BODY);
    assert_eq!(fixture.calls(), 0);
    assert_eq!(fixture.lookups(), 0);
}

#[tokio::test]
async fn unreadable_headers_are_401_without_a_lookup() {
    let fixture = Fixture::new();
    let mut ten_kilobytes = b"Bearer ".to_vec();
    ten_kilobytes.extend(std::iter::repeat_n(b'k', 10 * 1024));
    let cases: [(&[u8], &str); 8] = [
        (b"", "Bearer"),
        (b"Basic dXNlcjpwYXNz", "Bearer"),
        (b"Bearer", "Bearer"),
        (b"Bearer   ", "Bearer"),
        (b"Bearer two words", INVALID_TOKEN),
        (b"Bearer caf\xc3\xa9", INVALID_TOKEN),
        (b"Bearer \x80\x81", INVALID_TOKEN),
        (&ten_kilobytes, INVALID_TOKEN),
    ];
    for (value, challenge) in cases {
        let reply = fixture.send(Method::GET, Some(value)).await;
        let shown = String::from_utf8_lossy(&value[..value.len().min(20)]).into_owned();
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{shown}");
        assert_eq!(reply.challenge.as_deref(), Some(challenge), "{shown}");
        assert_eq!(reply.body, MALFORMED_BODY, "{shown}");
    }
    assert_eq!(fixture.lookups(), 0);
    assert_eq!(fixture.calls(), 0);
}

#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let fixture = Fixture::new();
    let (_, key) = fixture.key(KeyKind::Production).await;
    let request = Request::get("/")
        .header(AUTHORIZATION, format!("Bearer {key}"))
        .header(AUTHORIZATION, format!("Bearer {key}"))
        .body(Full::default())
        .unwrap();
    let reply = send(fixture.service(fixture.layer()), request).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body, MALFORMED_BODY);
    assert_eq!(fixture.calls(), 0);
}

#[tokio::test]
async fn the_token_length_limit_is_configurable() {
    let fixture = Fixture::new();
    let (_, key) = fixture.key(KeyKind::Production).await;
    let short = fixture.layer().max_token_len(key.len() - 1);
    let reply = fixture.send_with(short, Method::GET, Some(&bearer(&key))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.challenge.as_deref(), Some(INVALID_TOKEN));
    let exact = fixture.layer().max_token_len(key.len());
    let reply = fixture.send_with(exact, Method::GET, Some(&bearer(&key))).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_revoked_and_expired_keys_look_the_same() {
    let fixture = Fixture::new();
    let (revoked_id, revoked) = fixture.key(KeyKind::Production).await;
    fixture.keys.revoke("acct_1", &revoked_id).await.unwrap();
    let expiring = fixture
        .keys
        .create(NewKey::new("acct_1", KeyKind::Production).expires_at(fixture.clock.now() + Duration::from_secs(60)))
        .await
        .unwrap();
    let expiring = expiring.secret.expose_secret().to_owned();
    assert_eq!(
        fixture.send(Method::GET, Some(&bearer(&expiring))).await.status,
        StatusCode::OK
    );
    fixture.clock.advance(Duration::from_secs(60));
    let unknown = KeyFormat::default().generate(KeyKind::Production);
    for key in [unknown.expose_secret(), &revoked, &expiring, "not-even-a-key"] {
        let reply = fixture.send(Method::GET, Some(&bearer(key))).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.challenge.as_deref(), Some(INVALID_TOKEN));
        assert_eq!(reply.body, INVALID_KEY_BODY);
    }
    assert_eq!(fixture.calls(), 1);
}

#[tokio::test]
async fn revocation_takes_effect_on_the_next_request() {
    let fixture = Fixture::new();
    let (id, key) = fixture.key(KeyKind::Production).await;
    let service = fixture.service(fixture.layer());
    let request = || authorized(Method::POST, &key);
    assert_eq!(send(service.clone(), request()).await.status, StatusCode::OK);
    fixture.keys.revoke("acct_1", &id).await.unwrap();
    let reply = send(service, request()).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body, INVALID_KEY_BODY);
}

#[tokio::test]
async fn production_keys_may_use_every_method_in_live() {
    let fixture = Fixture::new();
    let (id, key) = fixture.key(KeyKind::Production).await;
    for method in [Method::GET, Method::POST, Method::DELETE] {
        let reply = fixture.send(method, Some(&bearer(&key))).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, format!("{id} live"));
    }
}

#[tokio::test]
async fn sandbox_keys_may_use_every_method_in_the_sandbox() {
    let fixture = Fixture::new();
    let (id, key) = fixture.key(KeyKind::Sandbox).await;
    for method in [Method::GET, Method::POST, Method::PATCH] {
        let reply = fixture.send(method, Some(&bearer(&key))).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, format!("{id} sandbox"));
    }
    let principal = fixture
        .store
        .inner()
        .find_by_id(&id)
        .await
        .unwrap()
        .unwrap()
        .principal
        .clone();
    assert_eq!(principal.environment(), Environment::Sandbox);
}

#[tokio::test]
async fn read_only_keys_may_only_get_and_head() {
    let fixture = Fixture::new();
    let (id, key) = fixture.key(KeyKind::ReadOnly).await;
    for method in [Method::GET, Method::HEAD] {
        let reply = fixture.send(method.clone(), Some(&bearer(&key))).await;
        assert_eq!(reply.status, StatusCode::OK, "{method}");
        if method == Method::GET {
            assert_eq!(reply.body, format!("{id} live"));
        }
    }
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let reply = fixture.send(method.clone(), Some(&bearer(&key))).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method}");
        assert_eq!(reply.challenge.as_deref(), Some(r#"Bearer error="insufficient_scope""#));
        assert_eq!(
            reply.body,
            r#"{"error":{"code":"FORBIDDEN","message":"This API key is read-only: only GET and HEAD requests are allowed."}}"#
        );
    }
    assert_eq!(fixture.calls(), 2);
    let lenient = fixture.layer().enforce_key_kind(false);
    let reply = fixture.send_with(lenient, Method::POST, Some(&bearer(&key))).await;
    assert_eq!(reply.status, StatusCode::OK, "the rule can be turned off");
}

#[tokio::test]
async fn a_rotated_key_works_until_its_grace_period_ends() {
    let fixture = Fixture::new();
    let (old_id, old) = fixture.key(KeyKind::Production).await;
    let rotated = fixture
        .keys
        .rotate("acct_1", &old_id, Duration::from_secs(3600))
        .await
        .unwrap();
    let new = rotated.secret.expose_secret().to_owned();
    assert_eq!(
        fixture.send(Method::POST, Some(&bearer(&old))).await.status,
        StatusCode::OK
    );
    assert_eq!(
        fixture.send(Method::POST, Some(&bearer(&new))).await.status,
        StatusCode::OK
    );
    fixture.clock.advance(Duration::from_secs(3599));
    assert_eq!(
        fixture.send(Method::POST, Some(&bearer(&old))).await.status,
        StatusCode::OK
    );
    fixture.clock.advance(Duration::from_secs(1));
    let reply = fixture.send(Method::POST, Some(&bearer(&old))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body, INVALID_KEY_BODY);
    let reply = fixture.send(Method::POST, Some(&bearer(&new))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, format!("{} live", rotated.info.id));
}

#[tokio::test]
async fn last_use_is_recorded_at_most_once_per_resolution() {
    let fixture = Fixture::new();
    let (id, key) = fixture.key(KeyKind::Production).await;
    let writes = || fixture.last_use_writes();
    let start = fixture.clock.now();
    fixture.send(Method::GET, Some(&bearer(&key))).await;
    assert_eq!(writes(), 1, "the first use is recorded");
    for _ in 0..5 {
        fixture.clock.advance(Duration::from_secs(10));
        assert_eq!(
            fixture.send(Method::GET, Some(&bearer(&key))).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(writes(), 1, "uses within a minute are not");
    fixture.clock.advance(Duration::from_secs(10));
    fixture.send(Method::GET, Some(&bearer(&key))).await;
    assert_eq!(writes(), 2, "a minute later it is recorded again");
    let info = fixture.keys.get("acct_1", &id).await.unwrap();
    assert_eq!(info.last_used_at, Some(start + Duration::from_secs(60)));

    let fine = fixture.layer().last_use_resolution(Duration::from_secs(1));
    fixture.clock.advance(Duration::from_secs(1));
    fixture.send_with(fine, Method::GET, Some(&bearer(&key))).await;
    assert_eq!(writes(), 3, "the resolution is configurable");
}

#[tokio::test]
async fn failing_to_record_last_use_does_not_fail_the_request() {
    let fixture = Fixture::new();
    let (_, key) = fixture.key(KeyKind::Production).await;
    fixture.store.fail("record_last_use");
    let reply = fixture.send(Method::GET, Some(&bearer(&key))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(fixture.last_use_writes(), 1);
}

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_store_outage_is_503_and_logged_without_the_key() {
    let fixture = Fixture::new();
    let (_, key) = fixture.key(KeyKind::Production).await;
    fixture.store.fail("find_by_hash");
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let reply = fixture.send(Method::GET, Some(&bearer(&key))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        reply.body,
        r#"{"error":{"code":"SERVICE_UNAVAILABLE","message":"The service is temporarily unavailable. Please retry."}}"#
    );
    assert_eq!(fixture.calls(), 0);
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("WARN"), "{logs}");
    assert!(logs.contains("API key lookup failed"), "{logs}");
    assert!(logs.contains("injected fault in find_by_hash"), "{logs}");
    assert!(!logs.contains(&key), "the key must never be logged: {logs}");
    assert!(!logs.contains(&key[8..20]), "not even part of it: {logs}");
}

#[tokio::test]
async fn a_required_checksum_refuses_garbage_before_the_store() {
    let fixture = Fixture::new();
    let (_, key) = fixture.key(KeyKind::Production).await;
    let strict = || fixture.layer().require_checksum(KeyFormat::default());
    let mut typo = key.clone().into_bytes();
    typo[12] = if typo[12] == b'x' { b'y' } else { b'x' };
    let typo = String::from_utf8(typo).unwrap();
    for garbage in ["garbage", "tg_live_short", typo.as_str()] {
        let reply = fixture.send_with(strict(), Method::GET, Some(&bearer(garbage))).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.body, INVALID_KEY_BODY, "the same answer as an unknown key");
        assert_eq!(reply.challenge.as_deref(), Some(INVALID_TOKEN));
    }
    assert_eq!(fixture.lookups(), 0, "no store round trip");
    assert_eq!(
        fixture
            .send_with(strict(), Method::GET, Some(&bearer(&key)))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(fixture.lookups(), 1);
}

#[tokio::test]
async fn without_a_required_checksum_imported_keys_of_any_format_work() {
    let fixture = Fixture::new();
    let bootstrap = "bootstrap-key-from-env-0123456789";
    fixture
        .keys
        .import(NewKey::new("acct_1", KeyKind::Production), bootstrap)
        .await
        .unwrap();
    let reply = fixture.send(Method::POST, Some(&bearer(bootstrap))).await;
    assert_eq!(reply.status, StatusCode::OK);
}

/// A store that answers every lookup with the same record, whatever the
/// hash: a broken backend, which no real store wrapped in a `FakeStore` is.
struct CarelessStore(Arc<KeyRecord>);

impl KeyStore for CarelessStore {
    fn find_by_hash(&self, _: &KeyHash) -> StoreFuture<Option<Arc<KeyRecord>>> {
        MaybeReady::ready(Ok(Some(self.0.clone())))
    }

    fn record_last_use(&self, _: &str, _: SystemTime) -> StoreFuture<()> {
        MaybeReady::ready(Ok(()))
    }
}

#[tokio::test]
async fn a_record_with_another_hash_is_not_accepted() {
    let record = KeyRecord {
        principal: Principal::new("acct_1", "key_1", KeyKind::Production),
        hash: hash_key("the-real-key"),
        label: String::new(),
        display_prefix: String::new(),
        created_at: SystemTime::UNIX_EPOCH,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    };
    let layer = BearerAuthLayer::new(CarelessStore(Arc::new(record)));
    let service = layer.layer(service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::default()))
    }));
    let reply = send(service.clone(), authorized(Method::GET, "a-guessed-key")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body, INVALID_KEY_BODY);
    assert_eq!(
        send(service, authorized(Method::GET, "the-real-key")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn grpc_requests_get_a_grpc_status() {
    let fixture = Fixture::new();
    let request = Request::post("/messaging.Messages/Send")
        .header(CONTENT_TYPE, "application/grpc")
        .body(Full::default())
        .unwrap();
    let response = fixture.service(fixture.layer()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "16");
    assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer");
}

#[tokio::test]
async fn a_custom_renderer_is_used() {
    let fixture = Fixture::new();
    let layer = fixture
        .layer()
        .renderer(Renderer::json(tollgate_core::ErrorFormat::ProblemJson));
    let reply = fixture.send_with(layer, Method::GET, None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(
        reply
            .body
            .starts_with(r#"{"type":"about:blank","title":"Unauthorized","status":401"#),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn poll_ready_waits_for_the_inner_service() {
    let (inner, mut handle) = tower_test::mock::pair::<Request<Full<Bytes>>, Response<Full<Bytes>>>();
    let fixture = Fixture::new();
    let (_, key) = fixture.key(KeyKind::Production).await;
    let mut service = tower_test::mock::Spawn::new(fixture.layer().layer(inner));
    handle.allow(0);
    tokio_test::assert_pending!(service.poll_ready());
    handle.allow(1);
    tokio_test::assert_ready_ok!(service.poll_ready());
    let request = authorized(Method::GET, &key);
    let mut response = tokio_test::task::spawn(service.call(request));
    tokio_test::assert_pending!(response.poll());
    let (request, reply) = handle.next_request().await.expect("the inner service is called");
    assert!(request.extensions().get::<Principal>().is_some());
    reply.send_response(Response::new(Full::new(Bytes::from_static(b"inner"))));
    let response = tokio_test::assert_ready_ok!(response.poll());
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_through_clones_each_get_their_own_principal() {
    let fixture = Arc::new(Fixture::new());
    let mut keys = Vec::new();
    for kind in [
        KeyKind::Production,
        KeyKind::Sandbox,
        KeyKind::ReadOnly,
        KeyKind::Production,
    ] {
        keys.push(fixture.key(kind).await);
    }
    let service = fixture.service(fixture.layer());
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (id, key) = keys[i % keys.len()].clone();
            let service = service.clone();
            tokio::spawn(async move {
                let request = authorized(Method::GET, &key);
                let reply = send(service, request).await;
                assert_eq!(reply.status, StatusCode::OK);
                assert!(reply.body.starts_with(&id), "{} is not {id}'s", reply.body);
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(fixture.calls(), 200);
}

#[test]
fn the_layer_debug_shows_configuration_only() {
    let layer = BearerAuthLayer::new(MemoryKeyStore::new()).max_token_len(64);
    let debug = format!("{layer:?}");
    assert!(debug.contains("max_token_len: 64"), "{debug}");
    assert!(debug.contains("enforce_key_kind: true"), "{debug}");
}

#[tokio::test]
async fn a_pending_lookup_is_finished_by_the_response_future() {
    let (inner, mut handle) = tower_test::mock::pair::<Request<Full<Bytes>>, Response<Full<Bytes>>>();
    let fixture = Fixture::new();
    let (id, key) = fixture.key(KeyKind::Production).await;
    let gate = conformance::Gate::closed();
    fixture.store.gate(Some(gate.clone()));
    let mut service = tower_test::mock::Spawn::new(fixture.layer().layer(inner));
    handle.allow(1);
    tokio_test::assert_ready_ok!(service.poll_ready());
    let request = authorized(Method::GET, &key);
    let mut response = tokio_test::task::spawn(service.call(request));
    tokio_test::assert_pending!(response.poll());
    assert!(!response.is_woken());
    gate.open();
    assert!(
        response.is_woken(),
        "the store wakes the task that polled the response future"
    );
    // The ready inner service went into the future; calling it there must not panic.
    tokio_test::assert_pending!(response.poll());
    let (request, reply) = handle.next_request().await.expect("the inner service is called");
    assert_eq!(
        request.extensions().get::<Principal>().map(Principal::key_id),
        Some(id.as_str())
    );
    reply.send_response(Response::new(Full::new(Bytes::from_static(b"inner"))));
    let response = tokio_test::assert_ready_ok!(response.poll());
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_pending_lookup_that_fails_is_rendered_by_the_response_future() {
    let fixture = Fixture::new();
    let (_, key) = fixture.key(KeyKind::ReadOnly).await;
    let gate = conformance::Gate::closed();
    fixture.store.gate(Some(gate.clone()));
    let service = fixture.service(fixture.layer());
    let request = authorized(Method::POST, &key);
    let mut response = tokio_test::task::spawn(service.oneshot(request));
    tokio_test::assert_pending!(response.poll());
    gate.open();
    let response = tokio_test::assert_ready_ok!(response.poll());
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(fixture.calls(), 0);
}

// The layer's rules, through whichever path `store` takes: lookups and
// last-use writes answered at once or not, the same answers.
async fn the_rules_hold_over<S: KeyRegistry + Clone>(store: S) {
    let clock = ManualClock::at_unix_secs(1_700_000_000);
    let keys = KeyManager::new(store.clone()).clock(clock.clone());
    let service = BearerAuthLayer::new(store).clock(clock.clone()).layer(service_fn(
        |request: Request<Full<Bytes>>| async move {
            let principal = request.extensions().get::<Principal>().expect("a principal");
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(principal.key_id().to_owned()))))
        },
    ));
    let send = |method: Method, key: &str| send(service.clone(), authorized(method, key));
    let created = keys.create(NewKey::new("acct_1", KeyKind::Production)).await.unwrap();
    let (id, key) = (created.info.id, created.secret.expose_secret().to_owned());
    let start = clock.now();

    let reply = send(Method::POST, &key).await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, id.as_str()));
    assert_eq!(keys.get("acct_1", &id).await.unwrap().last_used_at, Some(start));
    clock.advance(Duration::from_millis(500));
    assert_eq!(send(Method::POST, &key).await.status, StatusCode::OK);
    clock.advance(Duration::from_millis(58_500));
    assert_eq!(send(Method::POST, &key).await.status, StatusCode::OK);
    assert_eq!(
        keys.get("acct_1", &id).await.unwrap().last_used_at,
        Some(start),
        "not due yet"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(send(Method::POST, &key).await.status, StatusCode::OK);
    assert_eq!(
        keys.get("acct_1", &id).await.unwrap().last_used_at,
        Some(start + Duration::from_secs(60))
    );

    // A read-only key is refused writes, and its use is still recorded.
    let read_only = keys.create(NewKey::new("acct_1", KeyKind::ReadOnly)).await.unwrap();
    let reply = send(Method::POST, read_only.secret.expose_secret()).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        keys.get("acct_1", &read_only.info.id).await.unwrap().last_used_at,
        Some(clock.now())
    );
    assert_eq!(
        send(Method::GET, read_only.secret.expose_secret()).await.status,
        StatusCode::OK
    );

    // Revocation takes effect on the next request, even one served from a
    // cache; expiry at its instant.
    assert_eq!(send(Method::GET, &key).await.status, StatusCode::OK);
    keys.revoke("acct_1", &id).await.unwrap();
    let reply = send(Method::GET, &key).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::UNAUTHORIZED, INVALID_KEY_BODY)
    );
    let expiring = keys
        .create(NewKey::new("acct_1", KeyKind::Production).expires_at(clock.now() + Duration::from_secs(5)))
        .await
        .unwrap();
    clock.advance(Duration::from_millis(4_999));
    assert_eq!(
        send(Method::GET, expiring.secret.expose_secret()).await.status,
        StatusCode::OK
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        send(Method::GET, expiring.secret.expose_secret()).await.status,
        StatusCode::UNAUTHORIZED,
        "expired at its instant, though the record may be cached"
    );

    let unknown = KeyFormat::default().generate(KeyKind::Production);
    let reply = send(Method::GET, unknown.expose_secret()).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::UNAUTHORIZED, INVALID_KEY_BODY)
    );
}

#[tokio::test]
async fn the_rules_hold_for_memory_cached_and_async_stores_alike() {
    the_rules_hold_over(MemoryKeyStore::new()).await;
    the_rules_hold_over(FakeStore::new(MemoryKeyStore::new()).asynchronous()).await;
    let gated = FakeStore::new(MemoryKeyStore::new());
    let gate = conformance::Gate::closed();
    gate.open();
    gated.gate(Some(gate));
    the_rules_hold_over(gated).await;
    // A cache answers a hit at once, and a miss as its backend does.
    the_rules_hold_over(CachedKeyStore::new(MemoryKeyStore::new())).await;
    the_rules_hold_over(CachedKeyStore::new(
        FakeStore::new(MemoryKeyStore::new()).asynchronous(),
    ))
    .await;
}

#[tokio::test]
async fn a_cache_hit_over_an_async_store_is_judged_at_once_and_its_use_written_async() {
    let fixture = Fixture::new();
    let (id, key) = fixture.key(KeyKind::Production).await;
    let backend = FakeStore::new(fixture.store.inner().clone()).asynchronous();
    let cached = CachedKeyStore::new(backend.clone()).clock(fixture.clock.clone());
    // Every use due, so that each request writes one.
    let layer = BearerAuthLayer::new(cached.clone())
        .clock(fixture.clock.clone())
        .last_use_resolution(Duration::ZERO);
    let service = layer.layer(service_fn(|request: Request<Full<Bytes>>| async move {
        let principal = request.extensions().get::<Principal>().expect("a principal");
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(principal.key_id().to_owned()))))
    }));
    let request = || authorized(Method::GET, &key);
    let lookups = || backend.calls("find_by_hash");
    let writes = || backend.calls("record_last_use");

    let reply = send(service.clone(), request()).await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, id.as_str()));
    assert_eq!((lookups(), writes()), (1, 1), "a miss: read and written asynchronously");

    // A hit: the backend is not read.
    fixture.clock.advance(Duration::from_millis(10));
    let reply = send(service.clone(), request()).await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, id.as_str()));
    assert_eq!(
        (lookups(), writes()),
        (1, 2),
        "a hit: judged at once, the use written async"
    );
    let stored = cached.get_ref().inner().find_by_id(&id).await.unwrap().unwrap();
    assert_eq!(
        stored.last_used_at,
        Some(fixture.clock.now()),
        "the write reached the backend"
    );

    // A failing write loses only the timestamp.
    backend.fail("record_last_use");
    fixture.clock.advance(Duration::from_millis(10));
    assert_eq!(send(service.clone(), request()).await.status, StatusCode::OK);
    assert_eq!((lookups(), writes()), (1, 3));
}

// A handler that counts its calls when called, not when polled, and answers
// with the principal's key id.
fn counting_handler(
    calls: &Arc<AtomicUsize>,
) -> impl Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send> + Clone {
    let calls = calls.clone();
    service_fn(move |request: Request<Full<Bytes>>| {
        calls.fetch_add(1, Ordering::SeqCst);
        let principal = request.extensions().get::<Principal>().map(|p| p.key_id().to_owned());
        std::future::ready(Ok(Response::new(Full::new(Bytes::from(principal.unwrap_or_default())))))
    })
}

#[tokio::test]
async fn a_memory_stores_answer_is_judged_inside_call() {
    let store = MemoryKeyStore::new();
    let keys = KeyManager::new(store.clone());
    let created = keys.create(NewKey::new("acct_1", KeyKind::ReadOnly)).await.unwrap();
    let key = created.secret.expose_secret().to_owned();
    let unknown = KeyFormat::default().generate(KeyKind::Production);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut service = BearerAuthLayer::new(store).layer(counting_handler(&calls));
    let mut cx = Context::from_waker(Waker::noop());
    for (method, key, status, handled) in [
        // The first use: the last-use write is due, and answered at once too.
        (Method::GET, key.as_str(), StatusCode::OK, 1),
        (Method::GET, key.as_str(), StatusCode::OK, 2),
        (Method::POST, key.as_str(), StatusCode::FORBIDDEN, 2),
        (Method::GET, unknown.expose_secret(), StatusCode::UNAUTHORIZED, 2),
    ] {
        assert!(service.poll_ready(&mut cx).is_ready());
        let response = service.call(authorized(method.clone(), key));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            handled,
            "{method} judged, and the handler called, inside `call`"
        );
        let Poll::Ready(Ok(response)) = pin!(response).poll(&mut cx) else {
            panic!("{method}: the response future is ready on its first poll");
        };
        assert_eq!(response.status(), status, "{method}");
    }
    let info = keys.get("acct_1", &created.info.id).await.unwrap();
    assert!(info.last_used_at.is_some(), "the use was recorded");
}

#[tokio::test]
async fn a_held_lookup_and_its_last_use_write_are_finished_by_the_response_future() {
    let memory = MemoryKeyStore::new();
    let keys = KeyManager::new(memory.clone());
    let created = keys.create(NewKey::new("acct_1", KeyKind::Production)).await.unwrap();
    let store = FakeStore::new(memory);
    let gate = conformance::Gate::closed();
    store.gate(Some(gate.clone()));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut service = BearerAuthLayer::new(store.clone()).layer(counting_handler(&calls));
    std::future::poll_fn(|cx| service.poll_ready(cx)).await.unwrap();
    let response = service.call(authorized(Method::POST, created.secret.expose_secret()));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "nothing is judged before the store answers"
    );
    let mut response = tokio_test::task::spawn(response);
    tokio_test::assert_pending!(response.poll());
    gate.open();
    let response = tokio_test::assert_ready_ok!(response.poll());
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        created.info.id
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!((store.calls("find_by_hash"), store.calls("record_last_use")), (1, 1));
    let info = keys.get("acct_1", &created.info.id).await.unwrap();
    assert!(info.last_used_at.is_some(), "the write finished with the request");
}

#[tokio::test]
async fn a_ready_lookup_with_a_pending_last_use_write_finishes_in_the_response_future() {
    let memory = MemoryKeyStore::new();
    let clock = ManualClock::at_unix_secs(1_700_000_000);
    let keys = KeyManager::new(memory.clone()).clock(clock.clone());
    let created = keys.create(NewKey::new("acct_1", KeyKind::Production)).await.unwrap();
    let (id, key) = (created.info.id, created.secret.expose_secret().to_owned());
    // A cache hit over a backend whose writes are held at a gate.
    let backend = FakeStore::new(memory.clone());
    let cached = CachedKeyStore::new(backend.clone()).clock(clock.clone());
    assert!(cached.find_by_hash(&hash_key(&key)).await.unwrap().is_some(), "cached");
    let gate = conformance::Gate::closed();
    backend.gate(Some(gate.clone()));
    let writes = || backend.calls("record_last_use");
    let calls = Arc::new(AtomicUsize::new(0));
    // Every use due, so that each request writes one.
    let mut service = BearerAuthLayer::new(cached)
        .clock(clock.clone())
        .last_use_resolution(Duration::ZERO)
        .layer(counting_handler(&calls));

    std::future::poll_fn(|cx| service.poll_ready(cx)).await.unwrap();
    let response = service.call(authorized(Method::GET, &key));
    assert_eq!(backend.calls("find_by_hash"), 1, "a hit: the backend is not read again");
    assert_eq!(writes(), 1, "the hit was judged at once and the write issued");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the request waits for the write");
    let mut response = tokio_test::task::spawn(response);
    tokio_test::assert_pending!(response.poll());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    gate.open();
    let response = tokio_test::assert_ready_ok!(response.poll());
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), id);
    assert_eq!(writes(), 1);
    let stored = memory.find_by_id(&id).await.unwrap().unwrap();
    assert_eq!(stored.last_used_at, Some(clock.now()), "the write reached the store");
}

// ----- failed authentications per client address -----

const FLOOD_BODY: &str = r#"{"error":{"code":"RATE_LIMITED","message":"Too many failed authentications from this address. Retry after 60 seconds.","retry_after":60}}"#;

/// A request from `ip` with `key` as its bearer token.
fn from_ip(ip: &str, key: &str) -> Request<Full<Bytes>> {
    let mut request = authorized(Method::GET, key);
    request.extensions_mut().insert(ClientIp::new(ip.parse().unwrap()));
    request
}

async fn status_and_retry_after<Svc>(
    service: Svc,
    request: Request<Full<Bytes>>,
) -> (StatusCode, Option<String>, String)
where
    Svc: Service<Request<Full<Bytes>>, Response = Response<ResponseBody<Full<Bytes>>>, Error = Infallible>,
{
    let response = service.oneshot(request).await.unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .map(|value| value.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, retry_after, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn an_address_past_its_failure_limit_is_429_before_any_lookup_even_with_a_good_key() {
    let fixture = Fixture::new();
    let (_, good) = fixture.key(KeyKind::Production).await;
    let service = fixture.service(fixture.layer().limit_failures(FailedAuthLimit::default()));
    let attacker = "203.0.113.7";
    for _ in 0..20 {
        let (status, retry_after, body) =
            status_and_retry_after(service.clone(), from_ip(attacker, "tg_live_nope")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(retry_after, None);
        assert_eq!(body, INVALID_KEY_BODY);
    }
    assert_eq!(fixture.lookups(), 20);

    let (status, retry_after, body) = status_and_retry_after(service.clone(), from_ip(attacker, "tg_live_nope")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after.as_deref(), Some("60"));
    assert_eq!(body, FLOOD_BODY);
    let (status, _, _) = status_and_retry_after(service.clone(), from_ip(attacker, &good)).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "a good key from a flooding address waits too"
    );
    assert_eq!(fixture.lookups(), 20, "no lookup for a limited address");
    assert_eq!(fixture.calls(), 0);

    // Another address is unaffected.
    let (status, _, _) = status_and_retry_after(service.clone(), from_ip("203.0.113.8", &good)).await;
    assert_eq!(status, StatusCode::OK);

    fixture.clock.advance(Duration::from_secs(59));
    let (status, retry_after, _) = status_and_retry_after(service.clone(), from_ip(attacker, &good)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after.as_deref(), Some("1"));
    fixture.clock.advance(Duration::from_secs(1));
    let (status, _, _) = status_and_retry_after(service.clone(), from_ip(attacker, &good)).await;
    assert_eq!(status, StatusCode::OK, "the window has passed");
}

#[tokio::test]
async fn every_401_counts_and_403s_503s_and_requests_without_an_address_do_not() {
    let fixture = Fixture::new();
    let (_, read_only) = fixture.key(KeyKind::ReadOnly).await;
    let limit = FailedAuthLimit::per_minute(3);
    let layer = fixture
        .layer()
        .limit_failures(limit.clone())
        .require_checksum(KeyFormat::default());
    let service = fixture.service(layer.clone());
    let ip = "198.51.100.1";

    // 403s (a read-only key writing) and 503s (a store outage) are not counted.
    for _ in 0..5 {
        let mut request = authorized(Method::POST, &read_only);
        request.extensions_mut().insert(ClientIp::new(ip.parse().unwrap()));
        let (status, _, _) = status_and_retry_after(service.clone(), request).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let outage = FakeStore::new(MemoryKeyStore::new());
    outage.fail("find_by_hash");
    let down = fixture.service(
        BearerAuthLayer::new(outage)
            .clock(fixture.clock.clone())
            .limit_failures(limit.clone()),
    );
    for _ in 0..5 {
        let (status, _, _) = status_and_retry_after(down.clone(), from_ip(ip, &read_only)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(limit.tracked(), 0);

    // Without a ClientIp nothing is counted.
    for _ in 0..5 {
        let reply = fixture.send_with(layer.clone(), Method::GET, None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(limit.tracked(), 0);

    // A missing header, a malformed one, a bad checksum: three 401s.
    let mut missing = from_ip(ip, "x");
    missing.headers_mut().remove(AUTHORIZATION);
    let mut malformed = from_ip(ip, "x");
    malformed
        .headers_mut()
        .insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
    for request in [
        missing,
        malformed,
        from_ip(ip, "tg_live_000000000000000000000000000000XXXXXX"),
    ] {
        let (status, _, _) = status_and_retry_after(service.clone(), request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, _) = status_and_retry_after(service.clone(), from_ip(ip, &read_only)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn revoked_and_expired_keys_count_as_failures() {
    let fixture = Fixture::new();
    let (revoked_id, revoked) = fixture.key(KeyKind::Production).await;
    fixture.keys.revoke("acct_1", &revoked_id).await.expect("revoke");
    let created = fixture
        .keys
        .create(NewKey::new("acct_1", KeyKind::Production).expires_at(fixture.clock.now() + Duration::from_secs(1)))
        .await
        .expect("create");
    fixture.clock.advance(Duration::from_secs(2));
    let expired = created.secret.expose_secret().to_owned();
    let limit = FailedAuthLimit::per_minute(2);
    let service = fixture.service(fixture.layer().limit_failures(limit));
    for key in [&revoked, &expired] {
        let (status, _, _) = status_and_retry_after(service.clone(), from_ip("192.0.2.9", key)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, _) = status_and_retry_after(service.clone(), from_ip("192.0.2.9", &revoked)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn ipv6_addresses_in_one_64_share_a_count_and_other_64s_do_not() {
    let fixture = Fixture::new();
    let (_, good) = fixture.key(KeyKind::Production).await;
    let service = fixture.service(fixture.layer().limit_failures(FailedAuthLimit::per_minute(20)));
    for host in 0..20 {
        let (status, _, _) =
            status_and_retry_after(service.clone(), from_ip(&format!("2001:db8:1:2::{host:x}"), "bad")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, _) = status_and_retry_after(service.clone(), from_ip("2001:db8:1:2:ffff::1", &good)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the same /64");
    let (status, _, _) = status_and_retry_after(service.clone(), from_ip("2001:db8:1:3::1", &good)).await;
    assert_eq!(status, StatusCode::OK, "another /64");
}

#[tokio::test]
async fn the_failure_map_stays_within_its_capacity_under_spoofed_addresses() {
    let fixture = Fixture::new();
    let limit = FailedAuthLimit::per_minute(20).capacity(100);
    let service = fixture.service(fixture.layer().limit_failures(limit.clone()));
    for n in 0u32..1_000 {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + n).to_string();
        let (status, _, _) = status_and_retry_after(service.clone(), from_ip(&ip, "bad")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(limit.tracked() <= 100);
    }
    assert_eq!(limit.tracked(), 100);
    // Once the windows end, new addresses are tracked again.
    fixture.clock.advance(Duration::from_secs(60));
    let (status, _, _) = status_and_retry_after(service.clone(), from_ip("192.0.2.1", "bad")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(limit.tracked(), 1);
}
