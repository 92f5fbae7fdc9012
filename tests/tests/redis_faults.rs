//! Redis dies under load and comes back: the layers answer by their failure
//! policy (503 JSON when failing closed, the handler when failing open),
//! nothing panics or hangs, and once Redis is back requests succeed again
//! without restarting the application.
//!
//! The test runs its own `redis-server` on a free loopback port (killed when
//! the test ends). Without the binary it prints that it was skipped, or
//! fails when `TOLLGATE_REQUIRE_REDIS=1`.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use support::TestServer;
use tollgate_auth::{BearerAuthLayer, CreatedKey, KeyManager, NewKey};
use tollgate_core::conformance::unique_name;
use tollgate_core::keys::{KeyStore, MemoryKeyStore};
use tollgate_core::rate_limit::Plan;
use tollgate_core::KeyKind;
use tollgate_idempotency::IdempotencyLayer;
use tollgate_ratelimit::{FailurePolicy, Plans, RateLimitLayer};
use tollgate_redis::{RedisConfig, RedisStores};

const UNAVAILABLE: &str =
    r#"{"error":{"code":"SERVICE_UNAVAILABLE","message":"The service is temporarily unavailable. Please retry."}}"#;
// High enough that the load never meets the rate limit: only faults matter here.
const BULK_PLAN: &str = "bulk";
// Bounds: each request, each wait for a phase, each worker's request count.
const REQUEST_DEADLINE: Duration = Duration::from_secs(3);
const PHASE_DEADLINE: Duration = Duration::from_secs(15);
const MAX_REQUESTS_PER_WORKER: usize = 3_000;

/// A `redis-server` child process on a fixed port, killed on drop.
struct RedisServer {
    child: Child,
}

impl RedisServer {
    /// Starts the server and waits for it to accept connections. `None` when
    /// the binary is missing.
    fn start(port: u16) -> Option<RedisServer> {
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
            Err(error) => panic!("cannot start redis-server: {error}"),
        };
        // Wait for the log line that says it listens; keep draining the log
        // afterwards so the server never blocks on a full pipe.
        let stdout = child.stdout.take().expect("a piped stdout");
        let (ready, is_ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("Ready to accept connections") {
                    let _ = ready.send(());
                }
            }
        });
        let mut server = RedisServer { child };
        if is_ready.recv_timeout(Duration::from_secs(10)).is_err() {
            server.kill();
            panic!("redis-server on port {port} did not become ready");
        }
        Some(server)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("an address").port()
}

fn plans() -> Plans {
    Plans::seed().with(Plan::new(BULK_PLAN, 1_000_000))
}

fn router(keys: impl KeyStore, stores: &RedisStores, policy: FailurePolicy, handled: Arc<AtomicUsize>) -> Router {
    Router::new()
        .route(
            "/v1/messages",
            post(move || {
                handled.fetch_add(1, Ordering::Relaxed);
                async { "sent" }
            }),
        )
        .layer(IdempotencyLayer::new(stores.idempotency_store()).fail_open(policy == FailurePolicy::Open))
        .layer(
            RateLimitLayer::new(stores.rate_limit_store())
                .plans(plans())
                .failure_policy(policy),
        )
        .layer(BearerAuthLayer::new(keys))
}

// The phases of the test. The kill and the restart each have a phase of
// their own, so a request in flight while Redis changes state is never
// judged by the rules of a phase it did not wholly run in.
const HEALTHY: u8 = 0;
const KILLING: u8 = 1;
const DOWN: u8 = 2;
const RESTARTING: u8 = 3;
const RESTARTED: u8 = 4;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum App {
    /// Keys, limits and idempotency in Redis; fails closed.
    Closed,
    /// Keys in memory, limits and idempotency in Redis; fails open.
    Open,
}

#[derive(Debug)]
struct Sample {
    app: App,
    /// When the request started ([`HEALTHY`], [`KILLING`], [`DOWN`],
    /// [`RESTARTING`], [`RESTARTED`])...
    phase: u8,
    /// ... and when its answer came (a request in flight at a kill or a
    /// restart may see either side).
    phase_end: u8,
    /// `None`: no answer within the deadline (a hang).
    status: Option<StatusCode>,
    body: Bytes,
    took: Duration,
}

struct Harness {
    closed: TestServer,
    open: TestServer,
    closed_key: CreatedKey,
    open_key: CreatedKey,
    phase: AtomicU8,
    stop: AtomicBool,
    samples: Mutex<Vec<Sample>>,
}

impl Harness {
    async fn request(&self, app: App) {
        let (server, key) = match app {
            App::Closed => (&self.closed, &self.closed_key),
            App::Open => (&self.open, &self.open_key),
        };
        let phase = self.phase.load(Ordering::SeqCst);
        let request = server
            .request("POST", "/v1/messages")
            .header("authorization", format!("Bearer {}", key.secret.expose_secret()))
            .header("x-request-id", unique_name("req"))
            .body(Full::new(Bytes::from_static(b"{}")))
            .expect("a request");
        let started = Instant::now();
        let answer = tokio::time::timeout(REQUEST_DEADLINE, server.send(request)).await;
        let (status, body) = match answer {
            Ok(response) => (Some(response.status), response.body),
            Err(_elapsed) => (None, Bytes::new()),
        };
        self.samples.lock().unwrap().push(Sample {
            app,
            phase,
            phase_end: self.phase.load(Ordering::SeqCst),
            status,
            body,
            took: started.elapsed(),
        });
    }

    fn count(&self, app: App, phase: u8, status: StatusCode) -> usize {
        let samples = self.samples.lock().unwrap();
        samples
            .iter()
            .filter(|sample| {
                sample.app == app && sample.phase == phase && sample.phase_end == phase && sample.status == Some(status)
            })
            .count()
    }

    // Waits (bounded) until `done` holds, checking as samples come in.
    async fn wait_until(&self, what: &str, done: impl Fn(&Harness) -> bool) {
        let deadline = Instant::now() + PHASE_DEADLINE;
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_dying_under_load_is_answered_by_policy_and_recovered_from_without_a_restart() {
    let required = std::env::var("TOLLGATE_REQUIRE_REDIS").is_ok_and(|value| value == "1");
    let port = free_port();
    let Some(mut server) = RedisServer::start(port) else {
        assert!(!required, "TOLLGATE_REQUIRE_REDIS=1 but redis-server is not installed");
        tollgate_redis::testing::announce_skip("redis_faults: skipped, redis-server is not installed");
        return;
    };
    let config = RedisConfig::new(format!("redis://127.0.0.1:{port}"))
        .prefix(format!("{}:", unique_name("tgfaults")))
        .operation_timeout(Duration::from_millis(200))
        .reconnect_max_delay(Duration::from_millis(200));
    let closed_stores = RedisStores::connect(config.clone()).await.expect("connect");
    let open_stores = RedisStores::connect(config).await.expect("connect");

    let closed_keys = KeyManager::new(closed_stores.key_store());
    let new_key = || NewKey::new("acct_faults", KeyKind::Production).plan(BULK_PLAN);
    let closed_key = closed_keys.create(new_key()).await.expect("a key in Redis");
    let memory_keys = MemoryKeyStore::new();
    let open_key = KeyManager::new(memory_keys.clone())
        .create(new_key())
        .await
        .expect("a key in memory");
    let handled = Arc::new(AtomicUsize::new(0));
    let harness = Arc::new(Harness {
        closed: TestServer::start(router(
            closed_stores.key_store(),
            &closed_stores,
            FailurePolicy::Closed,
            handled.clone(),
        ))
        .await,
        open: TestServer::start(router(memory_keys, &open_stores, FailurePolicy::Open, handled.clone())).await,
        closed_key,
        open_key,
        phase: AtomicU8::new(0),
        stop: AtomicBool::new(false),
        samples: Mutex::new(Vec::new()),
    });

    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let harness = harness.clone();
            tokio::spawn(async move {
                for i in 0..MAX_REQUESTS_PER_WORKER {
                    if harness.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let app = if (worker + i) % 2 == 0 { App::Closed } else { App::Open };
                    harness.request(app).await;
                }
            })
        })
        .collect();

    // Healthy: both apps serve.
    harness
        .wait_until("both apps served 20 requests", |h| {
            h.count(App::Closed, HEALTHY, StatusCode::OK) >= 20 && h.count(App::Open, HEALTHY, StatusCode::OK) >= 20
        })
        .await;

    // Redis dies mid-load.
    harness.phase.store(KILLING, Ordering::SeqCst);
    server.kill();
    harness.phase.store(DOWN, Ordering::SeqCst);
    harness
        .wait_until("the closed app refuses and the open app serves", |h| {
            h.count(App::Closed, DOWN, StatusCode::SERVICE_UNAVAILABLE) >= 20
                && h.count(App::Open, DOWN, StatusCode::OK) >= 20
        })
        .await;

    // Redis comes back on the same port, empty (no persistence): the key the
    // closed app knew is gone, so its first answers from Redis are 401.
    harness.phase.store(RESTARTING, Ordering::SeqCst);
    let _restarted = RedisServer::start(port).expect("redis-server starts again");
    harness.phase.store(RESTARTED, Ordering::SeqCst);
    harness
        .wait_until("the closed app reaches Redis again", |h| {
            h.count(App::Closed, RESTARTED, StatusCode::UNAUTHORIZED) > 0
                || h.count(App::Closed, RESTARTED, StatusCode::OK) > 0
        })
        .await;
    // Put the key back through the app's own connection manager.
    closed_keys
        .import(new_key(), harness.closed_key.secret.expose_secret())
        .await
        .expect("the key store works again");
    harness
        .wait_until("both apps serve again", |h| {
            h.count(App::Closed, RESTARTED, StatusCode::OK) >= 20 && h.count(App::Open, RESTARTED, StatusCode::OK) >= 20
        })
        .await;

    harness.stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.expect("no client task panicked");
    }

    let samples = harness.samples.lock().unwrap();
    let hung: Vec<_> = samples.iter().filter(|sample| sample.status.is_none()).collect();
    assert!(
        hung.is_empty(),
        "requests without an answer in {REQUEST_DEADLINE:?}: {hung:?}"
    );
    for sample in samples.iter() {
        let status = sample.status.expect("answered");
        let allowed = |phase: u8| -> &[StatusCode] {
            match (sample.app, phase) {
                (App::Open, _) | (App::Closed, HEALTHY) => &[StatusCode::OK],
                (App::Closed, KILLING) => &[StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE],
                (App::Closed, DOWN) => &[StatusCode::SERVICE_UNAVAILABLE],
                // Reconnecting (503), the key not yet put back (401), or served.
                (App::Closed, _) => &[
                    StatusCode::SERVICE_UNAVAILABLE,
                    StatusCode::UNAUTHORIZED,
                    StatusCode::OK,
                ],
            }
        };
        assert!(
            (sample.phase..=sample.phase_end).any(|phase| allowed(phase).contains(&status)),
            "{sample:?}"
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(sample.body, UNAVAILABLE, "{sample:?}");
        }
        // A request meets at most a few store calls, each bounded at 200 ms.
        assert!(sample.took < Duration::from_secs(2), "{sample:?}");
    }
    let down: Vec<_> = samples.iter().filter(|sample| sample.phase == DOWN).collect();
    eprintln!(
        "{} requests in all, {} while Redis was down (slowest {:?}), handler ran {} times",
        samples.len(),
        down.len(),
        down.iter().map(|sample| sample.took).max().unwrap_or_default(),
        handled.load(Ordering::Relaxed)
    );
    assert!(
        samples.len() < 4 * MAX_REQUESTS_PER_WORKER,
        "the phases ended before the workers ran out"
    );
}
