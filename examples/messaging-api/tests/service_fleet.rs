//! Two instances on one PostgreSQL database (fresh per test) and Redis
//! (their own prefix), as processes; and one instance behind a TCP proxy
//! to a PostgreSQL server the test cuts and restores.

mod support;

use std::time::{Duration, Instant};

use support::{postgres_url, redis_url, Proxy, Receiver, Server, TempDir, TestDatabase, MESSAGE, SECRETS_KEY};

fn webhook_config(dir: &TempDir) -> String {
    let path = dir.file("config.toml");
    std::fs::write(
        &path,
        "[webhooks]\nmax_attempts = 20\ninitial_backoff_ms = 100\ntimeout_ms = 500\n",
    )
    .unwrap();
    path
}

fn events_of<'a>(events: &'a [(String, serde_json::Value)], message: &str) -> Vec<&'a (String, serde_json::Value)> {
    events
        .iter()
        .filter(|(_, body)| body["data"]["id"] == message)
        .collect()
}

#[test]
fn two_instances_share_messages_webhooks_keys_and_pending_deliveries() {
    let (Some(admin_url), Some(redis)) = (postgres_url("fleet"), redis_url("fleet")) else {
        return;
    };
    let database = TestDatabase::create(&admin_url, "fleet");
    let dir = TempDir::new("fleet");
    let config = webhook_config(&dir);
    let prefix = format!("svc-fleet-{}:", std::process::id());
    let args = [
        "--database",
        database.url.as_str(),
        "--redis",
        redis.as_str(),
        "--redis-prefix",
        prefix.as_str(),
        "--config",
        config.as_str(),
        "--allow-private-webhook-urls",
    ];
    let env = [("SECRETS_KEY", SECRETS_KEY)];
    let a = Server::start(&args, &env);
    let admin = a.bootstrap_key().expect("the first instance creates the key");
    let b = Server::start(&args, &env);
    assert_eq!(b.bootstrap_key(), None, "the second finds it in the database");
    assert_eq!(b.call("GET", "/v1/keys", &admin, None).status, 200);

    // A message sent through A is readable through B.
    let sent = a.call("POST", "/v1/messages", &admin, Some(MESSAGE));
    assert_eq!(sent.status, 201, "{}", sent.body);
    let id = sent.json()["id"].as_str().unwrap().to_owned();
    let read = b.call("GET", &format!("/v1/messages/{id}"), &admin, None);
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json()["to"], "+15551234567");

    // A webhook set through A receives the events of B's messages.
    let receiver = Receiver::start();
    let set = a.call(
        "PUT",
        "/v1/webhooks",
        &admin,
        Some(&format!(r#"{{"url":"{}"}}"#, receiver.url())),
    );
    assert_eq!(set.status, 200, "{}", set.body);
    let sent = b.call("POST", "/v1/messages", &admin, Some(MESSAGE));
    assert_eq!(sent.status, 201);
    let via_b = sent.json()["id"].as_str().unwrap().to_owned();
    let events = receiver.wait_for("B's two events", |events| events_of(events, &via_b).len() >= 2);
    let mine = events_of(&events, &via_b);
    assert_eq!(mine[0].1["data"]["status"], "queued");
    assert_eq!(mine[1].1["data"]["status"], "sent");
    assert!(mine.iter().all(|(id, _)| id.starts_with("evt_")));
    assert_ne!(mine[0].0, mine[1].0, "each event has its own id");

    // Revocation through A is refused by B within 100 ms (pushed invalidation).
    let created = a.call(
        "POST",
        "/v1/keys",
        &admin,
        Some(r#"{"label":"short-lived","type":"production"}"#),
    );
    assert_eq!(created.status, 201);
    let (key_id, key) = (
        created.json()["id"].as_str().unwrap().to_owned(),
        created.json()["key"].as_str().unwrap().to_owned(),
    );
    assert_eq!(
        b.call("GET", "/v1/keys", &key, None).status,
        200,
        "B has looked it up (and cached it)"
    );
    assert_eq!(
        a.call("DELETE", &format!("/v1/keys/{key_id}"), &admin, None).status,
        204
    );
    let revoked = Instant::now();
    loop {
        let status = b.call("GET", "/v1/keys", &key, None).status;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            revoked.elapsed() < Duration::from_secs(2),
            "B still accepts a revoked key"
        );
    }
    let took = revoked.elapsed();
    assert!(
        took <= Duration::from_millis(100),
        "B refused the revoked key after {took:?}"
    );

    // Usage read through B counts the key's requests through both.
    let created = a.call(
        "POST",
        "/v1/keys",
        &admin,
        Some(r#"{"label":"counted","type":"production"}"#),
    );
    let (counted_id, counted) = (
        created.json()["id"].as_str().unwrap().to_owned(),
        created.json()["key"].as_str().unwrap().to_owned(),
    );
    for server in [&a, &a, &a, &b, &b] {
        assert_eq!(server.call("GET", "/v1/keys", &counted, None).status, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let usage = b.call("GET", "/v1/usage", &admin, None).json();
        let requests = usage["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|key| key["key_id"] == counted_id.as_str())
            .map_or(0, |key| key["requests"].as_u64().unwrap());
        assert!(requests <= 5, "{usage}");
        if requests == 5 {
            break;
        }
        assert!(Instant::now() < deadline, "B counts {requests} of 5: {usage}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Events A queued are delivered by B once A is gone.
    receiver.failing.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent = a.call("POST", "/v1/messages", &admin, Some(MESSAGE));
    assert_eq!(sent.status, 201);
    let via_a = sent.json()["id"].as_str().unwrap().to_owned();
    std::thread::sleep(Duration::from_millis(300));
    a.kill();
    receiver.failing.store(false, std::sync::atomic::Ordering::SeqCst);
    let events = receiver.wait_for("A's events, from B", |events| events_of(events, &via_a).len() >= 2);
    let mine = events_of(&events, &via_a);
    assert_eq!(mine[0].1["data"]["status"], "queued");
    assert_eq!(mine.last().unwrap().1["data"]["status"], "sent");
    let ready = b.call("GET", "/health/ready", "", None);
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json()["checks"]["change_listener"], "ok");
    assert_eq!(ready.json()["checks"]["redis"], "ok");
}

#[test]
fn a_lost_database_fails_requests_with_503_and_recovers_without_restart() {
    let Some(admin_url) = postgres_url("fault") else { return };
    let database = TestDatabase::create(&admin_url, "fault");
    let proxy = Proxy::start(database.server_addr());
    let url = database.url_via(proxy.addr);
    let server = Server::start(
        &[
            "--database",
            url.as_str(),
            "--database-timeout-ms",
            "1000",
            "--request-timeout-secs",
            "3",
        ],
        &[("SECRETS_KEY", SECRETS_KEY)],
    );
    let key = server.bootstrap_key().unwrap();
    let sent = server.call("POST", "/v1/messages", &key, Some(MESSAGE));
    assert_eq!(sent.status, 201);
    let id = sent.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(server.call("GET", "/health/ready", "", None).status, 200);

    proxy.cut();
    for (method, path, body) in [
        ("GET", format!("/v1/messages/{id}"), None),
        ("POST", "/v1/messages".to_owned(), Some(MESSAGE)),
    ] {
        let started = Instant::now();
        let refused = server.call(method, &path, &key, body);
        assert_eq!(refused.status, 503, "{method} {path}: {}", refused.body);
        assert_eq!(refused.json()["error"]["code"], "SERVICE_UNAVAILABLE");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{method} {path} took {:?}",
            started.elapsed()
        );
    }
    let started = Instant::now();
    let ready = server.call("GET", "/health/ready", "", None);
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.json()["checks"]["database"], "unavailable");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(server.call("GET", "/health", "", None).status, 200, "liveness stays up");

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.call("GET", "/health/ready", "", None).status != 200 {
        assert!(
            Instant::now() < deadline,
            "not ready again after the database came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let read = server.call("GET", &format!("/v1/messages/{id}"), &key, None);
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(server.call("POST", "/v1/messages", &key, Some(MESSAGE)).status, 201);
}
