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
//! Every key is `<prefix><area>:{<id>}<suffix>`; the braces are a hash tag,
//! so the keys of one logical record land on one cluster slot and every Lua
//! script touches keys of a single tag. Each store's module documents its
//! keys.
//!
//! # Example
//!
//! ```
//! use std::time::SystemTime;
//! use tollgate_core::{KeyHash, KeyKind, KeyRecord, KeyStore, Principal};
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

pub mod allowlist;
mod backend;
mod config;
pub mod idempotency;
mod key_codec;
pub mod key_store;
pub mod rate_limit;
pub mod replay;
mod response_codec;
mod stores;
#[cfg(test)]
mod test_redis;
mod timestamp;

pub use allowlist::RedisAllowlistStore;
pub use config::RedisConfig;
pub use idempotency::RedisIdempotencyStore;
pub use key_store::RedisKeyStore;
pub use rate_limit::RedisRateLimitStore;
pub use replay::RedisReplayStore;
pub use stores::RedisStores;
