//! [`RedisStores`]: one connection to Redis, and every store built on it.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use tollgate_core::StoreError;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::allowlist::{ListCache, RedisAllowlistStore};
use crate::backend::{backend_error, Backend, Connection};
use crate::coalesce::Coalescer;
use crate::config::{redact_url, RedisConfig};
use crate::idempotency::RedisIdempotencyStore;
use crate::key_store::{account_cache, AccountCache, RedisKeyStore};
use crate::last_use::spawn_flusher;
use crate::rate_limit::RedisRateLimitStore;
use crate::replay::RedisReplayStore;
use crate::usage::RedisUsageStore;

/// The entry point: a connection manager (one multiplexed connection that
/// reconnects by itself; on a cluster, one per master) and constructors for
/// each store, all sharing it.
///
/// Clones share the connection; make one per process and hand out stores.
#[derive(Debug, Clone)]
pub struct RedisStores {
    backend: Backend,
    allowlist_cache: Arc<ListCache>,
    key_accounts: Arc<AccountCache>,
    rate_limits: Arc<Coalescer>,
}

impl RedisStores {
    /// Connects, waiting for the first connection (at most the configured
    /// connection timeout). An unreachable server is [`StoreError::Backend`]
    /// or [`StoreError::Timeout`].
    pub async fn connect(config: RedisConfig) -> Result<RedisStores, StoreError> {
        if config.cluster {
            let client = cluster_client(&config)?;
            let connecting = client.get_async_connection_with_config(cluster_config(&config));
            let connection = tokio::time::timeout(config.connection_timeout, connecting)
                .await
                .map_err(|_elapsed| StoreError::Timeout)?
                .map_err(backend_error)?;
            return Ok(RedisStores::with_connection(Connection::Cluster(connection), &config));
        }
        let (client, manager_config) = client(&config)?;
        // One plain attempt first: the manager would retry a refused
        // connection until the timeout, hiding why it failed.
        let probe_config = redis::AsyncConnectionConfig::new().set_connection_timeout(Some(config.connection_timeout));
        let probe = client.get_multiplexed_async_connection_with_config(&probe_config);
        tokio::time::timeout(config.connection_timeout, probe)
            .await
            .map_err(|_elapsed| StoreError::Timeout)?
            .map_err(backend_error)?;
        let connecting = ConnectionManager::new_with_config(client, manager_config);
        let connection = tokio::time::timeout(config.connection_timeout, connecting)
            .await
            .map_err(|_elapsed| StoreError::Timeout)?
            .map_err(backend_error)?;
        Ok(RedisStores::with_connection(Connection::Single(connection), &config))
    }

    /// Builds the stores without waiting for Redis: the connection is opened
    /// on first use, so an application can start while Redis is down (its
    /// requests then meet its fail-open or fail-closed policy). Must be
    /// called within a Tokio runtime.
    pub fn connect_lazy(config: RedisConfig) -> Result<RedisStores, StoreError> {
        if config.cluster {
            let connection = cluster_client(&config)?.get_pending_async_connection_with_config(cluster_config(&config));
            return Ok(RedisStores::with_connection(Connection::Cluster(connection), &config));
        }
        let (client, manager_config) = client(&config)?;
        let connection = ConnectionManager::new_lazy_with_config(client, manager_config).map_err(backend_error)?;
        Ok(RedisStores::with_connection(Connection::Single(connection), &config))
    }

    fn with_connection(connection: Connection, config: &RedisConfig) -> RedisStores {
        let stores = RedisStores {
            backend: Backend::new(connection, &config.prefix, config.operation_timeout),
            allowlist_cache: Arc::default(),
            key_accounts: account_cache(),
            rate_limits: Arc::default(),
        };
        // Writes the key stores' noted uses while any of them lives.
        let backend = stores.backend.clone();
        spawn_flusher(
            Arc::downgrade(&stores.key_accounts),
            config.last_use_flush_interval,
            move |accounts| {
                let keys = RedisKeyStore::new(backend.clone(), accounts);
                async move {
                    if let Err(error) = keys.flush_last_uses().await {
                        tracing::warn!(%error, "writing keys' last uses failed; kept for the next flush");
                    }
                }
            },
        );
        stores
    }

    /// Writes the last uses the key stores noted and not yet written (a
    /// background task does so every
    /// [flush interval](RedisConfig::last_use_flush_interval)): call it
    /// before shutting down. Returns how many were written.
    pub async fn flush_last_uses(&self) -> Result<usize, StoreError> {
        self.key_store().flush_last_uses().await
    }

    /// The API key store. Every store made here shares one cache of
    /// hash → account pointers (see [`RedisKeyStore`]).
    pub fn key_store(&self) -> RedisKeyStore {
        RedisKeyStore::new(self.backend.clone(), Arc::clone(&self.key_accounts))
    }

    /// The rate-limit store (GCRA plus daily quota, one script call per
    /// check or per batch of concurrent checks). Every store made here
    /// shares one queue of checks.
    pub fn rate_limit_store(&self) -> RedisRateLimitStore {
        RedisRateLimitStore::new(self.backend.clone(), Arc::clone(&self.rate_limits))
    }

    /// The idempotency store.
    pub fn idempotency_store(&self) -> RedisIdempotencyStore {
        RedisIdempotencyStore::new(self.backend.clone())
    }

    /// The IP allowlist store. Every store made here shares one cache of
    /// built sets.
    pub fn allowlist_store(&self) -> RedisAllowlistStore {
        RedisAllowlistStore::new(self.backend.clone(), Arc::clone(&self.allowlist_cache))
    }

    /// The alert store: de-duplication of alerts across instances.
    pub fn alert_store(&self) -> crate::RedisAlertStore {
        crate::RedisAlertStore::new(self.backend.clone())
    }

    /// The webhook replay store.
    pub fn replay_store(&self) -> RedisReplayStore {
        RedisReplayStore::new(self.backend.clone())
    }

    /// The usage store (counts per key and UTC day).
    pub fn usage_store(&self) -> RedisUsageStore {
        RedisUsageStore::new(self.backend.clone())
    }

    #[cfg(test)]
    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The prefix of every key these stores write.
    pub fn key_prefix(&self) -> &str {
        self.backend.prefix()
    }

    /// Checks that Redis answers within the operation timeout.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut connection = self.backend.connection();
        self.backend
            .run("ping", async move {
                redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                    .map(drop)
                    .map_err(backend_error)
            })
            .await
    }

    /// The Redis server's clock (`TIME`), the one rate limits are decided by.
    /// Comparing it with the local clock shows how far an instance is skewed.
    pub async fn server_time(&self) -> Result<SystemTime, StoreError> {
        let mut connection = self.backend.connection();
        let (secs, micros): (u64, u64) = self
            .backend
            .run("server_time", async move {
                redis::cmd("TIME")
                    .query_async(&mut connection)
                    .await
                    .map_err(backend_error)
            })
            .await?;
        Ok(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros))
    }

    /// Deletes every key under this prefix (SCAN and UNLINK, in batches; on
    /// a cluster, on every master, one key at a time) and returns how many
    /// were deleted. For tests and for decommissioning a tenant; never
    /// needed in normal operation, since every transient key carries a TTL.
    pub async fn purge(&self) -> Result<u64, StoreError> {
        let pattern = format!("{}*", escape_glob(self.backend.prefix()));
        let Connection::Cluster(mut cluster) = self.backend.connection() else {
            return self.purge_node(None, &pattern).await;
        };
        let mut deleted = 0;
        for (host, port) in self.backend.run("purge", masters(&mut cluster)).await? {
            let node = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
            deleted += self.purge_node(Some(node), &pattern).await?;
        }
        Ok(deleted)
    }

    // SCAN of the server (of `node`, on a cluster), deleting what matches.
    async fn purge_node(&self, node: Option<RoutingInfo>, pattern: &str) -> Result<u64, StoreError> {
        let mut connection = self.backend.connection();
        let mut cursor: u64 = 0;
        let mut deleted: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000);
            let (next, keys): (u64, Vec<String>) = self
                .backend
                .run("purge", async {
                    match (&node, connection.clone()) {
                        (Some(route), Connection::Cluster(mut cluster)) => {
                            let value = cluster
                                .route_command(scan, route.clone())
                                .await
                                .map_err(backend_error)?;
                            redis::from_redis_value(value)
                                .map_err(|error| StoreError::Corrupt(format!("SCAN reply: {error}")))
                        }
                        (_, mut connection) => scan.query_async(&mut connection).await.map_err(backend_error),
                    }
                })
                .await?;
            if !keys.is_empty() {
                let removed: u64 = self
                    .backend
                    .run("purge", async {
                        if node.is_none() {
                            return redis::cmd("UNLINK")
                                .arg(&keys)
                                .query_async(&mut connection)
                                .await
                                .map_err(backend_error);
                        }
                        // One node's keys may be on several slots: one at a time.
                        let mut removed = 0;
                        for key in &keys {
                            removed += redis::cmd("UNLINK")
                                .arg(key)
                                .query_async::<u64>(&mut connection)
                                .await
                                .map_err(backend_error)?;
                        }
                        Ok(removed)
                    })
                    .await?;
                deleted += removed;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }
}

// The cluster's masters, from `CLUSTER NODES`: `<id> <host:port@bus> <flags> …`.
async fn masters(connection: &mut ClusterConnection) -> Result<Vec<(String, u16)>, StoreError> {
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(connection)
        .await
        .map_err(backend_error)?;
    let mut masters = Vec::new();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(address), Some(flags)) = (fields.get(1), fields.get(2)) else {
            continue;
        };
        if !flags.split(',').any(|flag| flag == "master") || flags.contains("fail") {
            continue;
        }
        let address = address.split('@').next().unwrap_or_default();
        if let Some((host, port)) = address.rsplit_once(':') {
            if let Ok(port) = port.parse() {
                masters.push((host.to_owned(), port));
            }
        }
    }
    if masters.is_empty() {
        return Err(StoreError::Corrupt(format!("CLUSTER NODES lists no master: {nodes:?}")));
    }
    Ok(masters)
}

fn client(config: &RedisConfig) -> Result<(redis::Client, ConnectionManagerConfig), StoreError> {
    let url = config.urls.first().map_or("", String::as_str);
    let client = redis::Client::open(url).map_err(|error| invalid_url(url, &error))?;
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connection_timeout))
        // Also bound the wait inside the connection, so requests abandoned by
        // the operation timeout do not pile up while Redis hangs.
        .set_response_timeout(Some(config.operation_timeout))
        .set_min_delay(Duration::from_millis(20))
        .set_max_delay(config.reconnect_max_delay);
    Ok((client, manager_config))
}

// The error could quote the URL, password included: say which URL, redacted.
fn invalid_url(url: &str, error: &redis::RedisError) -> StoreError {
    StoreError::backend(format!("invalid Redis URL {}: {:?}", redact_url(url), error.kind()))
}

fn cluster_client(config: &RedisConfig) -> Result<ClusterClient, StoreError> {
    for url in &config.urls {
        redis::Client::open(url.as_str()).map_err(|error| invalid_url(url, &error))?;
    }
    ClusterClient::builder(config.urls.iter().map(String::as_str))
        .connection_timeout(config.connection_timeout)
        .response_timeout(config.operation_timeout)
        .build()
        .map_err(|error| StoreError::backend(format!("Redis Cluster client: {:?}", error.kind())))
}

fn cluster_config(config: &RedisConfig) -> ClusterConfig {
    ClusterConfig::new()
        .set_connection_timeout(config.connection_timeout)
        .set_response_timeout(config.operation_timeout)
}

// SCAN patterns are globs: a prefix holding `*`, `?`, `[` or `\` must match literally.
fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_patterns_match_the_prefix_literally() {
        assert_eq!(escape_glob("tollgate:"), "tollgate:");
        assert_eq!(escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[tokio::test]
    async fn an_invalid_url_is_a_backend_error_without_the_password() {
        let error = RedisStores::connect(RedisConfig::new("nonsense://:hunter2@x"))
            .await
            .expect_err("an invalid URL");
        assert!(error.is_unavailable());
        assert!(!error.to_string().contains("hunter2"), "{error}");
        let source = std::error::Error::source(&error)
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(!source.contains("hunter2"), "{source}");
    }
}
