//! [`RedisAlertStore`]: alert de-duplication shared by every instance on
//! one Redis, so a fleet sends each alert once.
//!
//! - `first`: one key per event, `<prefix>alert:{<event>}`, written with
//!   `SET NX PX` for the event's window: of any number of instances seeing
//!   the event, exactly one is first.
//! - `record_network`: one sorted set per key, `<prefix>alert-networks:{<key id>}`,
//!   networks scored by their last use, trimmed to the capacity and
//!   touched by one script; it expires a while after the key's last use.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use redis::Script;
use tollgate_core::alerts::{AlertStore, NetworkUse};
use tollgate_core::{unix_nanos, MaybeReady, StoreError, StoreFuture};

use crate::backend::{backend_error, ttl_millis, Backend};

static RECORD_NETWORK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/record_network.lua")));

// A history outlives its recent window this many times, so a key back
// after a long pause is not taken for a first use too soon.
const HISTORY_LIFETIMES: u32 = 3;

/// Alert events and key network histories in Redis. Cheap to clone; clones
/// share the connection. Made by [`crate::RedisStores::alert_store`].
#[derive(Debug, Clone)]
pub struct RedisAlertStore {
    backend: Backend,
}

impl RedisAlertStore {
    pub(crate) fn new(backend: Backend) -> RedisAlertStore {
        RedisAlertStore { backend }
    }
}

impl AlertStore for RedisAlertStore {
    fn first(&self, event: &str, window: Duration) -> StoreFuture<bool> {
        let (backend, key) = (self.backend.clone(), self.backend.key("alert", event, ""));
        MaybeReady::boxed(async move {
            backend
                .run("first", async {
                    let set: Option<String> = redis::cmd("SET")
                        .arg(&key)
                        .arg(1)
                        .arg("NX")
                        .arg("PX")
                        .arg(ttl_millis(window))
                        .query_async(&mut backend.connection())
                        .await
                        .map_err(backend_error)?;
                    Ok(set.is_some())
                })
                .await
        })
    }

    fn record_network(
        &self,
        key_id: &str,
        network: &str,
        at: SystemTime,
        recent: Duration,
        capacity: usize,
    ) -> StoreFuture<NetworkUse> {
        let (backend, key) = (self.backend.clone(), self.backend.key("alert-networks", key_id, ""));
        let network = network.to_owned();
        let at_millis = unix_nanos(at) / 1_000_000;
        let recent_millis = ttl_millis(recent);
        let ttl = ttl_millis(recent.saturating_mul(HISTORY_LIFETIMES));
        MaybeReady::boxed(async move {
            backend
                .run("record_network", async {
                    let answer: i64 = RECORD_NETWORK
                        .key(&key)
                        .arg(&network)
                        .arg(at_millis)
                        .arg(recent_millis)
                        .arg(capacity.max(1))
                        .arg(ttl)
                        .invoke_async(&mut backend.connection())
                        .await
                        .map_err(backend_error)?;
                    match answer {
                        0 => Ok(NetworkUse::FirstUse),
                        1 => Ok(NetworkUse::Known),
                        2 => Ok(NetworkUse::New),
                        other => Err(StoreError::backend(format!("record_network answered {other}"))),
                    }
                })
                .await
        })
    }
}
