//! The messaging-api example's metering through the real router on a real
//! socket: key alerts delivered as signed `key.alert` webhooks (to a
//! receiver that verifies the signature before it accepts), once per fleet
//! on a shared Redis; usage by day; `rotation_due`; the audit log.

mod support;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use messaging_api::config::{AccountConfig, PlanConfig};
use messaging_api::stores::{Deployment, Stores};
use messaging_api::{bootstrap::bootstrap, router, AppState, Config};
use serde_json::{json, Value};
use support::{TestResponse, TestServer};
use tokio::sync::broadcast;
use tollgate_auth::NewKey;
use tollgate_core::{KeyKind, ManualClock, SharedClock};
use tollgate_redis::testing::TestRedis;
use tollgate_webhook::WebhookSecret;

const DAY: Duration = Duration::from_secs(86_400);
// 2026-11-30T12:00:00Z: noon, so a few requests never cross midnight.
const NOON: u64 = 1_796_040_000;

struct Api {
    server: TestServer,
    state: AppState,
    key: String,
    clock: ManualClock,
}

impl Api {
    async fn start(config: Config, now: SystemTime) -> Api {
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
        state.start_background();
        let server = TestServer::start(router(state.clone())).await;
        Api {
            server,
            state,
            key,
            clock,
        }
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

    async fn get_ok(&self, path: &str, key: &str) -> Value {
        let response = self.call("GET", path, key, None).await;
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        response.json()
    }

    // The id of the only key listed (the bootstrap key).
    async fn bootstrap_key_id(&self) -> String {
        let keys = self.get_ok("/v1/keys", &self.key).await;
        keys["data"][0]["id"].as_str().unwrap().to_owned()
    }
}

// `acct_demo` on a plan of 100 a second and `daily` a day, its webhook a
// seed-scheme receiver (X-Webhook-Signature, no timestamp: the manual clock
// may be far from the receiver's).
fn config(daily: Option<u64>, webhook: Option<(String, String)>) -> Config {
    let mut config = Config {
        allow_private_webhook_urls: true,
        ..Config::default()
    };
    config.plans.insert(
        "tiny".into(),
        PlanConfig {
            per_second: 100,
            burst: None,
            daily,
        },
    );
    let (webhook_url, webhook_secret) = webhook.unzip();
    config.accounts.push(AccountConfig {
        id: Config::DEMO_ACCOUNT.into(),
        plan: "tiny".into(),
        webhook_url,
        webhook_secret,
        ip_allowlist: Vec::new(),
    });
    config
}

// A receiver verifying the seed's signature: only signed bodies reach `events`.
async fn receiver() -> (TestServer, (String, String), broadcast::Receiver<Bytes>) {
    let secret = WebhookSecret::generate().unwrap();
    let options = webhook_receiver::Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        scheme: "seed".into(),
        secret: secret.clone(),
        limits: webhook_receiver::HttpLimits::default(),
    };
    let (events, received) = broadcast::channel(32);
    let server = TestServer::start(webhook_receiver::router(&options, events).unwrap()).await;
    let webhook = (format!("http://{}/webhooks", server.addr), secret.expose().to_owned());
    (server, webhook, received)
}

async fn next_event(events: &mut broadcast::Receiver<Bytes>) -> Value {
    let body = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("an event within 10 s")
        .expect("the receiver is running");
    serde_json::from_slice(&body).expect("a JSON event")
}

async fn no_event(events: &mut broadcast::Receiver<Bytes>, what: &str) {
    let more = tokio::time::timeout(Duration::from_millis(400), events.recv()).await;
    assert!(
        more.is_err(),
        "{what}: {:?}",
        more.map(|body| body.map(|body| body.to_vec()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_alerts_reach_the_accounts_webhook_signed_once_at_80_and_100_percent() {
    let (_receiver, webhook, mut events) = receiver().await;
    let api = Api::start(
        config(Some(10), Some(webhook)),
        SystemTime::UNIX_EPOCH + Duration::from_secs(NOON),
    )
    .await;
    let key_id = api.bootstrap_key_id().await;
    // The listing above was the first request of ten; six more stay below 80%.
    for _ in 0..6 {
        api.get_ok("/v1/keys", &api.key).await;
    }
    no_event(&mut events, "no alert below 80%").await;

    api.get_ok("/v1/keys", &api.key).await;
    let event = next_event(&mut events).await;
    assert_eq!(event["type"], "key.alert");
    let data = &event["data"];
    assert_eq!(data["kind"], "quota_80");
    assert_eq!(data["key_id"], key_id.as_str());
    assert_eq!(data["account_id"], "acct_demo");
    assert_eq!(
        (data["percent"].clone(), data["limit"].clone(), data["used"].clone()),
        (json!(80), json!(10), json!(8))
    );
    api.get_ok("/v1/keys", &api.key).await;
    no_event(&mut events, "80% is reported once").await;

    api.get_ok("/v1/keys", &api.key).await;
    let event = next_event(&mut events).await;
    assert_eq!(event["data"]["kind"], "quota_100");
    assert_eq!(event["data"]["used"], 10);
    for _ in 0..3 {
        assert_eq!(api.call("GET", "/v1/keys", &api.key, None).await.status, 429);
    }
    no_event(&mut events, "100% is reported once, not per refused request").await;

    // The next UTC day has a fresh quota, and fresh alerts.
    api.clock.advance(DAY);
    for _ in 0..8 {
        api.get_ok("/v1/keys", &api.key).await;
    }
    assert_eq!(next_event(&mut events).await["data"]["kind"], "quota_80");
}

/// With a database, alerts go through the webhook outbox (durable and
/// retried), signed like message events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_database_quota_alerts_go_through_the_outbox() {
    let (_receiver, webhook, mut events) = receiver().await;
    let path = std::env::temp_dir().join(format!("{}.db", unique("alerts")));
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(NOON));
    let stores = Stores::open(&deployment(path.to_str().unwrap()), SharedClock::from(clock.clone()))
        .await
        .expect("a SQLite file");
    let api = Api::start_on(config(Some(5), Some(webhook)), stores, clock).await;
    assert!(api.state.outbox().is_some());
    let key_id = api.bootstrap_key_id().await;
    for _ in 0..4 {
        api.get_ok("/v1/keys", &api.key).await;
    }
    for (kind, used) in [("quota_80", 4), ("quota_100", 5)] {
        let event = next_event(&mut events).await;
        assert_eq!(event["type"], "key.alert");
        assert_eq!(event["data"]["kind"], kind);
        assert_eq!(event["data"]["key_id"], key_id.as_str());
        assert_eq!(event["data"]["used"], used);
    }
    no_event(&mut events, "each once").await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_used_from_a_new_network_alerts_once_per_network_but_never_on_first_use() {
    let (_receiver, webhook, mut events) = receiver().await;
    let mut config = config(None, Some(webhook));
    config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let api = Api::start(config, SystemTime::now()).await;
    let key_id = api.bootstrap_key_id().await;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];

    // The listing was the key's first use, from 127.0.0.1: no alert.
    api.get_ok("/v1/keys", &api.key).await;
    no_event(&mut events, "a key's first network is not new").await;

    let response = api
        .call_with("GET", "/v1/keys", &api.key, None, &from("203.0.113.7"))
        .await;
    assert_eq!(response.status, 200);
    let event = next_event(&mut events).await;
    assert_eq!(event["type"], "key.alert");
    assert_eq!(event["data"]["kind"], "new_ip");
    assert_eq!(event["data"]["key_id"], key_id.as_str());
    assert_eq!(event["data"]["client_ip"], "203.0.113.7");
    assert_eq!(event["data"]["network"], "203.0.113.7/32");
    api.call_with("GET", "/v1/keys", &api.key, None, &from("203.0.113.7"))
        .await;
    no_event(&mut events, "a known network").await;

    // IPv6 by /64: one alert for the first address, none for its neighbour.
    api.call_with("GET", "/v1/keys", &api.key, None, &from("2001:db8:1:2::1"))
        .await;
    let event = next_event(&mut events).await;
    assert_eq!(event["data"]["kind"], "new_ip");
    assert_eq!(event["data"]["network"], "2001:db8:1:2::/64");
    api.call_with("GET", "/v1/keys", &api.key, None, &from("2001:db8:1:2::ff"))
        .await;
    no_event(&mut events, "the same /64").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_past_the_rotation_age_is_listed_as_due_and_alerts_once_a_day() {
    let (_receiver, webhook, mut events) = receiver().await;
    let created = SystemTime::UNIX_EPOCH + Duration::from_secs(NOON);
    let api = Api::start(config(None, Some(webhook)), created).await;
    let key_id = api.bootstrap_key_id().await;
    let keys = api.get_ok("/v1/keys", &api.key).await;
    assert_eq!(keys["data"][0]["rotation_due"], false);

    // Used every 20 days, so its network stays known (30 days): 89 days
    // and an hour, not yet due.
    for _ in 0..4 {
        api.clock.advance(DAY * 20);
        api.get_ok("/v1/keys", &api.key).await;
    }
    api.clock.advance(DAY * 9 + Duration::from_secs(3_600));
    assert_eq!(api.get_ok("/v1/keys", &api.key).await["data"][0]["rotation_due"], false);
    no_event(&mut events, "younger than 90 days").await;

    api.clock.advance(DAY);
    let keys = api.get_ok("/v1/keys", &api.key).await;
    assert_eq!(keys["data"][0]["id"], key_id.as_str());
    assert_eq!(keys["data"][0]["rotation_due"], true);
    let event = next_event(&mut events).await;
    assert_eq!(event["type"], "key.alert");
    assert_eq!(event["data"]["kind"], "rotation_due");
    assert_eq!(event["data"]["key_id"], key_id.as_str());
    assert_eq!(event["data"]["created_at"], "2026-11-30T12:00:00Z");

    // A new key is not due; the old one alerts again only the next day.
    let made = api
        .call(
            "POST",
            "/v1/keys",
            &api.key,
            Some(r#"{"label":"new","type":"sandbox"}"#),
        )
        .await;
    assert_eq!(made.status, 201);
    let keys = api.get_ok("/v1/keys", &api.key).await;
    let due: Vec<(String, bool)> = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| {
            (
                key["label"].as_str().unwrap().to_owned(),
                key["rotation_due"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(due, [("Bootstrap key".to_owned(), true), ("new".to_owned(), false)]);
    no_event(&mut events, "once per key per day").await;
    api.clock.advance(DAY);
    api.get_ok("/v1/keys", &api.key).await;
    assert_eq!(next_event(&mut events).await["data"]["kind"], "rotation_due");
}

/// Two instances on one Redis: the shared alert store lets one of them
/// send each quota alert. Needs `REDIS_URL` (skipped without it, a
/// failure without it under `TOLLGATE_REQUIRE_REDIS=1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_redis_send_each_quota_alert_once() {
    let Some(redis) = TestRedis::connect_with("metering_two_instances", |config| {
        config.operation_timeout(Duration::from_secs(5))
    })
    .await
    else {
        return;
    };
    let (_receiver, webhook, mut events) = receiver().await;
    let config = config(Some(5), Some(webhook));
    let stores = || async {
        Stores::redis_with(redis.config().clone())
            .await
            .expect("Redis is reachable")
    };
    let clock = ManualClock::new(SystemTime::now());
    let first = Api::start_on(config.clone(), stores().await, clock.clone()).await;
    let second = Api::start_on(config, stores().await, clock).await;
    let key = first.key.clone();
    assert!(!key.is_empty() && second.key.is_empty());

    // Five a day, alternating instances; then each refuses one more.
    for round in 0..5 {
        let api = if round % 2 == 0 { &first } else { &second };
        api.get_ok("/v1/keys", &key).await;
    }
    assert_eq!(first.call("GET", "/v1/keys", &key, None).await.status, 429);
    assert_eq!(second.call("GET", "/v1/keys", &key, None).await.status, 429);

    let mut kinds = vec![
        next_event(&mut events).await["data"]["kind"]
            .as_str()
            .unwrap()
            .to_owned(),
        next_event(&mut events).await["data"]["kind"]
            .as_str()
            .unwrap()
            .to_owned(),
    ];
    kinds.sort();
    assert_eq!(kinds, ["quota_100", "quota_80"]);
    no_event(&mut events, "each alert once for the fleet").await;

    redis.cleanup().await;
}

#[tokio::test]
async fn usage_by_day_has_exactly_the_days_asked_for_oldest_first() {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(NOON);
    let api = Api::start(config(Some(4), None), start).await;
    let key_id = api.bootstrap_key_id().await;
    // Day one: the listing above and four more, the last refused.
    for _ in 0..3 {
        api.get_ok("/v1/keys", &api.key).await;
    }
    assert_eq!(api.call("GET", "/v1/keys", &api.key, None).await.status, 429);
    api.clock.advance(DAY);
    for _ in 0..2 {
        api.get_ok("/v1/keys", &api.key).await;
    }
    api.clock.advance(DAY);

    // Today: only this request.
    let usage = api.get_ok("/v1/usage?days=3", &api.key).await;
    assert_eq!(usage["date"], "2026-12-02");
    assert_eq!(
        usage["keys"],
        json!([{
            "key_id": key_id,
            "label": "Bootstrap key",
            "requests": 1,
            "rate_limited": 0,
            "days": [
                {"date": "2026-11-30", "requests": 5, "rate_limited": 1},
                {"date": "2026-12-01", "requests": 2, "rate_limited": 0},
                {"date": "2026-12-02", "requests": 1, "rate_limited": 0},
            ],
        }])
    );

    // A day with nothing is a zero, so the array always has `days` entries.
    let usage = api.get_ok("/v1/usage?days=5", &api.key).await;
    let days = usage["keys"][0]["days"].as_array().unwrap();
    assert_eq!(days.len(), 5);
    assert_eq!(days[0], json!({"date": "2026-11-28", "requests": 0, "rate_limited": 0}));
    assert_eq!(days[4], json!({"date": "2026-12-02", "requests": 2, "rate_limited": 0}));

    // Without `days`, today's shape exactly.
    let today = api.get_ok("/v1/usage", &api.key).await;
    assert_eq!(
        today["keys"],
        json!([{"key_id": key_id, "label": "Bootstrap key", "requests": 3, "rate_limited": 0}])
    );

    for bad in ["0", "91", "abc", "", "-1", "3.5"] {
        // A day each: the tiny quota would refuse them first.
        api.clock.advance(DAY);
        let refused = api.call("GET", &format!("/v1/usage?days={bad}"), &api.key, None).await;
        assert_eq!(refused.status, 400, "days={bad}");
        assert_eq!(
            refused.text(),
            r#"{"error":{"code":"INVALID_REQUEST","message":"\"days\" must be a whole number from 1 to 90"}}"#
        );
    }
    api.clock.advance(DAY);
    assert_eq!(
        api.get_ok("/v1/usage?days=90", &api.key).await["keys"][0]["days"]
            .as_array()
            .unwrap()
            .len(),
        90
    );
}

// The audit log of acct_demo's changes, then of another account's, on the
// given stores (memory, a SQLite file, PostgreSQL when DATABASE_URL is set).
async fn audit_log_records_every_change_on(stores: Stores, account: &str) {
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(NOON));
    let mut config = config(None, None);
    config.accounts[0].id = account.to_owned();
    config.accounts.push(AccountConfig {
        id: Config::DEMO_ACCOUNT.into(),
        plan: "free".into(),
        webhook_url: None,
        webhook_secret: None,
        ip_allowlist: Vec::new(),
    });
    let api = Api::start_on(config, stores, clock).await;
    let admin = api
        .state
        .keys()
        .create(NewKey::new(account, KeyKind::Production).label("admin"))
        .await
        .unwrap();
    let (admin_id, admin) = (admin.info.id.clone(), admin.secret.expose_secret().to_owned());
    let call = |method: &'static str, path: String, body: Option<&'static str>| {
        let admin = admin.clone();
        let api = &api;
        async move {
            let response = api.call(method, &path, &admin, body).await;
            assert!(response.status.is_success(), "{method} {path}: {}", response.text());
            response
        }
    };

    let created = call("POST", "/v1/keys".into(), Some(r#"{"label":"ci","type":"sandbox"}"#)).await;
    let created_id = created.json()["id"].as_str().unwrap().to_owned();
    let rotated = call("POST", format!("/v1/keys/{created_id}/rotate"), None).await;
    let successor = rotated.json()["id"].as_str().unwrap().to_owned();
    call("DELETE", format!("/v1/keys/{successor}"), None).await;
    let list = Some(r#"{"cidrs":["127.0.0.0/8","203.0.113.0/24"]}"#);
    call("PUT", "/v1/security/ip-allowlist".into(), list).await;
    call("DELETE", "/v1/security/ip-allowlist".into(), None).await;
    call("PUT", format!("/v1/keys/{created_id}/ip-allowlist"), list).await;
    call("DELETE", format!("/v1/keys/{created_id}/ip-allowlist"), None).await;
    let webhook = call(
        "PUT",
        "/v1/webhooks".into(),
        Some(r#"{"url":"http://127.0.0.1:9/hooks"}"#),
    )
    .await;
    let secret = webhook.json()["secret"].as_str().unwrap().to_owned();

    let log = api.get_ok("/v1/audit-log", &admin).await;
    assert_eq!(log["next_cursor"], Value::Null);
    let entries = log["entries"].as_array().unwrap();
    let summary: Vec<(&str, &str)> = entries
        .iter()
        .map(|entry| (entry["action"].as_str().unwrap(), entry["target_id"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("webhook.set", account),
            ("key_allowlist.removed", created_id.as_str()),
            ("key_allowlist.set", created_id.as_str()),
            ("account_allowlist.removed", account),
            ("account_allowlist.set", account),
            ("key.revoked", successor.as_str()),
            ("key.rotated", created_id.as_str()),
            ("key.created", created_id.as_str()),
        ]
    );
    for entry in entries {
        assert_eq!(entry["account_id"], account);
        assert_eq!(entry["actor_key_id"], admin_id.as_str());
        assert_eq!(entry["client_ip"], "127.0.0.1");
        assert_eq!(entry["at"], "2026-11-30T12:00:00Z");
    }
    assert_eq!(entries[7]["details"], json!({"type": "sandbox", "label": "ci"}));
    assert_eq!(entries[6]["details"]["new_key_id"], successor.as_str());
    assert_eq!(entries[4]["details"], json!({"networks": 2}));
    assert_eq!(
        entries[0]["details"],
        json!({"url": "http://127.0.0.1:9/hooks", "previous_url": null, "secret_changed": true})
    );
    assert!(!log.to_string().contains(&secret), "never the webhook secret");
    assert!(!log.to_string().contains(&admin), "never a key");

    // Pages of two over the five newest: the cursor walks on, the last page ends it.
    let mut pages = Vec::new();
    let mut path = "/v1/audit-log?limit=2".to_owned();
    loop {
        let page = api.get_ok(&path, &admin).await;
        let actions: Vec<String> = page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["action"].as_str().unwrap().to_owned())
            .collect();
        pages.push(actions);
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/audit-log?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages.len(), 4);
    assert_eq!(pages[0], ["webhook.set", "key_allowlist.removed"]);
    assert_eq!(pages[1], ["key_allowlist.set", "account_allowlist.removed"]);
    assert_eq!(pages[3], ["key.rotated", "key.created"]);

    // Every key type of the account reads it; a bad page request is a 400.
    let (_, read_only) = {
        let made = call("POST", "/v1/keys".into(), Some(r#"{"label":"ro","type":"read_only"}"#)).await;
        let json = made.json();
        (
            json["id"].as_str().unwrap().to_owned(),
            json["key"].as_str().unwrap().to_owned(),
        )
    };
    let as_read_only = api.get_ok("/v1/audit-log?limit=1", &read_only).await;
    assert_eq!(as_read_only["entries"][0]["action"], "key.created");
    assert!(as_read_only["next_cursor"].is_string());
    for bad in ["limit=0", "limit=201", "limit=x", "cursor=bm9wZQ", "cursor=%%%"] {
        let refused = api.call("GET", &format!("/v1/audit-log?{bad}"), &admin, None).await;
        assert_eq!(refused.status, 400, "{bad}: {}", refused.text());
        assert_eq!(refused.json()["error"]["code"], "INVALID_REQUEST");
    }

    // Another account sees none of it, and its own changes only.
    let other_account = format!("{account}_other");
    let other_key = api
        .state
        .keys()
        .create(NewKey::new(other_account.as_str(), KeyKind::Production).label("other"))
        .await
        .unwrap();
    let other_key = other_key.secret.expose_secret().to_owned();
    let other = api.get_ok("/v1/audit-log", &other_key).await;
    assert_eq!(other, json!({"entries": [], "next_cursor": null}));
    let made = api
        .call(
            "POST",
            "/v1/keys",
            &other_key,
            Some(r#"{"label":"x","type":"sandbox"}"#),
        )
        .await;
    assert_eq!(made.status, 201);
    let other = api.get_ok("/v1/audit-log", &other_key).await;
    assert_eq!(other["entries"].as_array().unwrap().len(), 1);
    assert_eq!(other["entries"][0]["account_id"], other_account.as_str());
    let mine = api.get_ok("/v1/audit-log?limit=200", &admin).await;
    assert_eq!(mine["entries"].as_array().unwrap().len(), 9);
}

fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}_{}_{nanos}", std::process::id())
}

#[tokio::test]
async fn the_audit_log_records_every_change_in_memory() {
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(NOON));
    audit_log_records_every_change_on(Stores::memory(SharedClock::from(clock)), "acct_audit").await;
}

#[tokio::test]
async fn the_audit_log_records_every_change_in_sqlite() {
    let path = std::env::temp_dir().join(format!("{}.db", unique("audit")));
    let stores = Stores::open(&deployment(path.to_str().unwrap()), SharedClock::default())
        .await
        .expect("a SQLite file");
    audit_log_records_every_change_on(stores, "acct_audit").await;
    for suffix in ["", "-wal", "-shm", ".key"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// Needs `DATABASE_URL` (skipped without it, a failure without it under
/// `TOLLGATE_REQUIRE_POSTGRES=1`); a fresh account per run.
#[tokio::test]
async fn the_audit_log_records_every_change_in_postgres() {
    let Ok(url) = std::env::var("DATABASE_URL").map(|url| url.trim().to_owned()) else {
        assert!(
            std::env::var("TOLLGATE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "TOLLGATE_REQUIRE_POSTGRES=1 but DATABASE_URL is not set"
        );
        eprintln!("skipped: set DATABASE_URL to run the PostgreSQL audit log test");
        return;
    };
    let stores = Stores::open(&deployment(&url), SharedClock::default())
        .await
        .expect("PostgreSQL is reachable");
    audit_log_records_every_change_on(stores, &unique("acct_audit")).await;
}

fn deployment(database: &str) -> Deployment {
    Deployment {
        database: database.to_owned(),
        redis: None,
        secrets_key: Some(WebhookSecretsKey::TEST.to_owned()),
        secrets_key_file: None,
        database_timeout: Duration::from_secs(5),
        redis_prefix: None,
    }
}

// A base64 32-byte sealing key for tests (all zero bytes).
struct WebhookSecretsKey;
impl WebhookSecretsKey {
    const TEST: &'static str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
}
