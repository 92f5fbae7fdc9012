//! [`RedisStores`]: one connection to Redis, and every store built on it.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tollgate_core::StoreError;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::allowlist::{ListCache, RedisAllowlistStore};
use crate::backend::{backend_error, Backend};
use crate::config::{redact_url, RedisConfig};
use crate::idempotency::RedisIdempotencyStore;
use crate::key_store::RedisKeyStore;
use crate::rate_limit::RedisRateLimitStore;
use crate::replay::RedisReplayStore;

/// The entry point: a connection manager (one multiplexed connection that
/// reconnects by itself) and constructors for each store, all sharing it.
///
/// Clones share the connection; make one per process and hand out stores.
#[derive(Debug, Clone)]
pub struct RedisStores {
    backend: Backend,
    allowlist_cache: Arc<ListCache>,
}

impl RedisStores {
    /// Connects, waiting for the first connection (at most the configured
    /// connection timeout). An unreachable server is [`StoreError::Backend`]
    /// or [`StoreError::Timeout`].
    pub async fn connect(config: RedisConfig) -> Result<RedisStores, StoreError> {
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
        Ok(RedisStores::with_connection(connection, &config))
    }

    /// Builds the stores without waiting for Redis: the connection is opened
    /// on first use, so an application can start while Redis is down (its
    /// requests then meet its fail-open or fail-closed policy). Must be
    /// called within a Tokio runtime.
    pub fn connect_lazy(config: RedisConfig) -> Result<RedisStores, StoreError> {
        let (client, manager_config) = client(&config)?;
        let connection = ConnectionManager::new_lazy_with_config(client, manager_config).map_err(backend_error)?;
        Ok(RedisStores::with_connection(connection, &config))
    }

    fn with_connection(connection: ConnectionManager, config: &RedisConfig) -> RedisStores {
        RedisStores {
            backend: Backend::new(connection, &config.prefix, config.operation_timeout),
            allowlist_cache: Arc::default(),
        }
    }

    /// The API key store.
    pub fn key_store(&self) -> RedisKeyStore {
        RedisKeyStore::new(self.backend.clone())
    }

    /// The rate-limit store (GCRA plus daily quota, one script per check).
    pub fn rate_limit_store(&self) -> RedisRateLimitStore {
        RedisRateLimitStore::new(self.backend.clone())
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

    /// Deletes every key under this prefix (SCAN and UNLINK, in batches)
    /// and returns how many were deleted. For tests and for decommissioning
    /// a tenant; never needed in normal operation, since every transient
    /// key carries a TTL.
    pub async fn purge(&self) -> Result<u64, StoreError> {
        let pattern = format!("{}*", escape_glob(self.backend.prefix()));
        let mut cursor: u64 = 0;
        let mut deleted: u64 = 0;
        loop {
            let mut connection = self.backend.connection();
            let (next, keys): (u64, Vec<String>) = self
                .backend
                .run("purge", async {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut connection)
                        .await
                        .map_err(backend_error)
                })
                .await?;
            if !keys.is_empty() {
                let removed: u64 = self
                    .backend
                    .run("purge", async {
                        redis::cmd("UNLINK")
                            .arg(&keys)
                            .query_async(&mut connection)
                            .await
                            .map_err(backend_error)
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

fn client(config: &RedisConfig) -> Result<(redis::Client, ConnectionManagerConfig), StoreError> {
    let client = redis::Client::open(config.url.as_str()).map_err(|error| {
        // The error could quote the URL, password included: say which URL, redacted.
        StoreError::backend(format!(
            "invalid Redis URL {}: {:?}",
            redact_url(&config.url),
            error.kind()
        ))
    })?;
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connection_timeout))
        // Also bound the wait inside the connection, so requests abandoned by
        // the operation timeout do not pile up while Redis hangs.
        .set_response_timeout(Some(config.operation_timeout))
        .set_min_delay(Duration::from_millis(20))
        .set_max_delay(config.reconnect_max_delay);
    Ok((client, manager_config))
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
