//! The grpc-messaging example over real HTTP/2 on a loopback socket: the
//! tonic server with every layer, in process, with in-memory stores on a
//! manual clock, called with the generated tonic client.

mod support;

use std::time::Duration;

use grpc_messaging::pb::messaging_client::MessagingClient;
use grpc_messaging::pb::{GetMessageRequest, Message, SendMessageRequest};
use grpc_messaging::status_details::retry_delay;
use grpc_messaging::{bootstrap_key, serve, AppState};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tollgate_auth::NewKey;
use tollgate_core::{KeyKind, ManualClock};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// 2026-11-30T09:33:19Z.
const NOW: u64 = 1_796_031_199;

/// The example served on 127.0.0.1 on a free port.
struct Server {
    state: AppState,
    clock: ManualClock,
    /// The bootstrap key: `acct_demo`, production, Free plan.
    key: String,
    client: MessagingClient<Channel>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start() -> Server {
        let clock = ManualClock::at_unix_secs(NOW);
        let state = AppState::new(clock.clone());
        let key = bootstrap_key(&state, None).await.expect("a bootstrap key");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn({
            let state = state.clone();
            async move { serve(listener, state).await.expect("server runs") }
        });
        // The socket is already listening: the connection waits in its backlog.
        let client = MessagingClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        Server {
            state,
            clock,
            key,
            client,
            task,
        }
    }

    /// A new key of `kind` for `account`, on the Free plan.
    async fn key(&self, account: &str, kind: KeyKind) -> String {
        let created = self
            .state
            .keys()
            .create(NewKey::new(account, kind).plan("free"))
            .await
            .expect("a new key");
        created.secret.expose_secret().to_owned()
    }

    async fn send(&self, key: Option<&str>, request_id: Option<&str>, to: &str, text: &str) -> Result<Message, Status> {
        self.send_full(key, request_id, to, text)
            .await
            .map(tonic::Response::into_inner)
    }

    async fn send_full(
        &self,
        key: Option<&str>,
        request_id: Option<&str>,
        to: &str,
        text: &str,
    ) -> Result<tonic::Response<Message>, Status> {
        let mut request = Request::new(SendMessageRequest {
            to: to.into(),
            text: text.into(),
        });
        authorize(&mut request, key);
        if let Some(id) = request_id {
            request.metadata_mut().insert("x-request-id", id.parse().unwrap());
        }
        self.client.clone().send_message(request).await
    }

    async fn get(&self, key: Option<&str>, id: &str) -> Result<Message, Status> {
        let mut request = Request::new(GetMessageRequest { id: id.into() });
        authorize(&mut request, key);
        self.client
            .clone()
            .get_message(request)
            .await
            .map(tonic::Response::into_inner)
    }
}

fn authorize<T>(request: &mut Request<T>, key: Option<&str>) {
    if let Some(key) = key {
        let value = format!("Bearer {key}").parse().expect("a valid header value");
        request.metadata_mut().insert("authorization", value);
    }
}

const TO: &str = "+15551234567";

#[tokio::test]
async fn a_valid_key_sends_a_message_and_reads_it_back() {
    let server = Server::start().await;
    let sent = server
        .send_full(Some(&server.key), None, TO, "Hello")
        .await
        .expect("SendMessage OK");
    assert_eq!(
        sent.metadata().get("ratelimit-policy").expect("rate-limit metadata"),
        r#""per-second";q=10;w=1, "daily";q=1000;w=86400"#
    );
    let sent = sent.into_inner();
    assert!(sent.id.starts_with("msg_") && sent.id.len() == 28, "{}", sent.id);
    assert_eq!(
        (sent.status.as_str(), sent.to.as_str(), sent.text.as_str(), sent.sandbox),
        ("queued", TO, "Hello", false)
    );
    assert_eq!(sent.created_at, "2026-11-30T09:33:19Z");

    let read = server.get(Some(&server.key), &sent.id).await.expect("GetMessage OK");
    assert_eq!(read, sent);
    assert_eq!(server.state.messages().len(), 1);
}

#[tokio::test]
async fn missing_and_invalid_keys_are_unauthenticated() {
    let server = Server::start().await;
    let missing = server.send(None, None, TO, "Hello").await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert_eq!(
        missing.message(),
        "Missing API key. Send it in the Authorization header: Bearer YOUR_API_KEY."
    );
    assert_eq!(missing.metadata().get("www-authenticate").unwrap(), "Bearer");

    let garbage = server
        .send(Some("tg_live_notarealkey000000000000000000"), None, TO, "Hello")
        .await
        .unwrap_err();
    assert_eq!(garbage.code(), Code::Unauthenticated);
    assert_eq!(garbage.message(), "Invalid API key.");
    assert_eq!(
        server.get(Some("garbage"), "msg_1").await.unwrap_err().code(),
        Code::Unauthenticated
    );

    let revoked = server
        .state
        .keys()
        .create(NewKey::new("acct_demo", KeyKind::Production))
        .await
        .unwrap();
    server.state.keys().revoke("acct_demo", &revoked.info.id).await.unwrap();
    let status = server
        .send(Some(revoked.secret.expose_secret()), None, TO, "Hello")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(server.state.messages().is_empty(), "no call reached the service");
}

#[tokio::test]
async fn read_only_keys_may_read_but_not_send() {
    let server = Server::start().await;
    let sent = server.send(Some(&server.key), None, TO, "Hello").await.unwrap();
    let read_only = server.key("acct_demo", KeyKind::ReadOnly).await;

    let refused = server.send(Some(&read_only), None, TO, "Hello").await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(
        refused.message(),
        "This API key does not have the permission this request requires."
    );
    assert_eq!(
        refused.metadata().get("www-authenticate").unwrap(),
        r#"Bearer error="insufficient_scope""#
    );
    assert_eq!(server.get(Some(&read_only), &sent.id).await.unwrap(), sent);
    assert_eq!(server.state.messages().len(), 1);
}

#[tokio::test]
async fn sandbox_messages_stay_in_the_sandbox_and_accounts_stay_apart() {
    let server = Server::start().await;
    let sandbox = server.key("acct_demo", KeyKind::Sandbox).await;
    let other_account = server.key("acct_other", KeyKind::Production).await;

    let test_message = server.send(Some(&sandbox), None, TO, "Test").await.unwrap();
    assert!(test_message.sandbox);
    assert_eq!(
        server.get(Some(&sandbox), &test_message.id).await.unwrap(),
        test_message
    );
    let live = server.send(Some(&server.key), None, TO, "Live").await.unwrap();
    assert!(!live.sandbox);

    for (key, id) in [
        (&server.key, &test_message.id),
        (&sandbox, &live.id),
        (&other_account, &live.id),
        (&other_account, &test_message.id),
    ] {
        let status = server.get(Some(key), id).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{id}");
        assert_eq!(status.message(), format!("Message {id:?} not found."));
    }
    assert_eq!(
        server.get(Some(&server.key), "msg_nope").await.unwrap_err().code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn invalid_messages_are_invalid_argument() {
    let server = Server::start().await;
    for (to, text, message) in [
        (
            "5551234567",
            "Hello",
            r#""to" must be an E.164 number such as +15551234567, not "5551234567""#,
        ),
        (
            "+0123456789",
            "Hello",
            r#""to" must be an E.164 number such as +15551234567, not "+0123456789""#,
        ),
        (TO, "  ", r#""text.body" must not be empty"#),
    ] {
        let status = server.send(Some(&server.key), None, to, text).await.unwrap_err();
        assert_eq!((status.code(), status.message()), (Code::InvalidArgument, message));
    }
    assert!(server.state.messages().is_empty());
}

#[tokio::test]
async fn the_eleventh_call_in_a_second_on_a_free_key_is_resource_exhausted() {
    let server = Server::start().await;
    let key = server.key("acct_demo", KeyKind::Production).await;
    for call in 1..=10 {
        server
            .send(Some(&key), None, TO, &format!("call {call}"))
            .await
            .unwrap_or_else(|status| panic!("call {call}: {status:?}"));
    }
    let limited = server.send(Some(&key), None, TO, "call 11").await.unwrap_err();
    assert_eq!(limited.code(), Code::ResourceExhausted);
    assert_eq!(limited.message(), "Rate limit exceeded. Retry after 1 second.");
    assert_eq!(
        limited.metadata().get("retry-after").expect("retry-after metadata"),
        "1"
    );
    assert_eq!(
        retry_delay(limited.details()),
        Some(Duration::from_secs(1)),
        "a google.rpc.RetryInfo in grpc-status-details-bin"
    );
    assert_eq!(server.state.messages().len(), 10, "the refused call sent nothing");
    // Other keys have their own limits.
    server.send(Some(&server.key), None, TO, "other key").await.unwrap();

    server.clock.advance(Duration::from_millis(100));
    server.send(Some(&key), None, TO, "one token later").await.unwrap();
    assert_eq!(
        server.send(Some(&key), None, TO, "too soon").await.unwrap_err().code(),
        Code::ResourceExhausted
    );
}

#[tokio::test]
async fn the_same_request_id_sends_once_and_replays_the_message() {
    let server = Server::start().await;
    let id = "5a1b2c3d-0000-4000-8000-000000000001";
    let first = server
        .send_full(Some(&server.key), Some(id), TO, "Hello")
        .await
        .unwrap();
    assert!(first.metadata().get("idempotent-replayed").is_none());
    let retry = server
        .send_full(Some(&server.key), Some(id), TO, "Hello")
        .await
        .unwrap();
    assert_eq!(retry.metadata().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(retry.get_ref(), first.get_ref(), "the same message, id included");
    assert_eq!(server.state.messages().len(), 1, "the handler ran once");

    let reused = server
        .send(Some(&server.key), Some(id), TO, "Goodbye")
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::InvalidArgument);
    assert_eq!(
        reused.message(),
        "This idempotency key was already used with a different request (method, path or body)."
    );
    assert_eq!(server.state.messages().len(), 1, "no second message");

    // Another account's identical id is its own call.
    let other = server.key("acct_other", KeyKind::Production).await;
    let theirs = server.send(Some(&other), Some(id), TO, "Hello").await.unwrap();
    assert_ne!(theirs.id, first.get_ref().id);
    // Without an id, every call sends.
    let a = server.send(Some(&server.key), None, TO, "Hello").await.unwrap();
    let b = server.send(Some(&server.key), None, TO, "Hello").await.unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!(server.state.messages().len(), 4);

    // GetMessage is not deduplicated: an id on it changes nothing.
    let mut get = Request::new(GetMessageRequest { id: a.id.clone() });
    authorize(&mut get, Some(&server.key));
    get.metadata_mut().insert("x-request-id", id.parse().unwrap());
    let read = server.client.clone().get_message(get).await.unwrap();
    assert!(read.metadata().get("idempotent-replayed").is_none());
    assert_eq!(read.into_inner(), a);
}
