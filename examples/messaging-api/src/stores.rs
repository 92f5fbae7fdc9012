//! The stores behind the layers: in memory for one instance, or Redis so a
//! fleet of instances shares keys, quotas, idempotency records and
//! allowlists. The choice is made at start-up, so each store is an
//! [`EitherStore`] of the two.
//!
//! Messages, webhook endpoints and usage counts are this example's own data
//! and stay in each instance's memory.
//!
//! On Redis, API keys are looked up through a [`CachedKeyStore`] so that an
//! authenticated request costs one Redis round trip (the rate limit), not
//! two. The price is a bound on revocation across the fleet: a key revoked
//! (or rotated out) through one instance is refused by that instance on its
//! next request, and by every other instance within one second
//! ([`DEFAULT_TTL`](tollgate_core::cached_key_store::DEFAULT_TTL)). A key
//! created on one instance works on the others at once (unknown keys are
//! never cached).

use tollgate_core::{
    CachedKeyStore, EitherStore, MemoryAllowlistStore, MemoryIdempotencyStore, MemoryKeyStore, MemoryRateLimitStore,
    SharedClock,
};
use tollgate_redis::{
    RedisAllowlistStore, RedisConfig, RedisIdempotencyStore, RedisKeyStore, RedisRateLimitStore, RedisStores,
};

/// The key store: on Redis, behind a per-instance cache (see the [module docs](self)).
pub type Keys = EitherStore<MemoryKeyStore, CachedKeyStore<RedisKeyStore>>;
/// The allowlist store.
pub type Allowlists = EitherStore<MemoryAllowlistStore, RedisAllowlistStore>;
/// The rate-limit store.
pub type RateLimits = EitherStore<MemoryRateLimitStore, RedisRateLimitStore>;
/// The idempotency store.
pub type Idempotency = EitherStore<MemoryIdempotencyStore, RedisIdempotencyStore>;

/// Every store the server uses.
#[derive(Clone)]
pub struct Stores {
    /// API keys.
    pub keys: Keys,
    /// IP allowlists.
    pub allowlists: Allowlists,
    /// Rate limits and daily quotas.
    pub rate_limits: RateLimits,
    /// Idempotency records.
    pub idempotency: Idempotency,
}

impl Stores {
    /// Stores in process memory, on `clock`.
    pub fn memory(clock: SharedClock) -> Stores {
        Stores {
            keys: EitherStore::Left(MemoryKeyStore::new()),
            allowlists: EitherStore::Left(MemoryAllowlistStore::new()),
            rate_limits: EitherStore::Left(MemoryRateLimitStore::new().with_clock(clock.clone())),
            idempotency: EitherStore::Left(MemoryIdempotencyStore::new().with_clock(clock)),
        }
    }

    /// Stores on the Redis server at `url` (Redis keeps time for quotas and expiries).
    pub async fn redis(url: &str) -> Result<Stores, String> {
        Stores::redis_with(RedisConfig::new(url)).await
    }

    /// Stores on Redis with a full configuration (key prefix, timeouts). Key
    /// lookups are cached for [`DEFAULT_TTL`](tollgate_core::cached_key_store::DEFAULT_TTL) (one second): the bound on how
    /// late another instance's revocation takes effect here.
    pub async fn redis_with(config: RedisConfig) -> Result<Stores, String> {
        let redis = RedisStores::connect(config)
            .await
            .map_err(|error| format!("cannot use Redis: {error}"))?;
        Ok(Stores {
            keys: EitherStore::Right(CachedKeyStore::new(redis.key_store())),
            allowlists: EitherStore::Right(redis.allowlist_store()),
            rate_limits: EitherStore::Right(redis.rate_limit_store()),
            idempotency: EitherStore::Right(redis.idempotency_store()),
        })
    }
}
