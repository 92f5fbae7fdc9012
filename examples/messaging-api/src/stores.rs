//! The stores behind the layers: in memory for one instance, or Redis so a
//! fleet of instances shares keys, quotas, idempotency records and
//! allowlists. The choice is made at start-up; each store is held behind
//! its trait (`Arc<dyn …>`), so nothing else in the server depends on it.
//!
//! The binary opens its stores with [`Stores::open`]: a database (a SQLite
//! file by default, PostgreSQL for a fleet) for the example's own data
//! ([`ServiceDb`]), and Redis, when given, for what a fleet shares at
//! request speed. In-process tests use [`Stores::memory`].
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

use tollgate_core::alerts::{AlertStore, MemoryAlertStore};
use tollgate_core::allowlist::{AllowlistStore, MemoryAllowlistStore};
use tollgate_core::idempotency::{IdempotencyStore, MemoryIdempotencyStore};
use tollgate_core::keys::{CachedKeyStore, KeyRegistry, MemoryKeyStore};
use tollgate_core::rate_limit::{MemoryRateLimitStore, RateLimitStore};
use tollgate_core::SharedClock;
use tollgate_redis::{RedisConfig, RedisStores};

use tollgate_core::changes::Changes;
use tollgate_sql::{ChangeSource, SqlConfig, SqlStores};

use crate::db::quota::PersistedQuotaStore;
use crate::db::{Backend, Database};
use crate::sealed::SecretSealer;

/// Where the server's own data lives when it runs as a service.
#[derive(Clone)]
pub struct ServiceDb {
    /// The database.
    pub database: Database,
    /// Seals webhook signing secrets.
    pub sealer: SecretSealer,
    /// A single node's rate limits, whose daily counts it persists.
    pub quota: Option<PersistedQuotaStore>,
    /// A fleet's Redis.
    pub redis: Option<RedisStores>,
    /// The SQL key, allowlist and idempotency stores (tollgate-sql).
    pub sql: SqlStores,
    /// Pushed invalidation from other instances (PostgreSQL only).
    pub changes: Option<(Changes, Arc<ChangeSource>)>,
}

/// Where to find the stores (the command line's `--database`, `--redis`, `--secrets-key-file`).
#[derive(Debug, Clone)]
pub struct Deployment {
    /// A SQLite file path or URL, or a `postgres://` URL.
    pub database: String,
    /// A `redis://` URL.
    pub redis: Option<String>,
    /// The secrets key, base64 (`SECRETS_KEY`).
    pub secrets_key: Option<String>,
    /// A file holding the secrets key; a single node creates `<database>.key` when neither is given.
    pub secrets_key_file: Option<std::path::PathBuf>,
    /// The per-call database timeout.
    pub database_timeout: std::time::Duration,
    /// Key prefix on Redis.
    pub redis_prefix: Option<String>,
}

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
    /// Which alerts were sent and which networks each key used: Redis
    /// when the deployment has it (a fleet sends each alert once), else
    /// this process's memory.
    pub alerts: Arc<dyn AlertStore>,
    /// The database and its companions; `None` for in-process stores.
    pub service: Option<ServiceDb>,
}

impl Stores {
    /// Stores in process memory, on `clock`.
    pub fn memory(clock: SharedClock) -> Stores {
        Stores {
            keys: Arc::new(MemoryKeyStore::new()),
            allowlists: Arc::new(MemoryAllowlistStore::new()),
            rate_limits: Arc::new(MemoryRateLimitStore::new().with_clock(clock.clone())),
            idempotency: Arc::new(MemoryIdempotencyStore::new().with_clock(clock.clone())),
            alerts: Arc::new(MemoryAlertStore::new().with_clock(clock)),
            service: None,
        }
    }

    /// The stores of a running service: the database at
    /// `deployment.database` (migrated), and Redis when given.
    pub async fn open(deployment: &Deployment, clock: SharedClock) -> Result<Stores, String> {
        let database = Database::connect(&deployment.database, deployment.database_timeout).await?;
        let sealer = match (&deployment.secrets_key, &deployment.secrets_key_file) {
            (Some(key), _) => SecretSealer::from_base64(key)?,
            (None, Some(path)) => SecretSealer::from_key_file(path)?,
            (None, None) if database.backend() == Backend::Sqlite => {
                SecretSealer::from_key_file(&sqlite_key_path(&deployment.database))?
            }
            (None, None) => {
                return Err("a PostgreSQL deployment needs SECRETS_KEY (or --secrets-key-file), the same on every instance: it seals webhook signing secrets".into())
            }
        };
        let sql = SqlStores::connect_with(
            SqlConfig::new(deployment.database.clone())
                .acquire_timeout(deployment.database_timeout)
                .clock(clock.clone()),
        )
        .await
        .map_err(|error| format!("cannot open the key store: {error}"))?;
        // On PostgreSQL, other instances' key changes are pushed here and
        // drop this instance's cached entries at once; the one-second TTL
        // is the bound only while the listener is reconnecting.
        let (keys, changes): (Arc<dyn KeyRegistry>, _) = if database.backend() == Backend::Postgres {
            let changes = Changes::new();
            let source = tollgate_sql::listen(&sql, &changes)
                .map_err(|error| format!("cannot listen for key changes: {error}"))?;
            let keys = CachedKeyStore::new(sql.key_store()).invalidated_by(&changes);
            (Arc::new(keys), Some((changes, Arc::new(source))))
        } else {
            (Arc::new(CachedKeyStore::new(sql.key_store())), None)
        };
        let mut service = ServiceDb {
            database: database.clone(),
            sealer,
            quota: None,
            redis: None,
            sql: sql.clone(),
            changes,
        };
        let (rate_limits, idempotency): (Arc<dyn RateLimitStore>, Arc<dyn IdempotencyStore>) = match &deployment.redis {
            Some(url) => {
                let mut config = RedisConfig::new(url).operation_timeout(deployment.database_timeout);
                if let Some(prefix) = &deployment.redis_prefix {
                    config = config.prefix(prefix.clone());
                }
                let redis = RedisStores::connect(config)
                    .await
                    .map_err(|error| format!("cannot use Redis: {error}"))?;
                let stores = (
                    Arc::new(redis.rate_limit_store()) as Arc<dyn RateLimitStore>,
                    Arc::new(redis.idempotency_store()) as Arc<dyn IdempotencyStore>,
                );
                service.redis = Some(redis);
                stores
            }
            None => {
                let quota = PersistedQuotaStore::load(database.clone(), clock.clone())
                    .await
                    .map_err(|error| format!("cannot read the daily quota counts: {error}"))?;
                service.quota = Some(quota.clone());
                (Arc::new(quota), Arc::new(sql.idempotency_store()))
            }
        };
        let alerts: Arc<dyn AlertStore> = match &service.redis {
            Some(redis) => Arc::new(redis.alert_store()),
            None => Arc::new(MemoryAlertStore::new().with_clock(clock)),
        };
        Ok(Stores {
            keys,
            allowlists: Arc::new(sql.allowlist_store()),
            rate_limits,
            idempotency,
            alerts,
            service: Some(service),
        })
    }

    fn from_redis(redis: &RedisStores) -> Stores {
        Stores {
            keys: Arc::new(CachedKeyStore::new(redis.key_store())),
            allowlists: Arc::new(redis.allowlist_store()),
            rate_limits: Arc::new(redis.rate_limit_store()),
            idempotency: Arc::new(redis.idempotency_store()),
            alerts: Arc::new(redis.alert_store()),
            service: None,
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
        Ok(Stores::from_redis(&redis))
    }
}

// `./messaging-api.db` → `./messaging-api.db.key`.
fn sqlite_key_path(database: &str) -> std::path::PathBuf {
    let path = database
        .strip_prefix("sqlite://")
        .or_else(|| database.strip_prefix("sqlite:"))
        .unwrap_or(database);
    let path = path.split('?').next().unwrap_or(path);
    std::path::PathBuf::from(format!("{path}.key"))
}
