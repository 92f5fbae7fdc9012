//! The stores behind the layers: in memory for one instance, Redis for a fleet.

use tollgate_core::{MemoryAllowlistStore, MemoryIdempotencyStore, MemoryKeyStore, MemoryRateLimitStore, SharedClock};

/// The key store.
pub type Keys = MemoryKeyStore;
/// The allowlist store.
pub type Allowlists = MemoryAllowlistStore;
/// The rate-limit store.
pub type RateLimits = MemoryRateLimitStore;
/// The idempotency store.
pub type Idempotency = MemoryIdempotencyStore;

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
            keys: MemoryKeyStore::new(),
            allowlists: MemoryAllowlistStore::new(),
            rate_limits: MemoryRateLimitStore::new().with_clock(clock.clone()),
            idempotency: MemoryIdempotencyStore::new().with_clock(clock),
        }
    }

    /// Stores on the Redis server at `url`.
    pub async fn redis(url: &str) -> Result<Stores, String> {
        Err(format!("Redis stores are not wired yet ({url})"))
    }
}
