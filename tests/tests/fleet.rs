//! A fleet: two independent instances of one API (two axum servers, each
//! with its own Redis connection manager) sharing one Redis. What one
//! instance admits, stores or revokes holds on the other: at once when the
//! instances look keys up in Redis directly, within the cache's TTL when
//! each has a `CachedKeyStore` in front.
//!
//! Needs `REDIS_URL`; without it each test prints that it was skipped (and
//! fails instead when `TOLLGATE_REQUIRE_REDIS=1`). Every test works under a
//! fresh key prefix and deletes its keys at the end.

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::routing::{delete, post};
use axum::Router;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use support::{TestResponse, TestServer};
use tokio::sync::{mpsc, Notify};
use tollgate_auth::{BearerAuthLayer, CreatedKey, KeyManager, NewKey};
use tollgate_core::conformance::{unique_name, FakeStore};
use tollgate_core::keys::{CachedKeyStore, KeyRegistry};
use tollgate_core::rate_limit::Plan;
use tollgate_core::{KeyKind, Principal};
use tollgate_idempotency::IdempotencyLayer;
use tollgate_ratelimit::{Plans, RateLimitLayer};
use tollgate_redis::testing::TestRedis;
use tollgate_redis::{RedisConfig, RedisStores};
use tower::{service_fn, ServiceBuilder, ServiceExt};

const IN_PROGRESS_CODE: &str = "IDEMPOTENCY_IN_PROGRESS";
const INVALID_KEY_BODY: &str = r#"{"error":{"code":"UNAUTHORIZED","message":"Invalid API key."}}"#;

// The seed's Free rate (10 per second) with a burst of 100 and a daily
// quota of 40. The quota is below the burst, so the burst alone would admit
// the first 40 requests at once and the quota then refuses everything
// else: exactly 40 are admitted however the 1,000 requests interleave and
// however long they take (the per-second refill never matters). Only a run
// that straddles 00:00 UTC could see more; the test checks for that.
const SMALL_QUOTA_PLAN: &str = "free-small-quota";
const SMALL_QUOTA: usize = 40;
// Far more than a test polling one instance in a loop can send.
const POLLING_PLAN: &str = "fleet-polling";

fn plans() -> Plans {
    Plans::seed()
        .with(
            Plan::new(SMALL_QUOTA_PLAN, 10)
                .with_burst(100)
                .with_daily_quota(Some(SMALL_QUOTA as u64)),
        )
        .with(Plan::new(POLLING_PLAN, 100_000))
}

/// What the handler of every instance shares: how often it ran, and (for
/// the duplicate test) a gate that holds it until the test opens it.
#[derive(Default)]
struct Handler {
    runs: AtomicUsize,
    hold: std::sync::atomic::AtomicBool,
    gate: Notify,
}

/// One instance of the API: its own connection manager on the shared prefix.
struct Instance {
    server: TestServer,
    keys: KeyManager,
}

impl Instance {
    /// With `cache_ttl`, keys are looked up through a `CachedKeyStore` of
    /// that TTL, which the instance's key manager writes through too.
    async fn start(config: RedisConfig, handler: Arc<Handler>, cache_ttl: Option<Duration>) -> Instance {
        let stores = RedisStores::connect(config).await.expect("connect an instance");
        // Redis itself, or Redis behind a cache.
        let key_store: Arc<dyn KeyRegistry> = match cache_ttl {
            None => Arc::new(stores.key_store()),
            Some(ttl) => Arc::new(CachedKeyStore::new(stores.key_store()).ttl(ttl)),
        };
        let keys = KeyManager::from_shared(key_store.clone());
        let revoker = keys.clone();
        let router = Router::new()
            .route(
                "/v1/messages",
                post(move || {
                    let handler = handler.clone();
                    async move {
                        let run = handler.runs.fetch_add(1, Ordering::SeqCst) + 1;
                        if handler.hold.load(Ordering::SeqCst) {
                            handler.gate.notified().await;
                        }
                        (
                            StatusCode::ACCEPTED,
                            format!(r#"{{"id":"msg_{run}","status":"queued"}}"#),
                        )
                    }
                }),
            )
            .route(
                "/v1/keys/{key_id}",
                delete(move |principal: Principal, Path(key_id): Path<String>| {
                    let revoker = revoker.clone();
                    async move {
                        match revoker.revoke(principal.account_id(), &key_id).await {
                            Ok(_) => StatusCode::NO_CONTENT,
                            Err(_) => StatusCode::NOT_FOUND,
                        }
                    }
                }),
            )
            .layer(IdempotencyLayer::new(stores.idempotency_store()))
            .layer(RateLimitLayer::new(stores.rate_limit_store()).plans(plans()))
            .layer(BearerAuthLayer::from_shared(key_store));
        Instance {
            server: TestServer::start(router).await,
            keys,
        }
    }

    async fn post(&self, key: &CreatedKey, request_id: Option<&str>) -> TestResponse {
        let mut request = self
            .server
            .request("POST", "/v1/messages")
            .header("authorization", format!("Bearer {}", key.secret.expose_secret()))
            .header("content-type", "application/json");
        if let Some(id) = request_id {
            request = request.header("x-request-id", id);
        }
        let body = Full::new(Bytes::from_static(br#"{"to":"+15550100","text":"hi"}"#));
        self.server.send(request.body(body).expect("a request")).await
    }

    /// The status of a POST with `key` and no idempotency key.
    async fn status(&self, key: &CreatedKey) -> StatusCode {
        self.post(key, None).await.status
    }

    /// `DELETE /v1/keys/{id}` of `key`, authenticated with `admin`.
    async fn revoke(&self, admin: &CreatedKey, key: &CreatedKey) -> TestResponse {
        let request = self
            .server
            .request("DELETE", &format!("/v1/keys/{}", key.info.id))
            .header("authorization", format!("Bearer {}", admin.secret.expose_secret()));
        self.server.send_empty(request).await
    }
}

/// Two instances on one fresh prefix, or `None` when Redis is not configured.
/// The prefix's keys are deleted when the fleet is dropped.
struct Fleet {
    instances: [Instance; 2],
    handler: Arc<Handler>,
    control: TestRedis,
}

impl Fleet {
    async fn start(test: &str) -> Option<Fleet> {
        Fleet::start_with(test, None).await
    }

    /// Instances that look keys up through a `CachedKeyStore` with this TTL.
    async fn start_cached(test: &str, ttl: Duration) -> Option<Fleet> {
        Fleet::start_with(test, Some(ttl)).await
    }

    async fn start_with(test: &str, cache_ttl: Option<Duration>) -> Option<Fleet> {
        // Generous timeouts: the machine is shared and 1,000 requests queue up.
        let control = TestRedis::connect_with(test, |config| config.operation_timeout(Duration::from_secs(5))).await?;
        let handler = Arc::new(Handler::default());
        let instances = [
            Instance::start(control.config().clone(), handler.clone(), cache_ttl).await,
            Instance::start(control.config().clone(), handler.clone(), cache_ttl).await,
        ];
        Some(Fleet {
            instances,
            handler,
            control,
        })
    }

    async fn key(&self, account: &str, plan: &str) -> CreatedKey {
        self.instances[0]
            .keys
            .create(NewKey::new(account, KeyKind::Production).plan(plan))
            .await
            .expect("a new key")
    }

    // The UTC day by the clock the rate limits use: Redis TIME.
    async fn redis_day(&self) -> u64 {
        let now = self.control.server_time().await.expect("Redis TIME");
        tollgate_core::unix_secs(now) / 86_400
    }

    async fn cleanup(self) {
        self.control.cleanup().await;
    }

    /// Cleans up a fleet the test shared with its request tasks, which
    /// must all have finished.
    async fn cleanup_shared(fleet: Arc<Fleet>) {
        match Arc::try_unwrap(fleet) {
            Ok(fleet) => fleet.cleanup().await,
            Err(_) => panic!("every request finished"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_requests_across_two_instances_admit_exactly_the_quota() {
    let Some(fleet) = Fleet::start("fleet_quota").await else {
        return;
    };
    let fleet = Arc::new(fleet);
    let key = Arc::new(fleet.key("acct_fleet", SMALL_QUOTA_PLAN).await);
    let day_before = fleet.redis_day().await;
    let requests: Vec<_> = (0..1_000)
        .map(|i| {
            let (fleet, key) = (fleet.clone(), key.clone());
            tokio::spawn(async move { fleet.instances[i % 2].post(&key, None).await })
        })
        .collect();
    let (mut admitted, mut refused) = ([0usize; 2], [0usize; 2]);
    for (i, request) in requests.into_iter().enumerate() {
        let response = request.await.expect("no request panicked");
        match response.status {
            StatusCode::ACCEPTED => admitted[i % 2] += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                refused[i % 2] += 1;
                let body = response.json();
                assert_eq!(body["error"]["code"], "RATE_LIMITED", "{}", response.text());
            }
            other => panic!("request {i}: unexpected {other}: {}", response.text()),
        }
    }
    let day_after = fleet.redis_day().await;
    let total = admitted[0] + admitted[1];
    if day_before == day_after {
        assert_eq!(total, SMALL_QUOTA, "exactly the daily quota across both instances");
        assert_eq!(refused[0] + refused[1], 1_000 - SMALL_QUOTA);
    } else {
        // The quota reset at 00:00 UTC during the run: at most two days' worth.
        assert!(total <= 2 * SMALL_QUOTA, "{total} admitted across midnight");
    }
    // Which instance admitted the 40 depends on timing; that each one refused
    // once the shared quota was spent does not.
    assert!(
        refused.iter().all(|&count| count >= 500 - 2 * SMALL_QUOTA),
        "both instances enforce the shared quota: admitted {admitted:?}, refused {refused:?}"
    );
    assert_eq!(
        fleet.handler.runs.load(Ordering::SeqCst),
        total,
        "only admitted requests ran"
    );
    let next = fleet.instances[1].post(&key, None).await;
    assert_eq!(next.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(next.json()["error"]["limit"], "daily", "{}", next.text());
    Fleet::cleanup_shared(fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_duplicates_across_two_instances_run_the_handler_once() {
    let Some(fleet) = Fleet::start("fleet_idempotency").await else {
        return;
    };
    let fleet = Arc::new(fleet);
    // Premium: 100 per second, so the rate limit lets all 50 through.
    let key = Arc::new(fleet.key("acct_fleet", "premium").await);
    let request_id = unique_name("req");
    // The first request to reach the handler waits there until every other
    // duplicate has been answered, so all 49 meet it in flight.
    fleet.handler.hold.store(true, Ordering::SeqCst);
    let (answers, mut answered) = mpsc::unbounded_channel();
    for i in 0..50 {
        let (fleet, key, request_id, answers) = (fleet.clone(), key.clone(), request_id.clone(), answers.clone());
        tokio::spawn(async move {
            let response = fleet.instances[i % 2].post(&key, Some(&request_id)).await;
            let _ = answers.send((i % 2, response));
        });
    }
    drop(answers);
    let mut in_progress = [0usize; 2];
    let wait = Duration::from_secs(30);
    for _ in 0..49 {
        let (instance, response) = tokio::time::timeout(wait, answered.recv())
            .await
            .expect("49 duplicates are answered while the first runs (a second execution would hang here)")
            .expect("an answer");
        assert_eq!(response.status, StatusCode::CONFLICT, "{}", response.text());
        assert_eq!(response.json()["error"]["code"], IN_PROGRESS_CODE);
        assert_eq!(response.header("retry-after"), "1");
        in_progress[instance] += 1;
    }
    assert_eq!(fleet.handler.runs.load(Ordering::SeqCst), 1, "the handler runs once");
    assert!(
        in_progress[0] > 0 && in_progress[1] > 0,
        "both instances saw the claim: {in_progress:?}"
    );
    fleet.handler.hold.store(false, Ordering::SeqCst);
    fleet.handler.gate.notify_one();
    let (_, first) = tokio::time::timeout(wait, answered.recv())
        .await
        .expect("the first request completes")
        .expect("an answer");
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text());
    assert_eq!(first.text(), r#"{"id":"msg_1","status":"queued"}"#);
    // Retries on either instance replay the stored response.
    for instance in &fleet.instances {
        let replay = instance.post(&key, Some(&request_id)).await;
        assert_eq!(replay.status, StatusCode::ACCEPTED);
        assert_eq!(replay.header("idempotent-replayed"), "true");
        assert_eq!(replay.body, first.body, "byte for byte");
    }
    assert_eq!(
        fleet.handler.runs.load(Ordering::SeqCst),
        1,
        "replays never run the handler"
    );
    Fleet::cleanup_shared(fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_through_one_instance_is_refused_by_the_other_on_its_next_request() {
    let Some(fleet) = Fleet::start("fleet_revocation").await else {
        return;
    };
    let admin = fleet.key("acct_fleet", "premium").await;
    let doomed = fleet.key("acct_fleet", "premium").await;
    // The other instance has been using the key.
    for _ in 0..3 {
        assert_eq!(fleet.instances[1].status(&doomed).await, StatusCode::ACCEPTED);
    }
    assert_eq!(
        fleet.instances[0].revoke(&admin, &doomed).await.status,
        StatusCode::NO_CONTENT
    );
    let refused = fleet.instances[1].post(&doomed, None).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text());
    assert_eq!(refused.text(), INVALID_KEY_BODY);
    assert_eq!(
        fleet.instances[1].status(&admin).await,
        StatusCode::ACCEPTED,
        "other keys work"
    );
    fleet.cleanup().await;
}

const CACHE_TTL: Duration = Duration::from_millis(200);
// How long one polling request may take on a busy machine; the strict
// check is on when admitted requests were sent, not on this.
const POLL_MARGIN: Duration = Duration::from_millis(400);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_cached_lookups_a_key_revoked_through_one_instance_is_refused_by_the_other_within_the_ttl() {
    let Some(fleet) = Fleet::start_cached("fleet_cached_revocation", CACHE_TTL).await else {
        return;
    };
    let admin = fleet.key("acct_fleet", POLLING_PLAN).await;
    let doomed = fleet.key("acct_fleet", POLLING_PLAN).await;
    // Both instances have the key cached, the revoking one included.
    assert_eq!(fleet.instances[0].status(&doomed).await, StatusCode::ACCEPTED);
    let cached_from = Instant::now();
    assert_eq!(fleet.instances[1].status(&doomed).await, StatusCode::ACCEPTED);
    assert_eq!(
        fleet.instances[0].revoke(&admin, &doomed).await.status,
        StatusCode::NO_CONTENT
    );
    let revoked = Instant::now();

    let here = fleet.instances[0].post(&doomed, None).await;
    assert_eq!(
        here.status,
        StatusCode::UNAUTHORIZED,
        "the revoking instance refuses the key on its next request: {}",
        here.text()
    );
    assert_eq!(here.text(), INVALID_KEY_BODY);

    // The other instance may serve its cached record until the TTL of the
    // read that cached it, which began before the revocation: a request
    // sent at `revoked + CACHE_TTL` or later must be refused.
    let mut stale = 0;
    let refused_after = loop {
        let sent = Instant::now();
        let response = fleet.instances[1].post(&doomed, None).await;
        let answered = Instant::now();
        match response.status {
            StatusCode::ACCEPTED => {
                assert!(
                    sent < revoked + CACHE_TTL,
                    "admitted by a request sent {:?} after the revocation, past the {CACHE_TTL:?} TTL",
                    sent - revoked
                );
                stale += 1;
            }
            StatusCode::UNAUTHORIZED => {
                assert_eq!(response.text(), INVALID_KEY_BODY);
                // Refused while its cached read was surely younger than the
                // TTL would mean the instance never served from its cache.
                assert!(
                    answered >= cached_from + CACHE_TTL,
                    "refused {:?} after it was cached: the instance did not use its cache",
                    answered - cached_from
                );
                break answered - revoked;
            }
            other => panic!("unexpected {other}: {}", response.text()),
        }
        assert!(
            answered < revoked + CACHE_TTL + POLL_MARGIN,
            "still admitted {:?} after the revocation",
            answered - revoked
        );
    };
    assert!(
        refused_after <= CACHE_TTL + POLL_MARGIN,
        "refused after {refused_after:?}"
    );
    eprintln!("refused by the other instance {refused_after:?} after the revocation ({stale} stale admissions)");
    assert_eq!(
        fleet.instances[1].status(&admin).await,
        StatusCode::ACCEPTED,
        "other keys work"
    );
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_cache_a_busy_key_costs_redis_one_lookup_and_one_last_use_write() {
    let Some(control) = TestRedis::connect("fleet_cached_last_use").await else {
        return;
    };
    let stores = control.another_instance().await;
    // Counts what the auth layer asks of Redis.
    let counted = FakeStore::new(stores.key_store());
    // A TTL longer than the test: every lookup after the first is a hit.
    let keys = CachedKeyStore::new(counted.clone()).ttl(Duration::from_secs(3600));
    let key = KeyManager::new(keys.clone())
        .create(NewKey::new("acct_fleet", KeyKind::Production))
        .await
        .expect("a new key");
    let service = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(keys))
        .service(service_fn(|_: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        }));
    for _ in 0..50 {
        let request = Request::get("/v1/messages")
            .header("authorization", format!("Bearer {}", key.secret.expose_secret()))
            .body(Full::default())
            .expect("a request");
        let response = service.clone().oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(counted.calls("find_by_hash"), 1, "one HGETALL, then the cache");
    // The auth layer writes a use only when the recorded one is a minute
    // old; the cache shows it the use it just wrote, so it writes once.
    assert_eq!(
        counted.calls("record_last_use"),
        1,
        "one last-use write for 50 requests"
    );
    let stored = stores
        .key_store()
        .find_by_id(&key.info.id)
        .await
        .expect("find")
        .expect("the key");
    assert!(stored.last_used_at.is_some(), "the use reached Redis");
    control.cleanup().await;
}
