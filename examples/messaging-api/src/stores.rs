//! The stores behind the layers: in memory for one instance, or Redis so a
//! fleet of instances shares keys, quotas, idempotency records and
//! allowlists. The choice is made at start-up; each store is held behind
//! its trait (`Arc<dyn …>`), so nothing else in the server depends on it.
//!
//! Messages, webhook endpoints and usage counts are this example's own data
//! and stay in each instance's memory.
//!
//! On Redis, API keys are looked up through a [`CachedKeyStore`] so that an
//! authenticated request costs one Redis round trip (the rate limit), not
//! two. The price is a bound on revocation across the fleet: a key revoked
//! (or rotated out) through one instance is refused by that instance on its
//! next request, and by every other instance within one second
//! ([`DEFAULT_TTL`](tollgate_core::keys::DEFAULT_TTL)). A key
//! created on one instance works on the others at once (unknown keys are
//! never cached).

use std::sync::Arc;

use tollgate_core::allowlist::{AllowlistStore, MemoryAllowlistStore};
use tollgate_core::idempotency::{IdempotencyStore, MemoryIdempotencyStore};
use tollgate_core::keys::{CachedKeyStore, KeyRegistry, MemoryKeyStore};
use tollgate_core::rate_limit::{MemoryRateLimitStore, RateLimitStore};
use tollgate_core::SharedClock;
use tollgate_redis::{RedisConfig, RedisStores};

/// Every store the server uses, each behind its trait.
#[derive(Clone)]
pub struct Stores {
    /// API keys.
    pub keys: Arc<dyn KeyRegistry>,
    /// IP allowlists.
    pub allowlists: Arc<dyn AllowlistStore>,
    /// Rate limits and daily quotas.
    pub rate_limits: Arc<dyn RateLimitStore>,
    /// Idempotency records.
    pub idempotency: Arc<dyn IdempotencyStore>,
}

impl Stores {
    /// Stores in process memory, on `clock`.
    pub fn memory(clock: SharedClock) -> Stores {
        Stores {
            keys: Arc::new(MemoryKeyStore::new()),
            allowlists: Arc::new(MemoryAllowlistStore::new()),
            rate_limits: Arc::new(MemoryRateLimitStore::new().with_clock(clock.clone())),
            idempotency: Arc::new(MemoryIdempotencyStore::new().with_clock(clock)),
        }
    }

    /// Stores on the Redis server at `url` (Redis keeps time for quotas and expiries).
    pub async fn redis(url: &str) -> Result<Stores, String> {
        Stores::redis_with(RedisConfig::new(url)).await
    }

    /// Stores on Redis with a full configuration (key prefix, timeouts). Key
    /// lookups are cached for [`DEFAULT_TTL`](tollgate_core::keys::DEFAULT_TTL) (one second): the bound on how
    /// late another instance's revocation takes effect here.
    pub async fn redis_with(config: RedisConfig) -> Result<Stores, String> {
        let redis = RedisStores::connect(config)
            .await
            .map_err(|error| format!("cannot use Redis: {error}"))?;
        Ok(Stores {
            keys: Arc::new(CachedKeyStore::new(redis.key_store())),
            allowlists: Arc::new(redis.allowlist_store()),
            rate_limits: Arc::new(redis.rate_limit_store()),
            idempotency: Arc::new(redis.idempotency_store()),
        })
    }
}
