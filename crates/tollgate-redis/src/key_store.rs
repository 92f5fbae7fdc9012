//! [`RedisKeyStore`]: API keys in Redis, shared by every instance.
//!
//! # Layout
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<prefix>key:{<hash hex>}` | hash | the record: `data` (JSON), `revoked_at`, `last_used_at` |
//! | `<prefix>keyid:{<key id>}` | string | the key's hash, hex |
//! | `<prefix>account:{<account id>}:keys` | hash | key id → `<hash hex> <expires_at or -> <revoked 0/1>` |
//!
//! Each key is its own hash tag, so every script touches one cluster slot:
//! the record scripts touch only the record, the limit script only the
//! account index. Authentication (`find_by_hash`) is one `HGETALL`.
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
//! then the account index. There is no cache: the next `find_by_hash` on any
//! instance sees it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use redis::Script;
use tollgate_core::{KeyHash, KeyRecord, KeyStore, StoreError};

use crate::backend::{backend_error, Backend};
use crate::{key_codec, timestamp};

static RESERVE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/key_reserve.lua")));
static CREATE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/key_create.lua")));
static REVOKE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/key_revoke.lua")));
static MARK_REVOKED: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/key_mark_revoked.lua")));
static TOUCH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/key_touch.lua")));

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
        let limit = max_active.map_or(-1, |limit| i64::try_from(limit).unwrap_or(i64::MAX));
        let reserved: i64 = RESERVE
            .key(&account_key)
            .arg(record.id())
            .arg(key_codec::account_entry(&record))
            .arg(limit)
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
        MARK_REVOKED
            .key(self.account_key(record.account_id()))
            .arg(key_id)
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

impl KeyStore for RedisKeyStore {
    fn find_by_hash(&self, hash: &KeyHash) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
        let hash = *hash;
        async move { self.backend.run(self.load(&hash)).await }
    }

    fn find_by_id(&self, key_id: &str) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
        let key_id = key_id.to_owned();
        async move {
            self.backend
                .run(async {
                    match self.hash_of(&key_id).await? {
                        Some(hash) => self.load(&hash).await,
                        None => Ok(None),
                    }
                })
                .await
        }
    }

    async fn insert(&self, record: KeyRecord, max_active: Option<usize>, now: SystemTime) -> Result<(), StoreError> {
        self.backend.run(self.insert_steps(record, max_active, now)).await
    }

    fn list_by_account(
        &self,
        account_id: &str,
    ) -> impl Future<Output = Result<Vec<Arc<KeyRecord>>, StoreError>> + Send {
        let account_id = account_id.to_owned();
        async move { self.backend.run(self.list_steps(&account_id)).await }
    }

    fn revoke(
        &self,
        key_id: &str,
        at: SystemTime,
    ) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
        let key_id = key_id.to_owned();
        async move { self.backend.run(self.revoke_steps(&key_id, at)).await }
    }

    fn record_last_use(&self, key_id: &str, at: SystemTime) -> impl Future<Output = Result<(), StoreError>> + Send {
        let key_id = key_id.to_owned();
        async move { self.backend.run(self.touch_steps(&key_id, at)).await }
    }
}
