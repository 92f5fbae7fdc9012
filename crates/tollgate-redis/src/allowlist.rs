//! [`RedisAllowlistStore`]: per-account and per-key IP allowlists in Redis,
//! with the built [`IpSet`]s cached in process and checked for freshness on
//! every read.
//!
//! # Layout
//!
//! One hash per list: `<prefix>allow:account:{<account id>}` and
//! `<prefix>allow:key:{<key id>}` (separate areas, so an account and a key
//! with the same id never share a list). Fields: `list`, the networks
//! separated by commas (empty for an empty list, which allows nothing), and
//! `v`, a random version changed by every write. One `HSET` writes both, so
//! readers see the old list or the new one, never a mixture. Every write
//! (set or clear) publishes its [`Change`] on the changes channel in the
//! same script as the write, for caches in front of any allowlist store.
//!
//! # Reads
//!
//! Building an [`IpSet`] from a long list costs far more than a round trip,
//! so each store keeps the sets it built with their version. A read fetches
//! only the versions (`HGET v` of both lists, sent together: on one server
//! they share a round trip; on a cluster each goes to its list's slot)
//! and reuses the cached set when the version matches; a changed or new list
//! costs a second round trip (`HMGET v list`). A change made on one instance
//! is seen by every instance on its next read: the cache never answers
//! without asking Redis for the version.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use futures_util::future::try_join_all;
use redis::Script;
use tollgate_core::allowlist::{AllowlistStore, Allowlists, IpSet};
use tollgate_core::changes::Change;
use tollgate_core::{MaybeReady, StoreError, StoreFuture};

use crate::backend::{backend_error, Backend};

static SET: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/allowlist_set.lua")));
static CLEAR: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/allowlist_clear.lua")));

// Beyond this many cached lists the cache starts afresh: a bound on memory
// that costs one rebuild per list in use.
const MAX_CACHED_LISTS: usize = 10_000;

/// Built sets by Redis key, with the version they were built from.
#[derive(Debug, Default)]
pub(crate) struct ListCache {
    sets: Mutex<HashMap<String, (String, Arc<IpSet>)>>,
}

impl ListCache {
    fn get(&self, key: &str, version: &str) -> Option<Arc<IpSet>> {
        let sets = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
        sets.get(key)
            .filter(|(cached, _)| cached == version)
            .map(|(_, set)| Arc::clone(set))
    }

    fn put(&self, key: String, version: String, set: Arc<IpSet>) {
        let mut sets = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
        if sets.len() >= MAX_CACHED_LISTS && !sets.contains_key(&key) {
            sets.clear();
        }
        sets.insert(key, (version, set));
    }

    fn forget(&self, key: &str) {
        self.sets.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }
}

/// IP allowlists in Redis. Cheap to clone; clones share the connection and
/// the cache of built sets. Made by [`crate::RedisStores::allowlist_store`].
#[derive(Debug, Clone)]
pub struct RedisAllowlistStore {
    backend: Backend,
    cache: Arc<ListCache>,
}

impl RedisAllowlistStore {
    pub(crate) fn new(backend: Backend, cache: Arc<ListCache>) -> RedisAllowlistStore {
        RedisAllowlistStore { backend, cache }
    }

    fn account_key(&self, account_id: &str) -> String {
        self.backend.key("allow:account", account_id, "")
    }

    fn key_key(&self, key_id: &str) -> String {
        self.backend.key("allow:key", key_id, "")
    }

    // The current lists under `keys`: versions first, then only the lists
    // that changed since they were cached.
    async fn read(&self, keys: &[&str]) -> Result<Vec<Option<Arc<IpSet>>>, StoreError> {
        // Not a pipeline: the lists are on two slots. Sent at once, the
        // commands still share a round trip on one multiplexed connection.
        let versions: Vec<Option<String>> = try_join_all(keys.iter().map(|key| {
            let mut connection = self.backend.connection();
            async move {
                redis::cmd("HGET")
                    .arg(*key)
                    .arg("v")
                    .query_async(&mut connection)
                    .await
                    .map_err(backend_error)
            }
        }))
        .await?;
        let mut sets: Vec<Option<Arc<IpSet>>> = Vec::with_capacity(keys.len());
        let mut stale = Vec::new();
        for (index, (key, version)) in keys.iter().zip(&versions).enumerate() {
            match version {
                None => {
                    self.cache.forget(key);
                    sets.push(None);
                }
                Some(version) => {
                    let cached = self.cache.get(key, version);
                    if cached.is_none() {
                        stale.push(index);
                    }
                    sets.push(cached);
                }
            }
        }
        if stale.is_empty() {
            return Ok(sets);
        }
        let lists: Vec<(Option<String>, Option<String>)> = try_join_all(stale.iter().map(|&index| {
            let mut connection = self.backend.connection();
            async move {
                redis::cmd("HMGET")
                    .arg(keys[index])
                    .arg("v")
                    .arg("list")
                    .query_async(&mut connection)
                    .await
                    .map_err(backend_error)
            }
        }))
        .await?;
        for (&index, (version, list)) in stale.iter().zip(lists) {
            // Cleared between the two round trips: no list.
            let (Some(version), Some(list)) = (version, list) else {
                self.cache.forget(keys[index]);
                continue;
            };
            let set = Arc::new(parse_list(&list)?);
            self.cache.put(keys[index].to_owned(), version, Arc::clone(&set));
            sets[index] = Some(set);
        }
        Ok(sets)
    }

    async fn read_one(&self, key: &str) -> Result<Option<Arc<IpSet>>, StoreError> {
        Ok(self.read(&[key]).await?.pop().flatten())
    }

    // The write and its announcement in one step.
    async fn write(&self, key: &str, list: &IpSet, change: Change) -> Result<(), StoreError> {
        let version = new_version()?;
        SET.key(key)
            .arg(&version)
            .arg(format_list(list))
            .arg(self.backend.changes_channel())
            .arg(change.encode())
            .invoke_async::<i64>(&mut self.backend.connection())
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn clear(&self, key: &str, change: Change) -> Result<bool, StoreError> {
        let deleted: i64 = CLEAR
            .key(key)
            .arg(self.backend.changes_channel())
            .arg(change.encode())
            .invoke_async(&mut self.backend.connection())
            .await
            .map_err(backend_error)?;
        self.cache.forget(key);
        Ok(deleted == 1)
    }
}

fn format_list(list: &IpSet) -> String {
    let networks: Vec<String> = list.networks().iter().map(ToString::to_string).collect();
    networks.join(",")
}

fn parse_list(text: &str) -> Result<IpSet, StoreError> {
    if text.is_empty() {
        return Ok(IpSet::empty());
    }
    IpSet::parse(text.split(',')).map_err(|error| StoreError::Corrupt(format!("allowlist: {error}")))
}

// 128 random bits: two writes never share a version, whichever instance made them.
fn new_version() -> Result<String, StoreError> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|error| StoreError::backend(format!("no randomness: {error}")))?;
    Ok(u128::from_be_bytes(bytes).to_string())
}

impl AllowlistStore for RedisAllowlistStore {
    fn account_allowlist(&self, account_id: &str) -> StoreFuture<Option<Arc<IpSet>>> {
        let (store, key) = (self.clone(), self.account_key(account_id));
        MaybeReady::boxed(async move { store.backend.run("account_allowlist", store.read_one(&key)).await })
    }

    fn set_account_allowlist(&self, account_id: &str, list: IpSet) -> StoreFuture<()> {
        let (store, key) = (self.clone(), self.account_key(account_id));
        let change = Change::AccountAllowlist(account_id.to_owned());
        MaybeReady::boxed(async move {
            store
                .backend
                .run("set_account_allowlist", store.write(&key, &list, change))
                .await
        })
    }

    fn clear_account_allowlist(&self, account_id: &str) -> StoreFuture<bool> {
        let (store, key) = (self.clone(), self.account_key(account_id));
        let change = Change::AccountAllowlist(account_id.to_owned());
        MaybeReady::boxed(async move {
            store
                .backend
                .run("clear_account_allowlist", store.clear(&key, change))
                .await
        })
    }

    fn key_allowlist(&self, key_id: &str) -> StoreFuture<Option<Arc<IpSet>>> {
        let (store, key) = (self.clone(), self.key_key(key_id));
        MaybeReady::boxed(async move { store.backend.run("key_allowlist", store.read_one(&key)).await })
    }

    fn set_key_allowlist(&self, key_id: &str, list: IpSet) -> StoreFuture<()> {
        let (store, key) = (self.clone(), self.key_key(key_id));
        let change = Change::KeyAllowlist(key_id.to_owned());
        MaybeReady::boxed(async move {
            store
                .backend
                .run("set_key_allowlist", store.write(&key, &list, change))
                .await
        })
    }

    fn clear_key_allowlist(&self, key_id: &str) -> StoreFuture<bool> {
        let (store, key) = (self.clone(), self.key_key(key_id));
        let change = Change::KeyAllowlist(key_id.to_owned());
        MaybeReady::boxed(async move {
            store
                .backend
                .run("clear_key_allowlist", store.clear(&key, change))
                .await
        })
    }

    // Both lists in one pipelined round trip (two while a list changed).
    fn allowlists(&self, account_id: &str, key_id: &str) -> StoreFuture<Allowlists> {
        let (store, account_key, key_key) = (self.clone(), self.account_key(account_id), self.key_key(key_id));
        MaybeReady::boxed(async move {
            let mut sets = store
                .backend
                .run("allowlists", store.read(&[&account_key, &key_key]))
                .await?;
            let key = sets.pop().flatten();
            let account = sets.pop().flatten();
            Ok(Allowlists { account, key })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_through_text_and_empty_stays_empty() {
        let list = IpSet::parse(["203.0.113.0/24", "2001:db8::/48", "198.51.100.7"]).unwrap();
        assert_eq!(parse_list(&format_list(&list)).unwrap(), list);
        assert_eq!(format_list(&IpSet::empty()), "");
        assert!(parse_list("").unwrap().is_empty());
        assert!(matches!(parse_list("10.0.0.0/33"), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn the_cache_answers_only_for_the_same_version_and_stays_bounded() {
        let cache = ListCache::default();
        let set = Arc::new(IpSet::parse(["10.0.0.0/8"]).unwrap());
        cache.put("k".into(), "1".into(), Arc::clone(&set));
        assert!(cache.get("k", "1").is_some_and(|got| Arc::ptr_eq(&got, &set)));
        assert!(cache.get("k", "2").is_none());
        cache.forget("k");
        assert!(cache.get("k", "1").is_none());
        for i in 0..MAX_CACHED_LISTS + 5 {
            cache.put(format!("k{i}"), "1".into(), Arc::clone(&set));
        }
        assert!(cache.sets.lock().unwrap().len() <= MAX_CACHED_LISTS);
    }
}
