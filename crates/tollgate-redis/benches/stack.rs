//! The full stack (BearerAuthLayer + RateLimitLayer) on Redis stores,
//! against the same stack on memory stores and the bare service, with 1, 16
//! and 64 requests in flight (tokio tasks driving the tower service
//! directly, 64 API keys). `two-pings` is the floor under any Redis-backed
//! stack: a "request" that is just the two round trips this one needs (two
//! `PING`s on a connection manager). Before timing, it counts the Redis
//! round trips a request costs from `INFO commandstats` deltas.
//!
//! REDIS_URL=redis://127.0.0.1:6379 cargo bench -p tollgate-redis --bench stack -- --warm-up-time 1 --measurement-time 3
//!
//! Without `REDIS_URL` only the memory and bare variants run.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Debug;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tollgate_auth::{BearerAuthLayer, KeyManager, NewKey};
use tollgate_core::conformance::unique_name;
use tollgate_core::keys::{KeyRegistry, MemoryKeyStore};
use tollgate_core::rate_limit::{MemoryRateLimitStore, Plan, RateLimitStore};
use tollgate_core::KeyKind;
use tollgate_ratelimit::{Plans, RateLimitLayer};
use tollgate_redis::{RedisConfig, RedisStores};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

const CONCURRENCY: [usize; 3] = [1, 16, 64];
const KEYS: usize = 64;
// Generous limits: every request takes the admitting path.
const PLAN: &str = "bench";

type Req = Request<Full<Bytes>>;

fn plans() -> Plans {
    Plans::seed().with(Plan::new(PLAN, 1_000_000).with_burst(1_000_000))
}

async fn handler(_request: Req) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"sent"))))
}

// The stack, on any stores, and the bearer tokens of KEYS keys in them.
async fn stack<K: KeyRegistry + Clone, R: RateLimitStore>(
    keys: K,
    limits: R,
) -> (
    impl Service<Req, Response = Response<impl Send>, Error = impl Debug, Future = impl Send> + Clone + Send + 'static,
    Vec<String>,
) {
    let manager = KeyManager::new(keys.clone()).max_active_keys(None);
    let mut tokens = Vec::with_capacity(KEYS);
    for _ in 0..KEYS {
        let created = manager
            .create(NewKey::new("acct_bench", KeyKind::Production).plan(PLAN))
            .await
            .expect("a key");
        tokens.push(format!("Bearer {}", created.secret.expose_secret()));
    }
    let service = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(keys))
        .layer(RateLimitLayer::new(limits).plans(plans()))
        .service(service_fn(handler));
    (service, tokens)
}

fn request(token: &str) -> Req {
    Request::post("/v1/messages")
        .header("authorization", token)
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("a request")
}

// `total` requests over `concurrency` tasks (each one request in flight at
// a time, keyed by its own token); the wall time.
async fn drive<S, B>(service: S, tokens: &[String], concurrency: usize, total: u64) -> Duration
where
    S: Service<Req, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Debug,
    S::Future: Send,
    B: Send + 'static,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let count = total / concurrency as u64 + u64::from((task as u64) < total % concurrency as u64);
            let token = tokens[task % tokens.len()].clone();
            let service = service.clone();
            tokio::spawn(async move {
                for _ in 0..count {
                    let response = service.clone().oneshot(request(&token)).await.expect("an answer");
                    assert_eq!(response.status(), StatusCode::OK);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("no task panicked");
    }
    started.elapsed()
}

// Commands the server has run, by name (INFO itself left out).
async fn command_counts(connection: &mut redis::aio::MultiplexedConnection) -> BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(connection)
        .await
        .expect("INFO");
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|field| field.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .filter(|(name, _)| name != "info")
        .collect()
}

fn bench_stack(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let bare = service_fn(handler);
    let (memory, memory_tokens) = runtime.block_on(stack(MemoryKeyStore::new(), MemoryRateLimitStore::new()));
    let redis_url = std::env::var("REDIS_URL").ok();
    let redis = redis_url.as_ref().map(|url| {
        runtime.block_on(async {
            let config = RedisConfig::new(url.clone()).prefix(format!("{}:", unique_name("tgbench")));
            let stores = RedisStores::connect(config).await.expect("connect to REDIS_URL");
            let (service, tokens) = stack(stores.key_store(), stores.rate_limit_store()).await;
            (stores, service, tokens)
        })
    });
    // The floor under any Redis-backed stack: a "request" that is two PINGs
    // on the same kind of connection (auth and rate limit each need one round trip).
    let two_pings = redis_url.as_ref().map(|url| {
        let client = redis::Client::open(url.as_str()).expect("a valid URL");
        let connection = runtime
            .block_on(redis::aio::ConnectionManager::new(client))
            .expect("connect");
        service_fn(move |_request: Req| {
            let mut connection = connection.clone();
            async move {
                for _ in 0..2 {
                    redis::cmd("PING")
                        .query_async::<String>(&mut connection)
                        .await
                        .expect("PONG");
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"sent"))))
            }
        })
    });
    if redis.is_none() {
        eprintln!("REDIS_URL is not set: the Redis variant is skipped");
    }

    // Round trips per request, measured once outside the timed runs (after a
    // warm-up, so first-use writes such as the last-use timestamps and
    // script loading are not counted).
    if let (Some(url), Some((_, service, tokens))) = (&redis_url, &redis) {
        runtime.block_on(async {
            let client = redis::Client::open(url.as_str()).expect("a valid URL");
            let mut connection = client.get_multiplexed_async_connection().await.expect("connect");
            drive(service.clone(), tokens, 64, 640).await;
            let before = command_counts(&mut connection).await;
            let requests = 6_400;
            drive(service.clone(), tokens, 64, requests).await;
            let after = command_counts(&mut connection).await;
            // commandstats also counts the commands a script runs. Outside
            // scripts this stack sends only HGETALL (the key lookup) and
            // EVALSHA (the rate-limit script); the last-use write happens
            // once a minute per key, so the warm-up took it out.
            let per_request = |name: &str| {
                let delta = after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0);
                delta as f64 / requests as f64
            };
            let round_trips = per_request("hgetall") + per_request("evalsha");
            let nested: Vec<String> = after
                .keys()
                .filter(|name| !matches!(name.as_str(), "hgetall" | "evalsha"))
                .map(|name| (name, per_request(name)))
                .filter(|(_, count)| *count > 0.0)
                .map(|(name, count)| format!("{name} {count:.2}"))
                .collect();
            eprintln!(
                "Redis round trips per request (auth + rate limit): {round_trips:.2} \
                 (HGETALL {:.2}, EVALSHA {:.2}); inside the script: {}",
                per_request("hgetall"),
                per_request("evalsha"),
                nested.join(", ")
            );
        });
    }

    let mut group = c.benchmark_group("stack");
    group.throughput(Throughput::Elements(1));
    for concurrency in CONCURRENCY {
        group.bench_with_input(
            BenchmarkId::new("bare", concurrency),
            &concurrency,
            |b, &concurrency| {
                let tokens = ["Bearer none".to_owned()];
                b.iter_custom(|iters| runtime.block_on(drive(bare, &tokens, concurrency, iters)));
            },
        );
        group.bench_with_input(
            BenchmarkId::new("memory", concurrency),
            &concurrency,
            |b, &concurrency| {
                b.iter_custom(|iters| runtime.block_on(drive(memory.clone(), &memory_tokens, concurrency, iters)));
            },
        );
        if let Some((_, service, tokens)) = &redis {
            group.bench_with_input(
                BenchmarkId::new("redis", concurrency),
                &concurrency,
                |b, &concurrency| {
                    b.iter_custom(|iters| runtime.block_on(drive(service.clone(), tokens, concurrency, iters)));
                },
            );
        }
        if let Some(pings) = &two_pings {
            group.bench_with_input(
                BenchmarkId::new("two-pings", concurrency),
                &concurrency,
                |b, &concurrency| {
                    let tokens = ["Bearer none".to_owned()];
                    b.iter_custom(|iters| runtime.block_on(drive(pings.clone(), &tokens, concurrency, iters)));
                },
            );
        }
    }
    group.finish();

    if let Some((stores, _, _)) = &redis {
        runtime.block_on(stores.purge()).expect("delete the bench's keys");
    }
}

criterion_group!(benches, bench_stack);

fn main() {
    benches();
    criterion::Criterion::default().configure_from_args().final_summary();
}
