//! What every Redis store shares: one multiplexed, self-reconnecting
//! connection (to one server, or to every master of a Redis Cluster), the
//! key prefix, and the per-operation timeout.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use tollgate_core::StoreError;

/// A connection to one server or to a cluster. Commands go the same way to
/// either: on a cluster, each to the master of its first key's slot.
#[derive(Clone)]
pub(crate) enum Connection {
    /// One server, through a self-reconnecting connection manager.
    Single(ConnectionManager),
    /// A Redis Cluster: a connection per master, following slot moves.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(connection) => connection.req_packed_command(cmd),
            Connection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(connection) => connection.get_db(),
            Connection::Cluster(connection) => connection.get_db(),
        }
    }
}

/// The connection and naming rules shared by the stores of one [`crate::RedisStores`].
#[derive(Clone)]
pub(crate) struct Backend {
    connection: Connection,
    prefix: Arc<str>,
    timeout: Duration,
}

impl Backend {
    pub(crate) fn new(connection: Connection, prefix: &str, timeout: Duration) -> Backend {
        Backend {
            connection,
            prefix: Arc::from(prefix),
            timeout,
        }
    }

    /// A handle on the connection. Clones multiplex onto the same sockets, so
    /// concurrent operations pipeline instead of queueing for a pool.
    /// Pipelines and scripts must keep to one hash tag: on a cluster, a
    /// pipeline over two slots is refused.
    pub(crate) fn connection(&self) -> Connection {
        self.connection.clone()
    }

    /// Whether this is a Redis Cluster connection.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.connection, Connection::Cluster(_))
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The channel changes to keys and allowlists are published on:
    /// `<prefix>changes`, one per prefix (see [`crate::subscribe_changes`]).
    pub(crate) fn changes_channel(&self) -> String {
        changes_channel(&self.prefix)
    }

    /// Runs one store operation, all its round trips, within the timeout,
    /// and records its latency under `name` (the trait method's name) in
    /// [`STORE_DURATION`](tollgate_core::metrics::STORE_DURATION).
    pub(crate) async fn run<T>(
        &self,
        name: &'static str,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(self.timeout, operation).await {
            Ok(result) => result,
            Err(_elapsed) => Err(StoreError::Timeout),
        };
        tollgate_core::metrics::store_latency("redis", name, started.elapsed());
        result
    }

    /// The name of a key: `<prefix><area>:{<tag>}<rest>`. Keys that must be
    /// touched together by one script share `area` and `tag`, hence one
    /// cluster slot. The tag is escaped so that an id holding braces can
    /// neither end it early nor make two records' names collide.
    pub(crate) fn key(&self, area: &str, tag: &str, rest: &str) -> String {
        key_name(&self.prefix, area, tag, rest)
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

pub(crate) fn changes_channel(prefix: &str) -> String {
    format!("{prefix}changes")
}

pub(crate) fn key_name(prefix: &str, area: &str, tag: &str, rest: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + area.len() + tag.len() + rest.len() + 4);
    key.push_str(prefix);
    key.push_str(area);
    key.push_str(":{");
    escape_into(tag, &mut key);
    key.push('}');
    key.push_str(rest);
    key
}

// Percent-escapes the three characters that matter inside a hash tag.
fn escape_into(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
}

/// The longest TTL this crate sets: a century, practically forever, and far
/// from the overflow past which Redis refuses an expiry.
pub(crate) const MAX_TTL_MILLIS: u64 = 100 * 365 * 86_400 * 1_000;

/// A TTL as `PX` milliseconds: rounded up (an entry never expires early),
/// at least 1 (Redis refuses 0) and at most [`MAX_TTL_MILLIS`].
pub(crate) fn ttl_millis(ttl: Duration) -> u64 {
    let millis = ttl.as_nanos().div_ceil(1_000_000);
    u64::try_from(millis).unwrap_or(u64::MAX).clamp(1, MAX_TTL_MILLIS)
}

/// A Redis error as a store error: a timeout stays a timeout, everything
/// else (refused, reset, protocol, script error) is a backend fault.
pub(crate) fn backend_error(error: RedisError) -> StoreError {
    if error.is_timeout() {
        StoreError::Timeout
    } else {
        StoreError::backend(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_and_stay_in_range() {
        assert_eq!(ttl_millis(Duration::from_micros(1500)), 2);
        assert_eq!(ttl_millis(Duration::from_secs(300)), 300_000);
        assert_eq!(ttl_millis(Duration::ZERO), 1);
        assert_eq!(ttl_millis(Duration::MAX), MAX_TTL_MILLIS);
    }

    #[test]
    fn keys_carry_the_record_id_as_hash_tag() {
        assert_eq!(
            key_name("tollgate:", "acct", "acct_42", ":keys"),
            "tollgate:acct:{acct_42}:keys"
        );
        assert_eq!(key_name("p:", "key", "ab12", ""), "p:key:{ab12}");
    }

    #[test]
    fn braces_in_ids_cannot_break_the_hash_tag() {
        assert_eq!(key_name("p:", "acct", "a}b{c%d", ":x"), "p:acct:{a%7Db%7Bc%25d}:x");
        // Without escaping, "x}:y" and "x" with another suffix could collide.
        assert_ne!(key_name("p:", "a", "x}:y", ""), key_name("p:", "a", "x", ":y}"));
    }
}
