//! [`RedisConfig`]: where Redis is and how patient to be with it.

use std::fmt;
use std::time::Duration;

/// How to reach Redis and how long to wait for it: one server
/// ([`RedisConfig::new`]) or a Redis Cluster ([`RedisConfig::cluster`]).
///
/// ```
/// use std::time::Duration;
/// use tollgate_redis::RedisConfig;
///
/// let config = RedisConfig::new("redis://127.0.0.1:6379")
///     .prefix("myapi:")
///     .operation_timeout(Duration::from_millis(100));
/// assert_eq!(config.key_prefix(), "myapi:");
///
/// // A cluster: a few of its nodes; the others are found from them.
/// let cluster = RedisConfig::cluster(["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"]);
/// assert!(cluster.is_cluster());
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    /// One server's URL, or the cluster's seed nodes.
    pub(crate) urls: Vec<String>,
    pub(crate) cluster: bool,
    pub(crate) prefix: String,
    pub(crate) operation_timeout: Duration,
    pub(crate) connection_timeout: Duration,
    pub(crate) reconnect_max_delay: Duration,
    pub(crate) last_use_flush_interval: Duration,
}

impl RedisConfig {
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "tollgate:";
    /// The default bound on one store operation, all its round trips included.
    pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_millis(200);
    /// How often keys' last uses are written behind by default.
    pub const DEFAULT_LAST_USE_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

    /// A configuration for the server at `url` (`redis://[:password@]host:port[/db]`),
    /// with the default prefix `tollgate:`, a 200 ms operation timeout, a
    /// 1 s connection timeout and reconnection attempts at most 500 ms apart.
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            urls: vec![url.into()],
            cluster: false,
            prefix: RedisConfig::DEFAULT_PREFIX.to_owned(),
            operation_timeout: RedisConfig::DEFAULT_OPERATION_TIMEOUT,
            connection_timeout: Duration::from_secs(1),
            reconnect_max_delay: Duration::from_millis(500),
            last_use_flush_interval: RedisConfig::DEFAULT_LAST_USE_FLUSH_INTERVAL,
        }
    }

    /// A Redis Cluster reached through `nodes` (`redis://host:port` each;
    /// any of its nodes will do, the client learns the others and follows
    /// slot moves), with the same defaults as [`RedisConfig::new`]. Every
    /// store works on a cluster: the keys each operation touches together
    /// share a hash tag, hence a slot.
    pub fn cluster<I, S>(nodes: I) -> RedisConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisConfig {
            urls: nodes.into_iter().map(Into::into).collect(),
            cluster: true,
            ..RedisConfig::new(String::new())
        }
    }

    /// Whether this configuration is for a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// Sets the prefix of every key this crate writes, so several
    /// applications (or tests) can share one server. It should not contain
    /// `{` or `}`: a brace pair in the prefix would override the per-record
    /// hash tags and send every key to one cluster slot.
    pub fn prefix(mut self, prefix: impl Into<String>) -> RedisConfig {
        self.prefix = prefix.into();
        self
    }

    /// Bounds each store operation (every round trip it makes); past it the
    /// operation fails with `StoreError::Timeout`.
    pub fn operation_timeout(mut self, timeout: Duration) -> RedisConfig {
        self.operation_timeout = timeout;
        self
    }

    /// Bounds each attempt to open a connection.
    pub fn connection_timeout(mut self, timeout: Duration) -> RedisConfig {
        self.connection_timeout = timeout;
        self
    }

    /// The longest pause between two reconnection attempts while Redis is
    /// down, and so how soon after Redis comes back requests succeed again.
    pub fn reconnect_max_delay(mut self, delay: Duration) -> RedisConfig {
        self.reconnect_max_delay = delay;
        self
    }

    /// How often the key store writes the last uses it noted (see
    /// [`RedisKeyStore`](crate::RedisKeyStore)): the delay before other
    /// instances see a key's use, and the most a crash loses of them.
    /// At least a millisecond.
    pub fn last_use_flush_interval(mut self, interval: Duration) -> RedisConfig {
        self.last_use_flush_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("urls", &self.urls.iter().map(|url| redact_url(url)).collect::<Vec<_>>())
            .field("cluster", &self.cluster)
            .field("prefix", &self.prefix)
            .field("operation_timeout", &self.operation_timeout)
            .field("connection_timeout", &self.connection_timeout)
            .field("reconnect_max_delay", &self.reconnect_max_delay)
            .field("last_use_flush_interval", &self.last_use_flush_interval)
            .finish()
    }
}

// The URL may carry a password: show the scheme and host only.
pub(crate) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}<redacted>{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let config = RedisConfig::new("redis://:hunter2@cache.internal:6380/2");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redis://<redacted>@cache.internal:6380/2"), "{shown}");
        let cluster = format!(
            "{:?}",
            RedisConfig::cluster(["redis://:hunter2@a:1", "redis://:hunter2@b:2"])
        );
        assert!(!cluster.contains("hunter2"), "{cluster}");
        assert!(cluster.contains("redis://<redacted>@b:2"), "{cluster}");
        assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact_url("rediss://user:pw@host:1"), "rediss://<redacted>@host:1");
    }

    #[test]
    fn defaults() {
        let config = RedisConfig::new("redis://127.0.0.1");
        assert_eq!(config.key_prefix(), "tollgate:");
        assert_eq!(config.operation_timeout, Duration::from_millis(200));
        assert!(!config.is_cluster());
        let cluster = RedisConfig::cluster(["redis://127.0.0.1:7000"]);
        assert!(cluster.is_cluster());
        assert_eq!(cluster.urls, ["redis://127.0.0.1:7000"]);
        assert_eq!(cluster.operation_timeout, Duration::from_millis(200));
    }
}
