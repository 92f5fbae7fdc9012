//! WebhookSignatureLayer and the X-Webhook-URL guard through a real axum
//! server on a loopback socket: the handler echoes the exact bytes it was
//! given, so these tests prove the body reaches it unchanged.

mod support;

use std::time::Duration;

use axum::extract::Extension;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::Full;
use support::{TestResponse, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_core::replay::MemoryReplayStore;
use tollgate_core::ManualClock;
use tollgate_webhook::url_guard::{WebhookUrlGuard, WebhookUrlOverride};
use tollgate_webhook::{Scheme, Signer, VerifiedWebhook, Verifier, WebhookSignatureLayer};

const NOW: u64 = 1_700_000_000;
const NEW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OLD_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const LIMIT: usize = 64 * 1024;

// Echoes the body, and says which message and secret the layer verified.
async fn echo(Extension(verified): Extension<VerifiedWebhook>, body: Bytes) -> (HeaderMap, Bytes) {
    let mut headers = HeaderMap::new();
    headers.insert("x-message-id", verified.message_id().unwrap_or("").parse().unwrap());
    headers.insert("x-secret-index", verified.secret_index().into());
    (headers, body)
}

async fn send_message(WebhookUrlOverride(url): WebhookUrlOverride) -> String {
    url.map(|url| url.to_string()).unwrap_or_else(|| "default".to_owned())
}

async fn server(clock: &ManualClock) -> TestServer {
    let verifier = Verifier::with_secrets(Scheme::standard_webhooks(), [NEW_SECRET, OLD_SECRET]).unwrap();
    let webhooks = Router::new().route("/webhooks", post(echo)).layer(
        WebhookSignatureLayer::new(verifier)
            .clock(clock.clone())
            .max_body_size(LIMIT)
            .replay_store(MemoryReplayStore::new().with_clock(clock.clone())),
    );
    let api = Router::new()
        .route("/v1/messages", post(send_message))
        .layer(Extension(WebhookUrlGuard::new()));
    TestServer::start(webhooks.merge(api)).await
}

async fn deliver(server: &TestServer, headers: &HeaderMap, body: impl Into<Bytes>) -> TestResponse {
    let mut request = server
        .request("POST", "/webhooks")
        .body(Full::new(body.into()))
        .unwrap();
    request.headers_mut().extend(headers.clone());
    server.send(request).await
}

// A delivery's head alone, announcing a body of `content_length` bytes that
// is never sent: the answer must come from the head, before any of the
// body. (Sending the body too races the server's close of a connection it
// will not read: the client then fails writing and never sees the answer.)
async fn announce(server: &TestServer, headers: &HeaderMap, content_length: usize) -> TestResponse {
    let mut head = format!(
        "POST /webhooks HTTP/1.1\r\nhost: {}\r\ncontent-length: {content_length}\r\n",
        server.addr
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    head.push_str("\r\n");
    let mut connection = TcpStream::connect(server.addr).await.unwrap();
    connection.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let read = connection.read_to_end(&mut response);
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the server answers and closes the connection")
        .unwrap();
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole response head");
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|line| line.split_once(": ").unwrap())
        .map(|(name, value)| (name.parse().unwrap(), value.parse().unwrap()))
        .collect();
    TestResponse {
        status: StatusCode::from_u16(status).unwrap(),
        headers,
        body: Bytes::from(body.to_owned()),
    }
}

fn signed(secret: &str, body: &[u8], timestamp: u64, id: &str) -> HeaderMap {
    Signer::new(Scheme::standard_webhooks(), secret)
        .unwrap()
        .sign(body, timestamp, id)
        .unwrap()
}

fn assert_refused(response: &TestResponse, status: StatusCode, code: &str) {
    assert_eq!(response.status, status, "{}", String::from_utf8_lossy(&response.body));
    assert_eq!(response.header("content-type"), "application/json");
    assert_eq!(response.json()["error"]["code"], code, "{}", response.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_delivery_reaches_the_handler_byte_for_byte() {
    let clock = ManualClock::at_unix_secs(NOW);
    let server = server(&clock).await;
    // Not UTF-8, and with bytes a text round-trip would mangle.
    let body: Vec<u8> = vec![0xff, 0xfe, 0x00, b'{', 0x80, b'\r', b'\n', 0xc3];
    let response = deliver(&server, &signed(NEW_SECRET, &body, NOW, "msg_binary"), body.clone()).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body, body);
    assert_eq!(response.header("x-message-id"), "msg_binary");
    assert_eq!(response.header("x-secret-index"), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_delivery_is_refused_with_a_json_401() {
    let clock = ManualClock::at_unix_secs(NOW);
    let server = server(&clock).await;
    let headers = signed(NEW_SECRET, br#"{"amount":100}"#, NOW, "msg_tampered");
    let response = deliver(&server, &headers, &br#"{"amount":900}"#[..]).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert_eq!(response.header("content-type"), "application/json");
    assert_eq!(
        response.text(),
        r#"{"error":{"code":"INVALID_SIGNATURE","message":"The webhook signature is invalid."}}"#
    );
    // The refusal did not burn the id: the genuine message still gets in.
    let genuine = deliver(&server, &headers, &br#"{"amount":100}"#[..]).await;
    assert_eq!(genuine.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_secret_still_verifies_during_a_rotation() {
    let clock = ManualClock::at_unix_secs(NOW);
    let server = server(&clock).await;
    let response = deliver(&server, &signed(OLD_SECRET, b"{}", NOW, "msg_old"), &b"{}"[..]).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("x-secret-index"), "1");
    let unknown = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let response = deliver(&server, &signed(unknown, b"{}", NOW, "msg_unknown"), &b"{}"[..]).await;
    assert_refused(&response, StatusCode::UNAUTHORIZED, "INVALID_SIGNATURE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_future_replayed_oversized_and_unsigned_deliveries_are_refused() {
    let clock = ManualClock::at_unix_secs(NOW);
    let server = server(&clock).await;

    let stale = signed(NEW_SECRET, b"{}", NOW - 301, "msg_stale");
    assert_refused(
        &deliver(&server, &stale, &b"{}"[..]).await,
        StatusCode::UNAUTHORIZED,
        "TIMESTAMP_OUT_OF_TOLERANCE",
    );
    let future = signed(NEW_SECRET, b"{}", NOW + 301, "msg_future");
    assert_refused(
        &deliver(&server, &future, &b"{}"[..]).await,
        StatusCode::UNAUTHORIZED,
        "TIMESTAMP_OUT_OF_TOLERANCE",
    );

    let once = signed(NEW_SECRET, b"{}", NOW, "msg_once");
    assert_eq!(deliver(&server, &once, &b"{}"[..]).await.status, StatusCode::OK);
    clock.advance(Duration::from_secs(60));
    assert_refused(
        &deliver(&server, &once, &b"{}"[..]).await,
        StatusCode::UNAUTHORIZED,
        "REPLAYED",
    );

    let big = vec![b'x'; LIMIT + 1];
    let oversized = signed(NEW_SECRET, &big, NOW + 60, "msg_big");
    let response = announce(&server, &oversized, big.len()).await;
    assert_refused(&response, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    assert_eq!(response.json()["error"]["limit"], LIMIT);

    let response = deliver(&server, &HeaderMap::new(), &b"{}"[..]).await;
    assert_refused(&response, StatusCode::UNAUTHORIZED, "MISSING_SIGNATURE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_of_one_delivery_are_accepted_once() {
    let clock = ManualClock::at_unix_secs(NOW);
    let server = std::sync::Arc::new(server(&clock).await);
    let headers = signed(NEW_SECRET, b"{\"n\":1}", NOW, "msg_race");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let server = server.clone();
            let headers = headers.clone();
            tokio::spawn(async move { deliver(&server, &headers, &b"{\"n\":1}"[..]).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        let response = task.await.unwrap();
        if response.status != StatusCode::OK {
            assert_refused(&response, StatusCode::UNAUTHORIZED, "REPLAYED");
        }
        statuses.push(response.status);
    }
    assert_eq!(
        statuses.iter().filter(|status| **status == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_url_override_is_guarded() {
    let clock = ManualClock::at_unix_secs(NOW);
    let server = server(&clock).await;
    let send = |url: Option<&'static str>| {
        let mut request = server.request("POST", "/v1/messages");
        if let Some(url) = url {
            request = request.header("x-webhook-url", url);
        }
        server.send_empty(request)
    };
    assert_eq!(send(None).await.text(), "default");
    let accepted = send(Some("https://Hooks.Example.com/status")).await;
    assert_eq!(accepted.status, StatusCode::OK);
    assert_eq!(accepted.text(), "https://hooks.example.com/status");
    for hostile in [
        "http://hooks.example.com/",
        "https://127.0.0.1/",
        "https://2130706433/",
        "https://[::ffff:169.254.169.254]/latest/meta-data/",
        "https://good.com@10.0.0.1/",
        "https://localhost./",
    ] {
        let response = send(Some(hostile)).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{hostile}");
        assert_eq!(response.json()["error"]["code"], "INVALID_WEBHOOK_URL", "{hostile}");
    }
}
