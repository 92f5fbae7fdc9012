//! Redis implementations of every tollgate storage trait, for fleets of
//! instances that must share keys, quotas and idempotency records.
//!
//! [`RedisStores`] holds one [`redis::aio::ConnectionManager`]: a single
//! multiplexed connection (concurrent operations pipeline on it) that
//! reconnects by itself when Redis goes away and comes back. Every store made
//! from it shares that connection. Every operation runs within a timeout
//! (default 200 ms); a down or slow Redis surfaces as
//! [`StoreError::Backend`](tollgate_core::StoreError::Backend) or
//! [`StoreError::Timeout`](tollgate_core::StoreError::Timeout), which the
//! layers turn into their fail-open or fail-closed policy.
//!
//! # Keys and Redis Cluster
//!
//! Every key is `<prefix><area>:{<id>}<suffix>` (prefix `tollgate:` by
//! default). The braces are a hash tag: keys with the same tag land on one
//! cluster slot, and every Lua script touches the keys of a single tag, so the
//! stores work on Redis Cluster — all but key rotation, one atomic script
//! over the old key's and its successor's keys (see [`RedisKeyStore`]). Ids are
//! escaped so that braces inside them cannot end a tag early.
//!
//! | store | keys (tag in braces) | written with |
//! |---|---|---|
//! | [keys](RedisKeyStore) | `key:{<hash>}` (the record), `keyid:{<id>}` (id → hash), `account:{<account>}:keys` (the account's index) | scripts on one key each; insertion is three atomic steps; rotation one script over both keys' slots (not on Cluster) |
//! | [rate limits](RedisRateLimitStore) | `rl:{<key>}` | one script per check, TTL until idle |
//! | [idempotency](RedisIdempotencyStore) | `idem:{<scope>:<key>}` | `SET NX GET PX`, scripts checking the claim token |
//! | [allowlists](RedisAllowlistStore) | `allow:account:{<account>}`, `allow:key:{<key id>}` | one `HSET` per list |
//! | [replay](RedisReplayStore) | `replay:{<message id>}` | `SET NX PX` |
//!
//! Needs Redis 7.0 or later (idempotency's `SET NX GET`).
//!
//! # Failures
//!
//! A down server (connection refused, reset) is `StoreError::Backend`; a
//! slow or hung one is `StoreError::Timeout` once the operation timeout has
//! passed. Nothing panics and nothing waits longer than the timeout. The
//! connection manager reconnects in the background (attempts at most
//! [`RedisConfig::reconnect_max_delay`] apart), so once Redis is back,
//! requests succeed again without restarting anything.
//!
//! # Example
//!
//! ```
//! use std::time::SystemTime;
//! use tollgate_core::keys::{KeyHash, KeyRecord, KeyRegistry, KeyStore};
//! use tollgate_core::{KeyKind, Principal};
//! use tollgate_redis::{RedisConfig, RedisStores};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tollgate_core::StoreError> {
//! # // Runs against $REDIS_URL; skipped when it is not set.
//! # let Ok(url) = std::env::var("REDIS_URL") else { return Ok(()) };
//! # let prefix = format!("doctest:{}:", std::process::id());
//! let stores = RedisStores::connect(RedisConfig::new(url).prefix(prefix)).await?;
//! let keys = stores.key_store();
//!
//! let now = SystemTime::now();
//! let record = KeyRecord {
//!     principal: Principal::new("acct_1", "key_1", KeyKind::Production),
//!     hash: KeyHash::from_bytes([42; 32]),
//!     label: "Production Server".into(),
//!     display_prefix: "tg_live_ab".into(),
//!     created_at: now,
//!     expires_at: None,
//!     revoked_at: None,
//!     last_used_at: None,
//! };
//! keys.insert(record, Some(10), now).await?;
//! let found = keys.find_by_hash(&KeyHash::from_bytes([42; 32])).await?.expect("stored");
//! assert_eq!(found.principal.account_id(), "acct_1");
//!
//! keys.revoke("key_1", now).await?;
//! // Every instance sees the revocation on its next lookup: there is no cache.
//! assert!(!keys.find_by_id("key_1").await?.unwrap().is_valid_at(now));
//! # stores.purge().await?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod alerts;
mod allowlist;
mod backend;
mod config;
mod idempotency;
mod key_codec;
mod key_store;
mod rate_limit;
mod replay;
mod response_codec;
mod stores;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod timestamp;

pub use alerts::RedisAlertStore;
pub use allowlist::RedisAllowlistStore;
pub use config::RedisConfig;
pub use idempotency::RedisIdempotencyStore;
pub use key_store::RedisKeyStore;
pub use rate_limit::RedisRateLimitStore;
pub use replay::RedisReplayStore;
pub use stores::RedisStores;
