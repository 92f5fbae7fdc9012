//! What the tests share: records, and the two databases.
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tollgate_core::conformance::unique_name;
use tollgate_core::keys::{KeyHash, KeyRecord};
use tollgate_core::{KeyKind, Principal};
use tollgate_sql::testing::TestSql;

pub fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_900_000_000)
}

pub fn hash_of(seed: &str) -> KeyHash {
    let mut bytes = [0u8; 32];
    for (i, byte) in seed.bytes().enumerate() {
        bytes[i % 32] = bytes[i % 32].wrapping_mul(31).wrapping_add(byte);
    }
    KeyHash::from_bytes(bytes)
}

pub fn record(account: &str) -> KeyRecord {
    let id = unique_name("key");
    KeyRecord {
        hash: hash_of(&id),
        principal: Principal::new(account, id, KeyKind::Production),
        label: "Production Server".into(),
        display_prefix: "tg_live_abcd".into(),
        created_at: t0(),
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    }
}

/// Runs `$body` with `$db` bound to a fresh SQLite file, and again to a
/// fresh PostgreSQL database (skipped without `DATABASE_URL`).
#[macro_export]
macro_rules! on_both {
    ($name:ident, |$db:ident| $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_sqlite() {
                let $db = tollgate_sql::testing::TestSql::sqlite(stringify!($name)).await;
                $body;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_postgres() {
                let Some($db) = tollgate_sql::testing::TestSql::postgres(stringify!($name)).await else {
                    return;
                };
                $body;
            }
        }
    };
}

pub async fn sqlite_with(
    test: &str,
    adjust: impl FnOnce(tollgate_sql::SqlConfig) -> tollgate_sql::SqlConfig,
) -> TestSql {
    TestSql::sqlite_with(test, adjust).await
}
