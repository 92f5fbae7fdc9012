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
}

impl Config {
    /// Every configuration, in report order.
    pub const ALL: [Config; 7] = [
        Config::Bare,
        Config::Full,
        Config::Governor,
        Config::Memory,
        Config::Redis,
        Config::RedisCached,
        Config::FullRedis,
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
        }
    }

    /// What is in front of the handler.
    pub fn describe(self) -> &'static str {
        match self {
            Config::Bare => "axum alone",
            Config::Full => {
                "ClientIp → IpAllowlist(global) → BearerAuth → IpAllowlist(store) → RateLimit → Idempotency, memory stores"
            }
            Config::Governor => "tower-http ValidateRequestHeaderLayer::bearer → tower_governor GovernorLayer (keyed by the Authorization header)",
            Config::Memory => "BearerAuth → RateLimit, memory stores",
            Config::Redis => "BearerAuth → RateLimit, tollgate-redis stores",
            Config::RedisCached => {
                "BearerAuth over CachedKeyStore (1 s TTL) in front of tollgate-redis → RateLimit on tollgate-redis"
            }
            Config::FullRedis => "the full stack, tollgate-redis stores",
        }
    }

    /// Whether it runs without arguments: all but `FullRedis` (about three
    /// and a half minutes).
    pub fn runs_by_default(self) -> bool {
        self != Config::FullRedis
    }

    /// Whether it needs `REDIS_URL`.
    pub fn uses_redis(self) -> bool {
        matches!(self, Config::Redis | Config::RedisCached | Config::FullRedis)
    }

    /// The configuration called `name`.
    pub fn parse(name: &str) -> Option<Config> {
        Config::ALL.into_iter().find(|config| config.name() == name)
    }
}
