//! [`RedisKeyStore`]: API keys in Redis, shared by every instance.
//!
//! # Layout
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<prefix>key:{<hash hex>}` | hash | the record: `data` (JSON), `revoked_at`, `last_used_at` |
//! | `<prefix>keyid:{<key id>}` | string | the key's hash, hex |
//! | `<prefix>account:{<account id>}:keys` | hash | key id → `<hash hex> <expires_at or -> <revoked_at or ->` |
//!
//! Each key is its own hash tag, so every script but rotation's (below)
//! touches one cluster slot: the record scripts touch only the record, the
//! limit script only the account index. Authentication (`find_by_hash`) is
//! one `HGETALL`.
//!
//! # The per-account limit
//!
//! Every key that authenticates at `now` counts toward the account's
//! limit, keys in their grace period after a rotation included. The
//! account index entry carries what that takes — the key's expiry and
//! revocation time — so the scripts count the keys valid at `now` without
//! reading the records. Entries written before revocation times were
//! indexed end in a flag instead (`0` not revoked, `1` revoked or retiring,
//! with no time): `0` counts like an entry without a revocation, `1` is
//! taken as a revocation in the past (it does not count), since a flag
//! cannot tell a key still in its grace period from one revoked long ago.
//! Revoking or rotating such a key rewrites its entry in the new form.
//!
//! # Insertion
//!
//! Inserting touches three slots, so it is three steps, each atomic:
//! reserve the id in the account index while counting the account's active
//! keys (this makes the limit exact under concurrency); claim the id
//! (`SET NX`); write the record unless its hash exists. A conflict at a later
//! step undoes the earlier ones. Should the process die between steps, what
//! is left is a reservation that counts toward the limit, never a key that
//! authenticates without being listed.
//!
//! # Revocation
//!
//! Revocation writes the record first (the one authentication reads) and
//! then the account index (the earliest revocation time wins in both).
//! Until the index is written the key still counts toward the limit, never
//! the other way round. There is no cache: the next `find_by_hash` on any
//! instance sees it.
//!
//! # Rotation
//!
//! Rotation reads the old record (for its account and expiry, which never
//! change), then runs one script that checks the old key is still valid and
//! not retiring, counts the account's keys valid at `now` against the
//! rotation's limit, writes the successor as an insertion would (index
//! entry, id, record, with the same conflict checks) and schedules the old
//! key's revocation, all in one atomic step: of concurrent rotations of one
//! key, exactly one succeeds, and no interleaving of rotations and
//! insertions puts the account over its limit. That script touches the keys of the old key, the
//! successor and their accounts together, so unlike every other operation
//! it needs them on one server: it does not run on Redis Cluster.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use redis::Script;
use tollgate_core::keys::{KeyHash, KeyRecord, KeyRegistry, KeyStore, RotateRefusal, Rotation};
use tollgate_core::{MaybeReady, StoreError, StoreFuture};

use crate::backend::{backend_error, Backend};
use crate::{key_codec, timestamp};

static RESERVE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/key_reserve.lua")));
static CREATE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/key_create.lua")));
static REVOKE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/key_revoke.lua")));
static MARK_REVOKED: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/key_mark_revoked.lua")));
static TOUCH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/key_touch.lua")));
static ROTATE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/key_rotate.lua")));

/// The rotation script's answer: a status, and the old record's fields once rotated.
type RotateReply = (i64, HashMap<String, String>);

/// API keys in Redis. Cheap to clone; clones share the connection.
/// Made by [`crate::RedisStores::key_store`].
#[derive(Debug, Clone)]
pub struct RedisKeyStore {
    backend: Backend,
}

impl RedisKeyStore {
    pub(crate) fn new(backend: Backend) -> RedisKeyStore {
        RedisKeyStore { backend }
    }

    fn record_key(&self, hash: &KeyHash) -> String {
        self.backend.key("key", &hash.to_hex(), "")
    }

    fn id_key(&self, key_id: &str) -> String {
        self.backend.key("keyid", key_id, "")
    }

    fn account_key(&self, account_id: &str) -> String {
        self.backend.key("account", account_id, ":keys")
    }

    async fn load(&self, hash: &KeyHash) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.record_key(hash))
            .query_async(&mut self.backend.connection())
            .await
            .map_err(backend_error)?;
        key_codec::decode(hash, &fields)
    }

    async fn hash_of(&self, key_id: &str) -> Result<Option<KeyHash>, StoreError> {
        let hex: Option<String> = redis::cmd("GET")
            .arg(self.id_key(key_id))
            .query_async(&mut self.backend.connection())
            .await
            .map_err(backend_error)?;
        hex.map(|hex| KeyHash::from_hex(&hex).ok_or_else(|| StoreError::Corrupt(format!("key id index: {hex:?}"))))
            .transpose()
    }

    async fn insert_steps(
        &self,
        record: KeyRecord,
        max_active: Option<usize>,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let mut connection = self.backend.connection();
        let account_key = self.account_key(record.account_id());
        let id_key = self.id_key(record.id());
        let reserved: i64 = RESERVE
            .key(&account_key)
            .arg(record.id())
            .arg(key_codec::account_entry(&record))
            .arg(limit_arg(max_active))
            .arg(timestamp::encode(now))
            .invoke_async(&mut connection)
            .await
            .map_err(backend_error)?;
        match reserved {
            1 => {}
            -1 => {
                return Err(StoreError::KeyLimitReached {
                    limit: max_active.unwrap_or_default(),
                })
            }
            _ => return Err(StoreError::Conflict(format!("key id {} exists", record.id()))),
        }
        let undo_reservation = || async {
            let mut connection = self.backend.connection();
            redis::cmd("HDEL")
                .arg(&account_key)
                .arg(record.id())
                .query_async::<i64>(&mut connection)
                .await
                .map_err(backend_error)
        };
        let claimed: Option<String> = redis::cmd("SET")
            .arg(&id_key)
            .arg(record.hash.to_hex())
            .arg("NX")
            .query_async(&mut connection)
            .await
            .map_err(backend_error)?;
        if claimed.is_none() {
            undo_reservation().await?;
            return Err(StoreError::Conflict(format!("key id {} exists", record.id())));
        }
        let mut create = CREATE.key(self.record_key(&record.hash));
        for (field, value) in key_codec::encode(&record) {
            create.arg(field).arg(value);
        }
        let created: i64 = create.invoke_async(&mut connection).await.map_err(backend_error)?;
        if created == 0 {
            redis::cmd("DEL")
                .arg(&id_key)
                .query_async::<i64>(&mut connection)
                .await
                .map_err(backend_error)?;
            undo_reservation().await?;
            return Err(StoreError::Conflict("a key with this hash exists".into()));
        }
        Ok(())
    }

    async fn revoke_steps(&self, key_id: &str, at: SystemTime) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let Some(hash) = self.hash_of(key_id).await? else {
            return Ok(None);
        };
        let mut connection = self.backend.connection();
        let fields: Option<HashMap<String, String>> = REVOKE
            .key(self.record_key(&hash))
            .arg(timestamp::encode(at))
            .invoke_async(&mut connection)
            .await
            .map_err(backend_error)?;
        let Some(record) = key_codec::decode(&hash, &fields.unwrap_or_default())? else {
            return Ok(None);
        };
        // The record's time: the earliest revocation, whoever set it.
        let revoked_at = record.revoked_at.unwrap_or(at);
        MARK_REVOKED
            .key(self.account_key(record.account_id()))
            .arg(key_id)
            .arg(timestamp::encode(revoked_at))
            .invoke_async::<i64>(&mut connection)
            .await
            .map_err(backend_error)?;
        Ok(Some(record))
    }

    async fn list_steps(&self, account_id: &str) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        let mut connection = self.backend.connection();
        let entries: Vec<String> = redis::cmd("HVALS")
            .arg(self.account_key(account_id))
            .query_async(&mut connection)
            .await
            .map_err(backend_error)?;
        let hashes = entries
            .iter()
            .map(|entry| {
                key_codec::entry_hash(entry).ok_or_else(|| StoreError::Corrupt(format!("account index: {entry:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        // One round trip for all records; separate commands (not MGET), so
        // a cluster-aware pipeline can route each to its own slot.
        let mut pipeline = redis::pipe();
        for hash in &hashes {
            pipeline.cmd("HGETALL").arg(self.record_key(hash));
        }
        let all: Vec<HashMap<String, String>> = pipeline.query_async(&mut connection).await.map_err(backend_error)?;
        let mut records = Vec::with_capacity(all.len());
        for (hash, fields) in hashes.iter().zip(&all) {
            // A reservation whose record was never written is not a key.
            if let Some(record) = key_codec::decode(hash, fields)? {
                records.push(record);
            }
        }
        records.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id().cmp(b.id())));
        Ok(records)
    }

    async fn rotate_steps(&self, rotation: Rotation) -> Result<Result<Arc<KeyRecord>, RotateRefusal>, StoreError> {
        let (key_id, successor) = (rotation.key_id.as_str(), rotation.successor);
        let (retire_at, now, max_active) = (rotation.retire_at, rotation.now, rotation.max_active);
        let Some(hash) = self.hash_of(key_id).await? else {
            return Ok(Err(RotateRefusal::Unknown));
        };
        // The account and the expiry never change: read here, they name the
        // account index and decide expiry inside the script.
        let Some(old) = self.load(&hash).await? else {
            return Ok(Err(RotateRefusal::Unknown));
        };
        let mut rotate = ROTATE.key(self.record_key(&hash));
        rotate
            .key(self.account_key(old.account_id()))
            .key(self.id_key(successor.id()))
            .key(self.record_key(&successor.hash))
            .key(self.account_key(successor.account_id()))
            .arg(key_id)
            .arg(old.expires_at.map_or_else(|| "-".to_owned(), timestamp::encode))
            .arg(timestamp::encode(now))
            .arg(timestamp::encode(retire_at))
            .arg(successor.id())
            .arg(successor.hash.to_hex())
            .arg(key_codec::account_entry(&successor))
            .arg(limit_arg(max_active));
        for (field, value) in key_codec::encode(&successor) {
            rotate.arg(field).arg(value);
        }
        let (status, fields): RotateReply = rotate
            .invoke_async(&mut self.backend.connection())
            .await
            .map_err(backend_error)?;
        match status {
            1 => match key_codec::decode(&hash, &fields)? {
                Some(retiring) => Ok(Ok(retiring)),
                None => Err(StoreError::Corrupt("rotated key record".into())),
            },
            0 => Ok(Err(RotateRefusal::Unknown)),
            -1 => Ok(Err(RotateRefusal::Retiring)),
            -2 => Ok(Err(RotateRefusal::Invalid)),
            -3 => Err(StoreError::Conflict(format!("key id {} exists", successor.id()))),
            -4 => Err(StoreError::Conflict("a key with this hash exists".into())),
            -5 => Err(StoreError::KeyLimitReached {
                limit: max_active.unwrap_or_default(),
            }),
            other => Err(StoreError::Corrupt(format!("key rotation status {other}"))),
        }
    }

    async fn touch_steps(&self, key_id: &str, at: SystemTime) -> Result<(), StoreError> {
        let Some(hash) = self.hash_of(key_id).await? else {
            return Ok(());
        };
        TOUCH
            .key(self.record_key(&hash))
            .arg(timestamp::encode(at))
            .invoke_async::<i64>(&mut self.backend.connection())
            .await
            .map_err(backend_error)?;
        Ok(())
    }
}

// A limit as the scripts take it: -1 for none.
fn limit_arg(max_active: Option<usize>) -> i64 {
    max_active.map_or(-1, |limit| i64::try_from(limit).unwrap_or(i64::MAX))
}

impl KeyStore for RedisKeyStore {
    fn find_by_hash(&self, hash: &KeyHash) -> StoreFuture<Option<Arc<KeyRecord>>> {
        let (store, hash) = (self.clone(), *hash);
        MaybeReady::boxed(async move { store.backend.run("find_by_hash", store.load(&hash)).await })
    }

    fn record_last_use(&self, key_id: &str, at: SystemTime) -> StoreFuture<()> {
        let (store, key_id) = (self.clone(), key_id.to_owned());
        MaybeReady::boxed(async move {
            store
                .backend
                .run("record_last_use", store.touch_steps(&key_id, at))
                .await
        })
    }
}

impl KeyRegistry for RedisKeyStore {
    fn find_by_id(&self, key_id: &str) -> StoreFuture<Option<Arc<KeyRecord>>> {
        let (store, key_id) = (self.clone(), key_id.to_owned());
        MaybeReady::boxed(async move {
            store
                .backend
                .run("find_by_id", async {
                    match store.hash_of(&key_id).await? {
                        Some(hash) => store.load(&hash).await,
                        None => Ok(None),
                    }
                })
                .await
        })
    }

    fn insert(&self, record: KeyRecord, max_active: Option<usize>, now: SystemTime) -> StoreFuture<()> {
        let store = self.clone();
        MaybeReady::boxed(async move {
            store
                .backend
                .run("insert", store.insert_steps(record, max_active, now))
                .await
        })
    }

    fn list_by_account(&self, account_id: &str) -> StoreFuture<Vec<Arc<KeyRecord>>> {
        let (store, account_id) = (self.clone(), account_id.to_owned());
        MaybeReady::boxed(async move {
            store
                .backend
                .run("list_by_account", store.list_steps(&account_id))
                .await
        })
    }

    fn revoke(&self, key_id: &str, at: SystemTime) -> StoreFuture<Option<Arc<KeyRecord>>> {
        let (store, key_id) = (self.clone(), key_id.to_owned());
        MaybeReady::boxed(async move { store.backend.run("revoke", store.revoke_steps(&key_id, at)).await })
    }

    fn rotate(&self, rotation: Rotation) -> StoreFuture<Result<Arc<KeyRecord>, RotateRefusal>> {
        let store = self.clone();
        MaybeReady::boxed(async move { store.backend.run("rotate", store.rotate_steps(rotation)).await })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tollgate_core::{KeyKind, Principal};

    use super::*;
    use crate::testing::TestRedis;

    fn record(id: &str, hash: u8, created_at: SystemTime) -> KeyRecord {
        KeyRecord {
            principal: Principal::new("acct", id, KeyKind::Production),
            hash: KeyHash::from_bytes([hash; 32]),
            label: "Production Server".into(),
            display_prefix: "tg_live_ab".into(),
            created_at,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        }
    }

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[tokio::test]
    async fn a_rotation_to_a_conflicting_successor_changes_nothing() {
        let Some(redis) = TestRedis::connect("rotation_conflicts").await else {
            return;
        };
        let keys = redis.key_store();
        let retire_at = t0() + Duration::from_secs(3600);
        keys.insert(record("key_old", 1, t0()), None, t0()).await.unwrap();
        keys.insert(record("key_other", 2, t0()), None, t0()).await.unwrap();
        let same_id = keys
            .rotate(Rotation::new("key_old", record("key_other", 3, t0()), retire_at, t0()))
            .await;
        assert!(matches!(same_id, Err(StoreError::Conflict(_))), "{same_id:?}");
        let same_hash = keys
            .rotate(Rotation::new("key_old", record("key_new", 2, t0()), retire_at, t0()))
            .await;
        assert!(matches!(same_hash, Err(StoreError::Conflict(_))), "{same_hash:?}");

        let old = keys.find_by_id("key_old").await.unwrap().expect("kept");
        assert_eq!(old.revoked_at, None, "not retiring");
        assert!(keys.find_by_id("key_new").await.unwrap().is_none());
        assert!(keys
            .find_by_hash(&KeyHash::from_bytes([3; 32]))
            .await
            .unwrap()
            .is_none());
        assert_eq!(keys.list_by_account("acct").await.unwrap().len(), 2);

        let retiring = keys
            .rotate(Rotation::new("key_old", record("key_new", 4, t0()), retire_at, t0()))
            .await
            .unwrap()
            .expect("rotates once the successor is free");
        assert_eq!(retiring.revoked_at, Some(retire_at));
        assert_eq!(keys.list_by_account("acct").await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn an_expired_key_does_not_rotate_and_a_retiring_one_counts_toward_the_limit() {
        let Some(redis) = TestRedis::connect("rotation_expiry_and_limit").await else {
            return;
        };
        let keys = redis.key_store();
        let retire_at = t0() + Duration::from_secs(3600);
        let mut expired = record("key_expired", 1, t0());
        expired.expires_at = Some(t0());
        keys.insert(expired, None, t0()).await.unwrap();
        let refused = keys
            .rotate(Rotation::new("key_expired", record("key_2", 2, t0()), retire_at, t0()))
            .await;
        assert_eq!(refused.unwrap().unwrap_err(), RotateRefusal::Invalid);
        assert!(keys.find_by_id("key_2").await.unwrap().is_none());

        keys.insert(record("key_a", 3, t0()), Some(2), t0()).await.unwrap();
        keys.rotate(Rotation::new("key_a", record("key_b", 4, t0()), retire_at, t0()).max_active(2))
            .await
            .unwrap()
            .expect("rotates");
        // key_a (retiring) still works, so it counts: key_a and key_b fill the limit of 2.
        let full = keys.insert(record("key_c", 5, t0()), Some(2), t0()).await;
        assert!(
            matches!(full, Err(StoreError::KeyLimitReached { limit: 2 })),
            "{full:?}"
        );
        let full = keys
            .rotate(Rotation::new("key_b", record("key_c", 5, t0()), retire_at, t0()).max_active(2))
            .await;
        assert!(
            matches!(full, Err(StoreError::KeyLimitReached { limit: 2 })),
            "{full:?}"
        );
        // Once its grace period is over, it no longer counts.
        keys.insert(record("key_c", 5, retire_at), Some(2), retire_at)
            .await
            .expect("room once key_a stopped working");
    }

    #[tokio::test]
    async fn account_index_entries_of_earlier_versions_are_read_sensibly() {
        let Some(redis) = TestRedis::connect("legacy_account_entries").await else {
            return;
        };
        let keys = redis.key_store();
        // Three keys as an earlier version indexed them: a revocation flag, no time.
        let mut retired = record("key_retired", 1, t0());
        retired.revoked_at = Some(t0());
        let active = record("key_active", 2, t0());
        let rotated = record("key_rotated", 3, t0());
        for key in [&retired, &active, &rotated] {
            keys.insert(key.clone(), None, t0()).await.unwrap();
        }
        let legacy = |key: &KeyRecord, flag: &str| format!("{} - {flag}", key.hash.to_hex());
        let mut connection = keys.backend.connection();
        let _: () = redis::cmd("HSET")
            .arg(keys.account_key("acct"))
            .arg(retired.id())
            .arg(legacy(&retired, "1"))
            .arg(active.id())
            .arg(legacy(&active, "0"))
            .arg(rotated.id())
            .arg(legacy(&rotated, "0"))
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(keys.list_by_account("acct").await.unwrap().len(), 3, "still listed");
        // "1" is taken as revoked, "0" as active: two keys count.
        let full = keys.insert(record("key_x", 4, t0()), Some(2), t0()).await;
        assert!(
            matches!(full, Err(StoreError::KeyLimitReached { limit: 2 })),
            "{full:?}"
        );
        keys.insert(record("key_x", 4, t0()), Some(3), t0())
            .await
            .expect("the flagged key does not count");
        // Rotating a key with an old entry rewrites it with its retirement time.
        let retire_at = t0() + Duration::from_secs(60);
        keys.rotate(Rotation::new("key_rotated", record("key_y", 5, t0()), retire_at, t0()).max_active(5))
            .await
            .unwrap()
            .expect("rotates");
        let entry: String = redis::cmd("HGET")
            .arg(keys.account_key("acct"))
            .arg(rotated.id())
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(
            entry,
            format!("{} - {}", rotated.hash.to_hex(), timestamp::encode(retire_at))
        );
        // key_active, key_rotated (retiring), key_x and key_y count.
        let full = keys.insert(record("key_z", 6, t0()), Some(4), t0()).await;
        assert!(
            matches!(full, Err(StoreError::KeyLimitReached { limit: 4 })),
            "{full:?}"
        );
        // Revoking a key with an old entry writes its revocation time.
        keys.revoke("key_active", t0()).await.unwrap().expect("known");
        let entry: String = redis::cmd("HGET")
            .arg(keys.account_key("acct"))
            .arg(active.id())
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(entry, format!("{} - {}", active.hash.to_hex(), timestamp::encode(t0())));
        keys.insert(record("key_z", 6, t0()), Some(4), t0())
            .await
            .expect("the revoked key no longer counts");
    }

    #[tokio::test]
    async fn the_earliest_revocation_time_is_the_one_indexed() {
        let Some(redis) = TestRedis::connect("indexed_revocation_time").await else {
            return;
        };
        let keys = redis.key_store();
        keys.insert(record("key_1", 1, t0()), None, t0()).await.unwrap();
        let later = t0() + Duration::from_secs(600);
        keys.revoke("key_1", t0()).await.unwrap().expect("known");
        keys.revoke("key_1", later).await.unwrap().expect("known");
        keys.insert(record("key_2", 2, t0()), Some(1), t0() + Duration::from_secs(1))
            .await
            .expect("key_1 stopped counting at its first revocation");
    }
}
