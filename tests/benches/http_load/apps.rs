//! The servers under test: one tiny handler behind each configuration's
//! middleware ([`crate::stacks`]), served by axum on a loopback port.
//!
//! Every configuration answers `GET /v1/ping` with 200 `pong` to a request
//! carrying a valid key, so every configuration does the same work apart
//! from its middleware. Each serves 10,000 keys of its own, created through
//! `KeyManager` in its key store, and the load uses them round-robin (or,
//! over the limit, in series; see `load`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::serve::ListenerExt;
use axum::Router;
use futures_util::{StreamExt, TryStreamExt};
use http::{HeaderValue, Request};
use tollgate_auth::{BearerAuthLayer, KeyManager, NewKey};
use tollgate_core::allowlist::{CachedAllowlistStore, MemoryAllowlistStore};
use tollgate_core::changes::Changes;
use tollgate_core::conformance::unique_name;
use tollgate_core::idempotency::MemoryIdempotencyStore;
use tollgate_core::keys::{CachedKeyStore, KeyRegistry, KeyStore, MemoryKeyStore, MAX_NEGATIVE_TTL};
use tollgate_core::rate_limit::Plan;
use tollgate_core::rate_limit::{MemoryRateLimitStore, RateLimitStore, RefusalCache};
use tollgate_core::KeyKind;
use tollgate_ratelimit::RateLimitLayer;
use tollgate_redis::{subscribe_changes, ChangeSubscription, RedisConfig, RedisStores};
use tower::ServiceBuilder;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;
use tower_governor::{GovernorError, GovernorLayer};
use tower_http::validate_request::ValidateRequestHeaderLayer;

use crate::configs::Config;
use crate::load::{Drive, KeyRing, Target};
use crate::stacks::{full_stack, handler, plans, ACCOUNT, KEYS, NEVER_REACHED, PLAN};

// Keys created at once while setting up (Redis: round trips in flight).
const CREATING_AT_ONCE: usize = 32;

// The fleet configuration's cache TTL. Pushed changes invalidate at once,
// so the TTL only bounds a change whose message is lost while the
// subscription looks healthy (a lost connection drops everything when it
// comes back). Longer than the whole benchmark: with one minute, every
// entry filled in the first run expires within the same second, about
// when the round trips are counted.
const FLEET_TTL: Duration = Duration::from_secs(300);

// Generous, so that a busy shared machine shows up as latency, not as 503s.
const REDIS_OPERATION_TIMEOUT: Duration = Duration::from_secs(2);

/// A configuration being served.
pub struct App {
    pub config: Config,
    pub target: Target,
    /// The Redis stores behind it, if any (their keys are purged at the end).
    pub redis: Option<RedisStores>,
    /// Its Redis URL, if any.
    pub redis_url: Option<String>,
    /// The subscription feeding its caches' invalidation, if any (kept while it serves).
    pub _subscription: Option<ChangeSubscription>,
}

/// Builds `config`'s server and serves it on 127.0.0.1. Must run inside
/// the server's runtime: the server's tasks (and Redis's connection) are
/// spawned onto it.
pub async fn start(config: Config, redis_url: Option<&str>) -> Result<App, String> {
    let mut redis = None;
    let mut subscription = None;
    let plan = if config.over_limit() {
        Plan::free()
    } else {
        plans_plan()
    };
    let (router, key) = match config {
        Config::Bare => (handler(), throwaway_keys().await?),
        Config::Governor => {
            let key = throwaway_keys().await?;
            (governor(&key), key)
        }
        Config::Memory | Config::MemoryOverLimit => {
            let keys = Arc::new(MemoryKeyStore::new());
            let key = create_keys(&keys, &plan.name).await?;
            (auth_and_rate_limit(keys, MemoryRateLimitStore::new()), key)
        }
        Config::Full => {
            let keys = Arc::new(MemoryKeyStore::new());
            let key = create_keys(&keys, &plan.name).await?;
            let stack = full_stack(
                keys,
                MemoryAllowlistStore::new(),
                MemoryRateLimitStore::new(),
                MemoryIdempotencyStore::new(),
            );
            (stack, key)
        }
        Config::Redis
        | Config::RedisCached
        | Config::FullRedis
        | Config::FullRedisFleet
        | Config::RedisOverLimit
        | Config::RedisOverLimitRefusalCache => {
            let url = redis_url.ok_or("REDIS_URL is not set")?;
            let config_redis = RedisConfig::new(url)
                .prefix(format!("{}:", unique_name("tgbench")))
                .operation_timeout(REDIS_OPERATION_TIMEOUT);
            let stores = RedisStores::connect(config_redis.clone())
                .await
                .map_err(|error| format!("connecting to Redis: {error}"))?;
            let keys = Arc::new(stores.key_store());
            let key = create_keys(&keys, &plan.name).await?;
            let router = match config {
                Config::Redis | Config::RedisOverLimit => auth_and_rate_limit(keys, stores.rate_limit_store()),
                Config::RedisOverLimitRefusalCache => {
                    auth_and_rate_limit(keys, RefusalCache::new(stores.rate_limit_store()))
                }
                // The default TTL (1 s): the messaging-api's fleet setting.
                Config::RedisCached => {
                    auth_and_rate_limit(Arc::new(CachedKeyStore::from_shared(keys)), stores.rate_limit_store())
                }
                Config::FullRedisFleet => {
                    let changes = Changes::new();
                    subscription = Some(
                        subscribe_changes(&config_redis, changes.clone())
                            .map_err(|error| format!("subscribing to changes: {error}"))?,
                    );
                    let cached_keys = CachedKeyStore::from_shared(keys)
                        .ttl(FLEET_TTL)
                        .negative_ttl(MAX_NEGATIVE_TTL)
                        .invalidated_by(&changes);
                    let lists = CachedAllowlistStore::new(stores.allowlist_store())
                        .ttl(FLEET_TTL)
                        .invalidated_by(&changes);
                    full_stack(
                        Arc::new(cached_keys),
                        lists,
                        RefusalCache::new(stores.rate_limit_store()),
                        stores.idempotency_store(),
                    )
                }
                _ => full_stack(
                    keys,
                    stores.allowlist_store(),
                    stores.rate_limit_store(),
                    stores.idempotency_store(),
                ),
            };
            redis = Some(stores);
            (router, key)
        }
    };
    let authorizations = key
        .iter()
        .map(|key| HeaderValue::try_from(format!("Bearer {key}")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("a key is not a header value: {error}"))?;
    let drive = if config.over_limit() {
        let limits = plan.limits();
        Drive::OverLimit {
            burst: u64::from(limits.burst()),
            interval: limits.emission_interval(),
        }
    } else {
        Drive::RoundRobin
    };
    let addr = serve(router).await?;
    Ok(App {
        config,
        target: Target {
            addr,
            keys: Arc::new(KeyRing::new(authorizations, drive)),
        },
        redis,
        redis_url: redis_url.filter(|_| config.uses_redis()).map(str::to_owned),
        _subscription: subscription,
    })
}

fn auth_and_rate_limit<K: KeyStore>(keys: Arc<K>, limits: impl RateLimitStore) -> Router {
    handler().layer(
        ServiceBuilder::new()
            .layer(BearerAuthLayer::from_shared(keys))
            .layer(RateLimitLayer::new(limits).plans(plans())),
    )
}

/// tower_governor limits per key like tollgate's RateLimitLayer does: the
/// key here is the `Authorization` header, which tower-http has checked.
#[derive(Clone)]
struct AuthorizationKey;

impl KeyExtractor for AuthorizationKey {
    type Key = HeaderValue;

    fn extract<T>(&self, request: &Request<T>) -> Result<HeaderValue, GovernorError> {
        request
            .headers()
            .get(http::header::AUTHORIZATION)
            .cloned()
            .ok_or(GovernorError::UnableToExtractKey)
    }
}

// tower-http's `ValidateRequest` trait fixes the check's error type to a whole response.
#[allow(clippy::result_large_err)]
fn governor(keys: &[String]) -> Router {
    let limits = GovernorConfigBuilder::default()
        .key_extractor(AuthorizationKey)
        .period(Duration::from_secs(1) / NEVER_REACHED)
        .burst_size(NEVER_REACHED)
        .finish()
        .expect("a valid governor configuration");
    // tower-http's bearer check knows one static token; for 10,000 keys
    // its custom check looks the header up in a set of them.
    let known: Arc<HashSet<Vec<u8>>> = Arc::new(keys.iter().map(|key| format!("Bearer {key}").into_bytes()).collect());
    let bearer =
        ValidateRequestHeaderLayer::custom(move |request: &mut Request<Body>| -> Result<(), http::Response<Body>> {
            match request.headers().get(http::header::AUTHORIZATION) {
                Some(value) if known.contains(value.as_bytes()) => Ok(()),
                _ => Err(http::Response::builder()
                    .status(http::StatusCode::UNAUTHORIZED)
                    .body(Body::empty())
                    .expect("a valid response")),
            }
        });
    handler().layer(GovernorLayer::<_, _, Body>::new(limits)).layer(bearer)
}

// The plan of the round-robin configurations' keys.
fn plans_plan() -> Plan {
    plans().get(PLAN).cloned().expect("the benchmark's plan")
}

async fn create_keys<K: KeyRegistry>(keys: &Arc<K>, plan: &str) -> Result<Vec<String>, String> {
    let manager = KeyManager::from_shared(keys.clone()).max_active_keys(None);
    futures_util::stream::iter(0..KEYS)
        .map(|_| {
            let manager = manager.clone();
            async move {
                let created = manager
                    .create(NewKey::new(ACCOUNT, KeyKind::Production).label("http_load").plan(plan))
                    .await
                    .map_err(|error| format!("creating the benchmark's keys: {error}"))?;
                Ok::<_, String>(created.secret.expose_secret().to_owned())
            }
        })
        .buffered(CREATING_AT_ONCE)
        .try_collect()
        .await
}

// Real tollgate keys for configurations that do not look keys up, so
// every configuration receives byte-for-byte the same kind of requests.
async fn throwaway_keys() -> Result<Vec<String>, String> {
    create_keys(&Arc::new(MemoryKeyStore::new()), PLAN).await
}

async fn serve(router: Router) -> Result<SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|error| format!("binding a loopback port: {error}"))?;
    let addr = listener
        .local_addr()
        .map_err(|error| format!("the bound address: {error}"))?;
    // Small responses on keep-alive connections: do not let Nagle hold them.
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(error) = axum::serve(listener, service).await {
            eprintln!("http_load: the server on {addr} stopped: {error}");
        }
    });
    Ok(addr)
}
