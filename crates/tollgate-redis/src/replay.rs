//! [`RedisReplayStore`]: ids of accepted webhook messages, remembered in
//! Redis so a replay is caught whichever instance it reaches.
//!
//! One key per id, `<prefix>replay:{<scope length>:<scope><id>}` (for scope
//! `sender` and id `msg_1`: `replay:{6:sendermsg_1}`), written with `SET NX PX`: the
//! check and the record are one command, so of any number of concurrent
//! sightings exactly one is first, and the key expires with the window.

use std::time::Duration;

use tollgate_core::replay::{storage_key, ReplayStore};
use tollgate_core::{MaybeReady, StoreFuture};

use crate::backend::{backend_error, ttl_millis, Backend};

/// Webhook message ids in Redis. Cheap to clone; clones share the connection.
/// Made by [`crate::RedisStores::replay_store`].
#[derive(Debug, Clone)]
pub struct RedisReplayStore {
    backend: Backend,
}

impl RedisReplayStore {
    pub(crate) fn new(backend: Backend) -> RedisReplayStore {
        RedisReplayStore { backend }
    }

    fn id_key(&self, scope: &str, id: &str) -> String {
        self.backend.key("replay", &storage_key(scope, id), "")
    }
}

impl ReplayStore for RedisReplayStore {
    fn check_and_remember(&self, scope: &str, id: &str, ttl: Duration) -> StoreFuture<bool> {
        let (backend, key) = (self.backend.clone(), self.id_key(scope, id));
        MaybeReady::boxed(async move {
            backend
                .run("check_and_remember", async {
                    let set: Option<String> = redis::cmd("SET")
                        .arg(&key)
                        .arg(1)
                        .arg("NX")
                        .arg("PX")
                        .arg(ttl_millis(ttl))
                        .query_async(&mut backend.connection())
                        .await
                        .map_err(backend_error)?;
                    Ok(set.is_some())
                })
                .await
        })
    }

    fn forget(&self, scope: &str, id: &str) -> StoreFuture<()> {
        let (backend, key) = (self.backend.clone(), self.id_key(scope, id));
        MaybeReady::boxed(async move {
            backend
                .run("forget", async {
                    redis::cmd("DEL")
                        .arg(&key)
                        .query_async::<i64>(&mut backend.connection())
                        .await
                        .map(drop)
                        .map_err(backend_error)
                })
                .await
        })
    }
}
