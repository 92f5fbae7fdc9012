//! The configurations the benchmark can compare, by the name used on the
//! command line.

/// One server configuration: the same handler behind different middleware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Config {
    /// The handler alone: the baseline every ratio is taken against.
    Bare,
    /// tollgate's whole stack on in-memory stores.
    Full,
    /// tower-http's static bearer check plus tower_governor.
    Governor,
    /// BearerAuth + RateLimit on in-memory stores.
    Memory,
    /// BearerAuth + RateLimit on Redis stores.
    Redis,
    /// BearerAuth over a `CachedKeyStore` in front of Redis + RateLimit on Redis.
    RedisCached,
    /// tollgate's whole stack on Redis stores.
    FullRedis,
    /// The whole stack on Redis as a fleet instance runs it: cached keys and
    /// allowlists invalidated by push, a refusal cache, coalesced checks.
    FullRedisFleet,
    /// `Memory`, its Free-plan keys driven past their limit.
    MemoryOverLimit,
    /// `Redis`, its Free-plan keys driven past their limit.
    RedisOverLimit,
    /// `RedisOverLimit` with a `RefusalCache` in front of the Redis rate-limit store.
    RedisOverLimitRefusalCache,
}

impl Config {
    /// Every configuration, in report order.
    pub const ALL: [Config; 11] = [
        Config::Bare,
        Config::Full,
        Config::Governor,
        Config::Memory,
        Config::Redis,
        Config::RedisCached,
        Config::FullRedis,
        Config::FullRedisFleet,
        Config::MemoryOverLimit,
        Config::RedisOverLimit,
        Config::RedisOverLimitRefusalCache,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Config::Bare => "bare",
            Config::Full => "full",
            Config::Governor => "governor",
            Config::Memory => "memory",
            Config::Redis => "redis",
            Config::RedisCached => "redis-cached",
            Config::FullRedis => "full-redis",
            Config::FullRedisFleet => "full-redis-fleet",
            Config::MemoryOverLimit => "memory-429",
            Config::RedisOverLimit => "redis-429",
            Config::RedisOverLimitRefusalCache => "redis-429-refusals",
        }
    }

    /// What is in front of the handler.
    pub fn describe(self) -> &'static str {
        match self {
            Config::Bare => "axum alone",
            Config::Full => {
                "ClientIp → IpAllowlist(global) → BearerAuth → IpAllowlist(store) → RateLimit → Idempotency, memory stores"
            }
            Config::Governor => "tower-http ValidateRequestHeaderLayer::custom (the header looked up in a HashSet of the 10,000 keys) → tower_governor GovernorLayer (keyed by the Authorization header)",
            Config::Memory => "BearerAuth → RateLimit, memory stores",
            Config::Redis => "BearerAuth → RateLimit, tollgate-redis stores",
            Config::RedisCached => {
                "BearerAuth over CachedKeyStore (1 s TTL) in front of tollgate-redis → RateLimit on tollgate-redis"
            }
            Config::FullRedis => "the full stack, tollgate-redis stores",
            Config::FullRedisFleet => {
                "the full stack on tollgate-redis with CachedKeyStore (5 min TTL, 5 s negative TTL) and CachedAllowlistStore (5 min) invalidated by Redis pub/sub, RefusalCache in front of the rate-limit store"
            }
            Config::MemoryOverLimit => "`memory` with Free-plan keys (10/s, burst 10) driven past their limit",
            Config::RedisOverLimit => "`redis` with Free-plan keys (10/s, burst 10) driven past their limit",
            Config::RedisOverLimitRefusalCache => "`redis-429` with a RefusalCache in front of the Redis rate-limit store",
        }
    }

    /// Whether it runs without arguments: all but the full Redis stacks and
    /// the over-limit ones (about three and a half minutes).
    pub fn runs_by_default(self) -> bool {
        !matches!(self, Config::FullRedis | Config::FullRedisFleet) && !self.over_limit()
    }

    /// Whether it needs `REDIS_URL`.
    pub fn uses_redis(self) -> bool {
        matches!(
            self,
            Config::Redis
                | Config::RedisCached
                | Config::FullRedis
                | Config::FullRedisFleet
                | Config::RedisOverLimit
                | Config::RedisOverLimitRefusalCache
        )
    }

    /// Whether its keys are driven past their limit (most answers are 429).
    pub fn over_limit(self) -> bool {
        matches!(
            self,
            Config::MemoryOverLimit | Config::RedisOverLimit | Config::RedisOverLimitRefusalCache
        )
    }

    /// The configuration called `name`.
    pub fn parse(name: &str) -> Option<Config> {
        Config::ALL.into_iter().find(|config| config.name() == name)
    }
}
