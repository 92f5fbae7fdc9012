//! The single-node service as a process on a SQLite file: what a restart
//! (SIGTERM, or `kill -9`) keeps.

mod support;

use support::{Server, TempDir, MESSAGE};

fn create_key(server: &Server, admin: &str, label: &str) -> (String, String) {
    let body = format!(r#"{{"label":"{label}","type":"production"}}"#);
    let created = server.call("POST", "/v1/keys", admin, Some(&body));
    assert_eq!(created.status, 201, "{}", created.body);
    let json = created.json();
    (
        json["id"].as_str().unwrap().to_owned(),
        json["key"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn a_restart_keeps_keys_revocations_messages_and_idempotency_records() {
    let dir = TempDir::new("restart");
    let database = dir.file("api.db");
    let args = ["--database", database.as_str()];

    let first = Server::start(&args, &[]);
    let admin = first.bootstrap_key().expect("a fresh database prints a bootstrap key");
    let (_, kept) = create_key(&first, &admin, "kept");
    let (revoked_id, revoked) = create_key(&first, &admin, "revoked");
    assert_eq!(
        first
            .call("DELETE", &format!("/v1/keys/{revoked_id}"), &admin, None)
            .status,
        204
    );
    assert_eq!(first.call("GET", "/v1/keys", &revoked, None).status, 401);
    let request_id = [("X-Request-ID", "9b2f4c1e-restart-test")];
    let sent = first.call_with("POST", "/v1/messages", &kept, Some(MESSAGE), &request_id);
    assert_eq!(sent.status, 201, "{}", sent.body);
    let message_id = sent.json()["id"].as_str().unwrap().to_owned();
    assert!(first.terminate().success(), "SIGTERM is a clean exit");

    let second = Server::start(&args, &[]);
    assert_eq!(second.bootstrap_key(), None, "a restart prints no new key");
    assert_eq!(second.call("GET", "/v1/keys", &admin, None).status, 200);
    assert_eq!(second.call("GET", "/v1/keys", &kept, None).status, 200);
    let refused = second.call("GET", "/v1/keys", &revoked, None);
    assert_eq!(refused.status, 401, "{}", refused.body);
    let read = second.call("GET", &format!("/v1/messages/{message_id}"), &kept, None);
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json()["text"]["body"], "Hello");
    assert_eq!(read.json()["status"], "sent");
    let replayed = second.call_with("POST", "/v1/messages", &kept, Some(MESSAGE), &request_id);
    assert_eq!(replayed.status, 201, "{}", replayed.body);
    assert_eq!(
        replayed.json()["id"],
        message_id.as_str(),
        "the same X-Request-ID replays the first answer"
    );

    // A key created just before `kill -9` survives it: the write was
    // acknowledged only once committed.
    let (_, last) = create_key(&second, &admin, "just before kill -9");
    let sent = second.call("POST", "/v1/messages", &last, Some(MESSAGE));
    assert_eq!(sent.status, 201);
    let last_message = sent.json()["id"].as_str().unwrap().to_owned();
    second.kill();

    let third = Server::start(&args, &[]);
    assert_eq!(third.bootstrap_key(), None);
    assert_eq!(third.call("GET", "/v1/keys", &last, None).status, 200);
    assert_eq!(
        third
            .call("GET", &format!("/v1/messages/{last_message}"), &last, None)
            .status,
        200
    );
    assert_eq!(third.call("GET", "/v1/keys", &revoked, None).status, 401);
}

#[test]
fn a_restart_does_not_hand_out_a_fresh_daily_quota() {
    let dir = TempDir::new("quota");
    let database = dir.file("api.db");
    let config = dir.file("config.toml");
    std::fs::write(
        &config,
        "[plans.tiny]\nper_second = 100\ndaily = 3\n[[accounts]]\nid = \"acct_demo\"\nplan = \"tiny\"\n",
    )
    .unwrap();
    let args = ["--database", database.as_str(), "--config", config.as_str()];
    let first = Server::start(&args, &[]);
    let key = first.bootstrap_key().unwrap();
    for _ in 0..2 {
        assert_eq!(first.call("GET", "/v1/keys", &key, None).status, 200);
    }
    assert!(first.terminate().success());

    let second = Server::start(&args, &[]);
    assert_eq!(
        second.call("GET", "/v1/keys", &key, None).status,
        200,
        "the third of three"
    );
    let refused = second.call("GET", "/v1/keys", &key, None);
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.json()["error"]["code"], "RATE_LIMITED");
}

#[test]
fn help_lists_every_flag_with_its_variable_and_exits_0() {
    let output = std::process::Command::new(support::BINARY)
        .arg("--help")
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for (flag, variable) in [
        ("--listen", "LISTEN_ADDR"),
        ("--database", "DATABASE_URL"),
        ("--redis", "REDIS_URL"),
        ("--config", "MESSAGING_API_CONFIG"),
        ("--allow-private-webhook-urls", "ALLOW_PRIVATE_WEBHOOK_URLS"),
        ("--header-read-timeout-secs", "HEADER_READ_TIMEOUT_SECS"),
        ("--max-body-bytes", "MAX_BODY_BYTES"),
    ] {
        assert!(
            help.contains(flag) && help.contains(&format!("[env: {variable}")),
            "{flag}: {help}"
        );
    }
    assert!(help.contains("[default: ./messaging-api.db]"), "{help}");
}

#[test]
fn an_oversize_body_is_413_and_a_slow_header_is_cut_off() {
    let dir = TempDir::new("limits");
    let database = dir.file("api.db");
    let server = Server::start(
        &[
            "--database",
            database.as_str(),
            "--max-body-bytes",
            "1024",
            "--header-read-timeout-secs",
            "1",
        ],
        &[],
    );
    let key = server.bootstrap_key().unwrap();
    let big = format!(
        r#"{{"to":"+15551234567","type":"text","text":{{"body":"{}"}}}}"#,
        "x".repeat(2000)
    );
    let refused = server.call("POST", "/v1/messages", &key, Some(&big));
    assert_eq!(refused.status, 413, "{}", refused.body);
    assert_eq!(refused.json()["error"]["code"], "PAYLOAD_TOO_LARGE");
    assert_eq!(server.call("POST", "/v1/messages", &key, Some(MESSAGE)).status, 201);

    // Half a request head, then nothing: the connection is closed after
    // the header read timeout, not held open.
    use std::io::{Read, Write};
    let mut slow = std::net::TcpStream::connect(server.addr).unwrap();
    slow.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(900) && waited < std::time::Duration::from_secs(5),
        "closed after {waited:?}"
    );
}

#[test]
fn sigterm_lets_a_request_in_flight_finish_and_refuses_new_connections() {
    use std::io::{Read, Write};
    let dir = TempDir::new("drain");
    let database = dir.file("api.db");
    let args = ["--database", database.as_str()];
    let server = Server::start(&args, &[]);
    let key = server.bootstrap_key().unwrap();
    let addr = server.addr;

    // A request whose body is half sent when SIGTERM arrives.
    let mut in_flight = std::net::TcpStream::connect(addr).unwrap();
    in_flight
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        MESSAGE.len()
    );
    in_flight.write_all(head.as_bytes()).unwrap();
    in_flight.write_all(&MESSAGE.as_bytes()[..10]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    server.signal_term();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "a stopping server accepts no new connection"
    );
    in_flight.write_all(&MESSAGE.as_bytes()[10..]).unwrap();
    let mut raw = Vec::new();
    let _ = in_flight.read_to_end(&mut raw);
    let answered = support::parse(&raw);
    assert_eq!(answered.status, 201, "{}", answered.body);
    let id = answered.json()["id"].as_str().unwrap().to_owned();
    assert!(server.wait().success());

    let again = Server::start(&args, &[]);
    assert_eq!(again.call("GET", &format!("/v1/messages/{id}"), &key, None).status, 200);
}
