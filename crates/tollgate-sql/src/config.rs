//! [`SqlConfig`]: where the database is and how the stores use it.

use std::time::Duration;

use tollgate_core::usage::DEFAULT_USAGE_RETENTION_DAYS;
use tollgate_core::SharedClock;

/// How often, by default, last-used times are written and expired
/// idempotency entries and usage days deleted: at most one write per key per minute.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(60);

/// Connection settings for [`SqlStores`](crate::SqlStores).
///
/// ```
/// use std::time::Duration;
/// use tollgate_sql::SqlConfig;
///
/// let config = SqlConfig::new("sqlite://tollgate.db?mode=rwc")
///     .max_connections(8)
///     .flush_interval(Duration::from_secs(60));
/// assert_eq!(config.url(), "sqlite://tollgate.db?mode=rwc");
/// ```
#[derive(Clone)]
pub struct SqlConfig {
    pub(crate) url: String,
    pub(crate) max_connections: u32,
    pub(crate) busy_timeout: Duration,
    pub(crate) acquire_timeout: Duration,
    pub(crate) flush_interval: Duration,
    pub(crate) clock: SharedClock,
    pub(crate) usage_retention_days: u32,
}

impl SqlConfig {
    /// A database URL: `sqlite://path?mode=rwc`, `sqlite:path`, a bare
    /// file path (SQLite, created if missing), or `postgres://…`.
    pub fn new(url: impl Into<String>) -> SqlConfig {
        SqlConfig {
            url: url.into(),
            max_connections: 10,
            busy_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            clock: SharedClock::default(),
            usage_retention_days: DEFAULT_USAGE_RETENTION_DAYS,
        }
    }

    /// The database URL (it may hold a password: not shown by `Debug`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The most connections the pool opens (default 10).
    pub fn max_connections(mut self, max: u32) -> SqlConfig {
        self.max_connections = max.max(1);
        self
    }

    /// SQLite: how long a write waits for another connection's write lock
    /// before failing (default 5 s). Writers queue on the lock; this is the
    /// bound, not a normal wait.
    pub fn busy_timeout(mut self, timeout: Duration) -> SqlConfig {
        self.busy_timeout = timeout;
        self
    }

    /// How long an operation waits for a free connection before failing
    /// with [`StoreError::Timeout`](tollgate_core::StoreError::Timeout) (default 5 s).
    pub fn acquire_timeout(mut self, timeout: Duration) -> SqlConfig {
        self.acquire_timeout = timeout;
        self
    }

    /// How often the background task writes last-used times and deletes
    /// expired idempotency entries and usage days (default [`DEFAULT_FLUSH_INTERVAL`]).
    pub fn flush_interval(mut self, interval: Duration) -> SqlConfig {
        self.flush_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How many days of usage are kept, today included (default
    /// [`DEFAULT_USAGE_RETENTION_DAYS`]); older days are deleted by the
    /// background task.
    pub fn usage_retention_days(mut self, days: u32) -> SqlConfig {
        self.usage_retention_days = days.max(1);
        self
    }

    /// The clock idempotency entries expire on and usage retention is
    /// judged on (default: the system clock).
    pub fn clock(mut self, clock: impl Into<SharedClock>) -> SqlConfig {
        self.clock = clock.into();
        self
    }
}

impl std::fmt::Debug for SqlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = self.url.split_once("://").map_or("sqlite", |(scheme, _)| scheme);
        f.debug_struct("SqlConfig")
            .field("url", &format_args!("{scheme}://<redacted>"))
            .field("max_connections", &self.max_connections)
            .field("busy_timeout", &self.busy_timeout)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("flush_interval", &self.flush_interval)
            .field("usage_retention_days", &self.usage_retention_days)
            .finish()
    }
}
