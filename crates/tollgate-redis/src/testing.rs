//! For tests that need a Redis server — this crate's and yours: stores
//! under a fresh key prefix on `$REDIS_URL`, deleted afterwards, or a
//! printed skip when no server is configured (a failure instead when
//! `TOLLGATE_REQUIRE_REDIS=1`, so CI cannot pass without Redis).
//!
//! ```no_run
//! # async fn example() {
//! let Some(redis) = tollgate_redis::testing::TestRedis::connect("my_test").await else {
//!     return; // skipped: no REDIS_URL
//! };
//! tollgate_core::conformance::key_store(&redis.key_store()).await;
//! # }
//! ```

use std::time::Duration;

use tollgate_core::conformance::unique_name;

use crate::{RedisConfig, RedisStores};

/// Stores under a prefix of their own. Every key under it is deleted when
/// this is dropped, at the end of the test or while a failing one unwinds.
pub struct TestRedis {
    /// The stores, under the test's prefix.
    pub stores: RedisStores,
    /// The server's URL.
    pub url: String,
    config: RedisConfig,
}

impl std::ops::Deref for TestRedis {
    type Target = RedisStores;

    fn deref(&self) -> &RedisStores {
        &self.stores
    }
}

impl TestRedis {
    /// Connects to `$REDIS_URL` under a fresh prefix. Without `REDIS_URL`
    /// (or with an unreachable server) the test is skipped: this prints why
    /// and returns `None`, unless `TOLLGATE_REQUIRE_REDIS=1`, which turns the
    /// skip into a failure so CI cannot pass without Redis.
    pub async fn connect(test: &str) -> Option<TestRedis> {
        TestRedis::connect_with(test, |config| config).await
    }

    /// Like [`TestRedis::connect`], adjusting the configuration first.
    pub async fn connect_with(test: &str, adjust: impl FnOnce(RedisConfig) -> RedisConfig) -> Option<TestRedis> {
        let required = std::env::var("TOLLGATE_REQUIRE_REDIS").is_ok_and(|value| value == "1");
        let Ok(url) = std::env::var("REDIS_URL") else {
            assert!(!required, "{test}: TOLLGATE_REQUIRE_REDIS=1 but REDIS_URL is not set");
            announce_skip(&format!("{test}: skipped, REDIS_URL is not set"));
            return None;
        };
        let prefix = format!("{}:", unique_name("tgtest"));
        let config = adjust(
            RedisConfig::new(url.clone())
                .prefix(prefix)
                .operation_timeout(Duration::from_secs(2)),
        );
        match RedisStores::connect(config.clone()).await {
            Ok(stores) => Some(TestRedis { stores, url, config }),
            Err(error) => {
                assert!(
                    !required,
                    "{test}: TOLLGATE_REQUIRE_REDIS=1 but Redis is unreachable: {error}"
                );
                announce_skip(&format!("{test}: skipped, Redis is unreachable: {error}"));
                None
            }
        }
    }

    /// Stores on `config` as given (a cluster, say), for a test that started
    /// its own server: no skip, a failure to connect panics. The URL is the
    /// first one configured.
    pub async fn on(config: RedisConfig) -> TestRedis {
        let stores = RedisStores::connect(config.clone())
            .await
            .unwrap_or_else(|error| panic!("connect to {config:?}: {error}"));
        let url = config.urls.first().cloned().unwrap_or_default();
        TestRedis { stores, url, config }
    }

    /// Another instance on the same prefix: its own connection manager, as
    /// another process of the fleet would have.
    pub async fn another_instance(&self) -> RedisStores {
        RedisStores::connect(self.config.clone())
            .await
            .expect("connect a second instance")
    }

    /// The configuration (URL, prefix, timeouts), to connect more instances.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Deletes every key under this test's prefix (what dropping does).
    pub async fn cleanup(self) {
        self.stores.purge().await.expect("purge the test prefix");
    }

    /// How many keys exist under this test's prefix (on the server at
    /// [`url`](Self::url): one node only, on a cluster).
    pub async fn key_count(&self) -> usize {
        let client = redis::Client::open(self.url.as_str()).expect("a valid URL");
        let mut connection = client.get_multiplexed_async_connection().await.expect("connect");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.stores.key_prefix()))
            .query_async(&mut connection)
            .await
            .expect("KEYS");
        keys.len()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        // Drop cannot await, and may run while a failing test unwinds inside
        // its runtime: purge from a thread of our own with its own runtime.
        let config = self.config.clone();
        let purge = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async { RedisStores::connect(config).await?.purge().await })
        });
        if let Ok(Err(error)) = purge.join() {
            eprintln!("could not delete the test's keys: {error}");
        }
    }
}

/// Prints a skip so it shows even though the test harness captures output:
/// the harness captures `print!`/`eprint!`, not writes to the stream itself.
pub fn announce_skip(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{message}");
}
