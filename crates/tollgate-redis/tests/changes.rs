//! Pushed invalidation over Redis pub/sub: the stores announce their writes,
//! the subscriber delivers them to a hub and reconnects by itself, and a
//! fleet of long-TTL caches refuses a revoked key at once.

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::{TcpListener, TcpStream};
use tollgate_core::allowlist::{AllowlistStore, IpSet};
use tollgate_core::changes::{Change, ChangeListener, Changes};
use tollgate_core::conformance::unique_name;
use tollgate_core::keys::{CachedKeyStore, KeyHash, KeyRecord, KeyRegistry, KeyStore, Rotation};
use tollgate_core::{KeyKind, ManualClock, Principal};
use tollgate_redis::testing::{announce_skip, TestRedis};
use tollgate_redis::{subscribe_changes, RedisConfig};

const PATIENCE: Duration = Duration::from_secs(5);

fn record(account: &str, id: &str, hash: u8) -> KeyRecord {
    KeyRecord {
        principal: Principal::new(account, id, KeyKind::Production),
        hash: KeyHash::from_bytes([hash; 32]),
        label: "Production Server".into(),
        display_prefix: "tg_live_ab".into(),
        created_at: SystemTime::now(),
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    }
}

/// What a hub delivered, in order.
#[derive(Default)]
struct Heard(Mutex<Vec<Change>>);

impl ChangeListener for Heard {
    fn changed(&self, change: &Change) {
        self.0.lock().unwrap().push(change.clone());
    }
}

impl Heard {
    fn on(changes: &Changes) -> Arc<Heard> {
        let heard = Arc::new(Heard::default());
        let listener: Arc<dyn ChangeListener> = heard.clone();
        changes.subscribe(&listener);
        heard // held by the test: the hub holds listeners weakly
    }

    fn take(&self) -> Vec<Change> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

// Polls `done` every 2 ms until it holds; panics past `within`.
async fn eventually(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    started.elapsed()
}

async fn heard_exactly(heard: &Heard, expected: Vec<Change>) {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, async {
        while got.len() < expected.len() {
            got.extend(heard.take());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    got.extend(heard.take());
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creations_revocations_rotations_and_allowlist_writes_are_announced() {
    let Some(redis) = TestRedis::connect("changes_announced").await else {
        return;
    };
    let changes = Changes::new();
    let heard = Heard::on(&changes);
    let subscription = subscribe_changes(redis.config(), changes.clone()).unwrap();
    eventually("subscribed", PATIENCE, || changes.is_connected()).await;
    heard_exactly(&heard, vec![Change::Everything]).await;

    let keys = redis.key_store();
    let now = SystemTime::now();
    let account = unique_name("acct");
    keys.insert(record(&account, "key_1", 1), None, now).await.unwrap();
    keys.insert(record(&account, "key_2", 2), None, now).await.unwrap();
    keys.revoke("key_1", now).await.unwrap();
    keys.revoke("key_1", now).await.unwrap(); // changes nothing, announces nothing
    keys.rotate(Rotation::new("key_2", record(&account, "key_3", 3), now, now))
        .await
        .unwrap()
        .unwrap();
    keys.record_last_use("key_3", now).await.unwrap();
    let allowlists = redis.allowlist_store();
    let list = IpSet::parse(["203.0.113.0/24"]).unwrap();
    allowlists.set_account_allowlist(&account, list.clone()).await.unwrap();
    allowlists.set_key_allowlist("key_3", list).await.unwrap();
    assert!(allowlists.clear_key_allowlist("key_3").await.unwrap());
    assert!(allowlists.clear_account_allowlist(&account).await.unwrap());
    assert!(!allowlists.clear_account_allowlist(&account).await.unwrap());
    heard_exactly(
        &heard,
        vec![
            // Two creations, a revocation, a rotation (the retiring key and its successor).
            Change::Key(KeyHash::from_bytes([1; 32])),
            Change::Key(KeyHash::from_bytes([2; 32])),
            Change::Key(KeyHash::from_bytes([1; 32])),
            Change::Key(KeyHash::from_bytes([2; 32])),
            Change::Key(KeyHash::from_bytes([3; 32])),
            Change::AccountAllowlist(account.clone()),
            Change::KeyAllowlist("key_3".into()),
            Change::KeyAllowlist("key_3".into()),
            Change::AccountAllowlist(account.clone()),
            Change::AccountAllowlist(account.clone()),
        ],
    )
    .await;

    // Garbage on the channel is ignored; another prefix's channel is not heard.
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let channel = format!("{}changes", redis.key_prefix());
    for (channel, payload) in [(channel.as_str(), "nonsense"), ("tollgate:changes", "everything")] {
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<i64>(&mut connection)
            .await
            .unwrap();
    }
    heard_exactly(&heard, vec![]).await;

    drop(subscription);
    assert!(
        !changes.is_connected(),
        "a dropped subscription marks the hub disconnected"
    );
    redis.cleanup().await;
}

/// A `redis-server` of this test's own on a free loopback port, to kill and
/// restart (never the shared one).
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    async fn start(test: &str) -> Option<OwnRedis> {
        let port = StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut redis = OwnRedis { port, child: None };
        if let Err(error) = redis.spawn() {
            let required = std::env::var("TOLLGATE_REQUIRE_REDIS").is_ok_and(|value| value == "1");
            assert!(
                !required,
                "{test}: TOLLGATE_REQUIRE_REDIS=1 but redis-server cannot start: {error}"
            );
            announce_skip(&format!("{test}: skipped, redis-server cannot start: {error}"));
            return None;
        }
        redis.wait_until_up().await;
        Some(redis)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_until_up(&self) {
        eventually("redis-server listens", PATIENCE, || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        })
        .await;
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    async fn restart(&mut self) {
        self.spawn().unwrap();
        self.wait_until_up().await;
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriber_marks_a_lost_server_and_reconnects_by_itself() {
    let Some(mut server) = OwnRedis::start("changes_reconnect").await else {
        return;
    };
    let config = RedisConfig::new(server.url())
        .prefix("reconnect:")
        .operation_timeout(Duration::from_millis(200))
        .reconnect_max_delay(Duration::from_millis(100));
    let changes = Changes::new();
    let heard = Heard::on(&changes);
    let _subscription = subscribe_changes(&config, changes.clone()).unwrap();
    eventually("subscribed", PATIENCE, || changes.is_connected()).await;
    heard_exactly(&heard, vec![Change::Everything]).await;

    let url = server.url();
    let publish = |payload: String| {
        let url = url.clone();
        async move {
            let client = redis::Client::open(url).unwrap();
            let mut connection = client.get_multiplexed_async_connection().await.unwrap();
            redis::cmd("PUBLISH")
                .arg("reconnect:changes")
                .arg(payload)
                .query_async::<i64>(&mut connection)
                .await
                .unwrap()
        }
    };
    let change = Change::KeyAllowlist("key_1".into());
    assert_eq!(publish(change.encode()).await, 1, "one subscriber");
    heard_exactly(&heard, vec![change.clone()]).await;

    for round in 0..2 {
        server.kill();
        let lost = eventually("marked disconnected", PATIENCE, || !changes.is_connected()).await;
        println!("round {round}: disconnection noticed after {lost:?}");
        // Down for a while: attempts fail and back off, nothing is delivered.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!changes.is_connected());
        heard_exactly(&heard, vec![]).await;

        server.restart().await;
        let back = eventually("reconnected", PATIENCE, || changes.is_connected()).await;
        println!("round {round}: resubscribed {back:?} after the server was up");
        assert!(
            back < Duration::from_secs(1),
            "within the 100 ms backoff and a connection: {back:?}"
        );
        heard_exactly(&heard, vec![Change::Everything]).await;
        assert_eq!(publish(change.encode()).await, 1, "subscribed again");
        heard_exactly(&heard, vec![change.clone()]).await;
    }
}

/// A TCP proxy to Redis that can be cut: every connection through it is
/// closed and new ones are refused until it is restored. Stands for a
/// network partition between one instance's subscriber and Redis.
struct Proxy {
    port: u16,
    open: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    async fn to(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (accepting, cuts) = (open.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !accepting.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let mut cut = cuts.subscribe();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy { port, open, cut }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cut.send_modify(|generation| *generation += 1);
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_of_long_ttl_caches_refuses_a_revoked_key_at_once_and_the_ttl_bounds_a_lost_subscription() {
    let Some(redis) = TestRedis::connect("changes_fleet").await else {
        return;
    };
    let there_stores = redis.another_instance().await;
    let upstream = redis
        .url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let proxy = Proxy::to(upstream).await;
    let through_proxy = RedisConfig::new(format!("redis://127.0.0.1:{}", proxy.port))
        .prefix(redis.key_prefix())
        .reconnect_max_delay(Duration::from_millis(50))
        .operation_timeout(Duration::from_millis(200));

    // Two instances: each a cache with a minute's TTL over its own
    // connection, fed by its own subscriber. Here subscribes through the proxy.
    let clock = ManualClock::new(SystemTime::now());
    let (here_changes, there_changes) = (Changes::new(), Changes::new());
    let here = CachedKeyStore::new(redis.key_store())
        .ttl(Duration::from_secs(60))
        .clock(clock.clone())
        .invalidated_by(&here_changes);
    let there = CachedKeyStore::new(there_stores.key_store())
        .ttl(Duration::from_secs(60))
        .invalidated_by(&there_changes);
    let _here_subscription = subscribe_changes(&through_proxy, here_changes.clone()).unwrap();
    let _there_subscription = subscribe_changes(redis.config(), there_changes.clone()).unwrap();
    eventually("both subscribed", PATIENCE, || {
        here_changes.is_connected() && there_changes.is_connected()
    })
    .await;

    let account = unique_name("acct");
    let now = SystemTime::now();
    for (id, hash) in [("key_1", 1), ("key_2", 2), ("key_3", 3)] {
        there.insert(record(&account, id, hash), None, now).await.unwrap();
    }
    let valid_here = |hash: u8| {
        let here = here.clone();
        async move {
            let found = here.find_by_hash(&KeyHash::from_bytes([hash; 32])).await.unwrap();
            found.expect("a known key").is_valid_at(now)
        }
    };
    assert!(valid_here(1).await);
    assert_eq!(here.cached_entries(), 1);

    // Revoked there: refused here within 100 ms, long before the minute.
    there.revoke("key_1", now).await.unwrap();
    let started = Instant::now();
    while valid_here(1).await {
        assert!(started.elapsed() < Duration::from_secs(2), "never refused here");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = started.elapsed();
    println!("a revocation there was refused here after {took:?}");
    assert!(took < Duration::from_millis(100), "refused here after {took:?}");

    // The subscription here is cut: the hub says so, and the TTL is the bound.
    proxy.cut();
    eventually("marked disconnected", PATIENCE, || !here_changes.is_connected()).await;
    assert!(valid_here(2).await);
    there.revoke("key_2", now).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    clock.advance(Duration::from_secs(59));
    assert!(valid_here(2).await, "unannounced, served from the cache within the TTL");
    clock.advance(Duration::from_secs(1));
    assert!(!valid_here(2).await, "refused once the TTL is over");

    // Revoked while the subscription is down, then it comes back: the
    // reconnection drops everything, so the key is refused without the TTL.
    assert!(valid_here(3).await);
    there.revoke("key_3", now).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(valid_here(3).await, "still cached, the change was missed");
    proxy.restore();
    eventually("reconnected", PATIENCE, || here_changes.is_connected()).await;
    let started = Instant::now();
    while valid_here(3).await {
        assert!(started.elapsed() < Duration::from_secs(2), "never refused here");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    drop(there_stores);
    redis.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_remembered_as_unknown_is_known_once_another_instance_creates_it() {
    let Some(redis) = TestRedis::connect("changes_negative").await else {
        return;
    };
    let there = redis.another_instance().await.key_store();
    let changes = Changes::new();
    // The longest negative TTL, on a clock that stands still: only the
    // announcement can make the key known here.
    let here = CachedKeyStore::new(redis.key_store())
        .negative_ttl(Duration::from_secs(5))
        .clock(ManualClock::new(SystemTime::now()))
        .invalidated_by(&changes);
    let _subscription = subscribe_changes(redis.config(), changes.clone()).unwrap();
    eventually("subscribed", PATIENCE, || changes.is_connected()).await;

    let account = unique_name("acct");
    let hash = KeyHash::from_bytes([42; 32]);
    assert!(here.find_by_hash(&hash).await.unwrap().is_none());
    assert_eq!(here.cached_misses(), 1);
    there
        .insert(record(&account, &unique_name("key"), 42), None, SystemTime::now())
        .await
        .unwrap();
    let started = Instant::now();
    while here.find_by_hash(&hash).await.unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(2), "never known here");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = started.elapsed();
    assert!(took < Duration::from_millis(100), "known here after {took:?}");
    redis.cleanup().await;
}
