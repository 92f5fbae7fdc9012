//! Redis implementations of every tollgate storage trait, for fleets of
//! instances that must share keys, quotas and idempotency records.
//!
//! [`RedisStores`] holds one [`redis::aio::ConnectionManager`]: a single
//! multiplexed connection (concurrent operations pipeline on it) that
//! reconnects by itself when Redis goes away and comes back; or, for a Redis
//! Cluster ([`RedisConfig::cluster`]), the `redis` crate's cluster
//! connection (one multiplexed connection per master, following slot
//! moves). Every store made from it shares that connection. Every operation runs within a timeout
//! (default 200 ms); a down or slow Redis surfaces as
//! [`StoreError::Backend`](tollgate_core::StoreError::Backend) or
//! [`StoreError::Timeout`](tollgate_core::StoreError::Timeout), which the
//! layers turn into their fail-open or fail-closed policy.
//!
//! # Keys and Redis Cluster
//!
//! Every key is `<prefix><area>:{<id>}<suffix>` (prefix `tollgate:` by
//! default). The braces are a hash tag: keys with the same tag land on one
//! cluster slot, and every Lua script and pipeline touches the keys of a
//! single tag, so every store works on Redis Cluster (a test starts a
//! three-master cluster and runs every conformance suite on it). Ids are
//! escaped so that braces inside them cannot end a tag early.
//!
//! | store | keys (tag in braces) | written with |
//! |---|---|---|
//! | [keys](RedisKeyStore) | `account:{<account>}:key:<hash>` (the record), `account:{<account>}:keys` (the account's index), `keyhash:{<hash>}` (hash → account), `keyid:{<id>}` (id → hash and account) | scripts on the account's slot; insertion is four atomic steps; rotation one script; last uses written behind, one script per account |
//! | [rate limits](RedisRateLimitStore) | `rl:{<key>}` | one script call per check, or per batch of concurrent checks (one server), TTL until idle |
//! | [idempotency](RedisIdempotencyStore) | `idem:{<scope>:<key>}` | `SET NX GET PX`, scripts checking the claim token |
//! | [allowlists](RedisAllowlistStore) | `allow:account:{<account>}`, `allow:key:{<key id>}` | one `HSET` per list |
//! | [replay](RedisReplayStore) | `replay:{<message id>}` | `SET NX PX` |
//! | [usage](RedisUsageStore) | `usage:{<key id>}:<day>` | pipelined `HINCRBY`, `EXPIREAT` at the end of the retention |
//!
//! Needs Redis 7.0 or later (idempotency's `SET NX GET`).
//!
//! # Changes
//!
//! Creations, revocations, rotations and allowlist writes `PUBLISH` what changed on
//! `<prefix>changes` in the same atomic step as the write;
//! [`subscribe_changes`] delivers it to a [`Changes`](tollgate_core::changes::Changes)
//! hub, so a `CachedKeyStore` with a long TTL drops a revoked key on every
//! instance at once (the TTL stays the bound while the subscription is down).
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
mod changes;
mod coalesce;
mod config;
mod idempotency;
mod key_codec;
mod key_store;
mod last_use;
mod rate_limit;
mod replay;
mod response_codec;
mod stores;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod timestamp;
mod usage;

pub use alerts::RedisAlertStore;
pub use allowlist::RedisAllowlistStore;
pub use changes::{subscribe_changes, ChangeSubscription, CHANGES_HEALTH_CHECK};
pub use config::RedisConfig;
pub use idempotency::RedisIdempotencyStore;
pub use key_store::RedisKeyStore;
pub use rate_limit::RedisRateLimitStore;
pub use replay::RedisReplayStore;
pub use stores::RedisStores;
pub use usage::RedisUsageStore;
