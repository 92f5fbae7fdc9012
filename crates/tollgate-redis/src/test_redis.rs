//! For this crate's unit tests that need a server: `$REDIS_URL` under a
//! fresh prefix, or a printed skip (a failure with `TOLLGATE_REQUIRE_REDIS=1`).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::{RedisConfig, RedisStores};

/// Stores under a fresh prefix; every key under it is deleted on drop
/// (also while a failing test unwinds).
pub(crate) struct TestStores {
    pub(crate) stores: RedisStores,
    config: RedisConfig,
}

impl std::ops::Deref for TestStores {
    type Target = RedisStores;

    fn deref(&self) -> &RedisStores {
        &self.stores
    }
}

impl Drop for TestStores {
    fn drop(&mut self) {
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

pub(crate) async fn connect(test: &str) -> Option<TestStores> {
    let required = std::env::var("TOLLGATE_REQUIRE_REDIS").is_ok_and(|value| value == "1");
    let Ok(url) = std::env::var("REDIS_URL") else {
        assert!(!required, "{test}: TOLLGATE_REQUIRE_REDIS=1 but REDIS_URL is not set");
        eprintln!("{test}: skipped, REDIS_URL is not set");
        return None;
    };
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let prefix = format!("tgunit_{test}_{}_{nanos}:", std::process::id());
    let config = RedisConfig::new(url)
        .prefix(prefix)
        .operation_timeout(std::time::Duration::from_secs(2));
    match RedisStores::connect(config.clone()).await {
        Ok(stores) => Some(TestStores { stores, config }),
        Err(error) => {
            assert!(
                !required,
                "{test}: TOLLGATE_REQUIRE_REDIS=1 but Redis is unreachable: {error}"
            );
            eprintln!("{test}: skipped, Redis is unreachable: {error}");
            None
        }
    }
}
