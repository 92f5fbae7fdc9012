//! [`RedisKeyStore`]: API keys in Redis, shared by every instance.
//!
//! # Layout
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<prefix>account:{<account id>}:key:<hash hex>` | hash | the record: `data` (JSON), `revoked_at`, `last_used_at` |
//! | `<prefix>account:{<account id>}:keys` | hash | key id → `<hash hex> <expires_at or -> <revoked_at or ->` |
//! | `<prefix>keyhash:{<hash hex>}` | string | the key's account id (hash → account pointer) |
//! | `<prefix>keyid:{<key id>}` | string | `<hash hex> <account id>` (id → record pointer) |
//!
//! An account's records and its index share the account's hash tag, so
//! every script (reservation, creation, revocation, rotation) touches one
//! cluster slot and the stores run on Redis Cluster. The two pointers are
//! written once, when a key is created, and never change: a key's account
//! and hash are fixed for life.
//!
//! Authentication (`find_by_hash`) needs the account to name the record:
//! each store keeps the pointers it has read in bounded local maps
//! ([`DEFAULT_CACHED_ACCOUNTS`] entries each, by hash and by id), once the
//! record they lead to was found, so a key seen before is one `HGETALL` of
//! its record (one round trip, the revocation state read fresh every time);
//! a key not seen before is a `GET` of its pointer and then the `HGETALL`;
//! an unknown key is the `GET` alone, and is not remembered. Recording a
//! key's last use costs no round trip: it is noted in memory and written
//! behind, every key used in a second in one script call per account (see
//! [`RedisConfig::last_use_flush_interval`](crate::RedisConfig::last_use_flush_interval)).
//!
//! Records written by versions before this layout (`key:{<hash>}`,
//! `keyid:{<id>}` holding only the hash) are not read: keys created by
//! them must be created again (or copied into this layout) after upgrading.
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
//! Inserting is four steps, each atomic: claim the id pointer and then the
//! hash pointer (`SET NX` each: ids and hashes are unique across
//! accounts); reserve the id in the account index while counting the
//! account's active keys (this makes the limit exact under concurrency);
//! write the record unless it exists. A conflict at a later step undoes the
//! earlier ones. Should the process die between steps, what is left is a
//! pointer to no record, or a reservation that counts toward the limit,
//! never a key that authenticates without being listed.
//!
//! # Revocation
//!
//! Revocation writes the record first (the one authentication reads) and
//! then the account index (the earliest revocation time wins in both).
//! Until the index is written the key still counts toward the limit, never
//! the other way round. The record's write publishes [`Change::Key`] on the
//! changes channel in the same script, so instances with a cache in front
//! of this store (a `CachedKeyStore` fed by [`crate::subscribe_changes`])
//! drop the key at once; without a cache, the next `find_by_hash` on any
//! instance sees it. Rotation announces the retiring key and its successor
//! the same way, and creation the new key (a cache may remember its hash
//! as unknown: `CachedKeyStore::negative_ttl`).
//!
//! # Rotation
//!
//! Rotation reads the old record (for its account and expiry, which never
//! change), claims the successor's two pointers as an insertion does, then
//! runs one script on the account's slot that checks the old key is still
//! valid and not retiring, counts the account's keys valid at `now` against
//! the rotation's limit, writes the successor's index entry and record and
//! schedules the old key's revocation, all in one atomic step: of
//! concurrent rotations of one key, exactly one succeeds, and no
//! interleaving of rotations and insertions puts the account over its
//! limit. A refused rotation releases the pointers it claimed. A successor
//! belongs to its key's account; one naming another account is refused as
//! a conflict.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use quick_cache::sync::Cache;
use redis::Script;
use tollgate_core::changes::Change;
use tollgate_core::keys::{KeyHash, KeyRecord, KeyRegistry, KeyStore, PendingUses, RotateRefusal, Rotation};
use tollgate_core::{MaybeReady, StoreError, StoreFuture};

use crate::backend::{backend_error, Backend};
use crate::last_use::BATCH;
use crate::{key_codec, timestamp};

static RESERVE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/key_reserve.lua")));
static CREATE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/key_create.lua")));
static REVOKE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/key_revoke.lua")));
static MARK_REVOKED: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/key_mark_revoked.lua")));
static TOUCH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/key_touch.lua")));
static ROTATE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/key_rotate.lua")));

/// How many hash → account pointers a key store remembers (about 100 bytes
/// each): past it the least used are read again from Redis.
pub const DEFAULT_CACHED_ACCOUNTS: usize = 100_000;

/// The rotation script's answer: a status, and the old record's fields once rotated.
type RotateReply = (i64, HashMap<String, String>);

/// The pointers read from Redis: which account each key hash belongs to,
/// and which hash and account each key id names. Immutable facts, cached
/// only once the record they lead to was found (so never a pointer of a
/// creation that may yet be undone). Shared by the key stores of one
/// [`crate::RedisStores`].
pub(crate) struct AccountCache {
    by_hash: Cache<KeyHash, Arc<str>>,
    by_id: Cache<String, (KeyHash, Arc<str>)>,
    // Uses noted by the stores sharing this cache, written behind.
    last_use: PendingUses,
}

impl std::fmt::Debug for AccountCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountCache")
            .field("by_hash", &self.by_hash.len())
            .field("by_id", &self.by_id.len())
            .field("pending_uses", &self.last_use.len())
            .finish()
    }
}

pub(crate) fn account_cache() -> Arc<AccountCache> {
    Arc::new(AccountCache {
        by_hash: Cache::new(DEFAULT_CACHED_ACCOUNTS),
        by_id: Cache::new(DEFAULT_CACHED_ACCOUNTS),
        last_use: PendingUses::default(),
    })
}

/// API keys in Redis. Cheap to clone; clones share the connection.
/// Made by [`crate::RedisStores::key_store`].
#[derive(Clone)]
pub struct RedisKeyStore {
    backend: Backend,
    accounts: Arc<AccountCache>,
}

impl std::fmt::Debug for RedisKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKeyStore")
            .field("backend", &self.backend)
            .field("cached_accounts", &self.accounts.by_hash.len())
            .finish()
    }
}

impl RedisKeyStore {
    pub(crate) fn new(backend: Backend, accounts: Arc<AccountCache>) -> RedisKeyStore {
        RedisKeyStore { backend, accounts }
    }

    /// How many noted uses wait to be written.
    pub fn pending_last_uses(&self) -> usize {
        self.accounts.last_use.len()
    }

    /// Writes the uses noted so far (the background task does this every
    /// flush interval; call it before shutting down to lose none): one
    /// script call per account and [`BATCH`] keys. Returns how many uses
    /// were written. On failure every use stays pending for the next flush.
    pub async fn flush_last_uses(&self) -> Result<usize, StoreError> {
        self.backend.run("flush_last_uses", self.flush_steps()).await
    }

    async fn flush_steps(&self) -> Result<usize, StoreError> {
        let batch = self.accounts.last_use.batch();
        if batch.is_empty() {
            return Ok(0);
        }
        let mut by_account: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for (key_id, at) in &batch {
            match self.pointer_of(key_id).await {
                Ok(Some((hash, account))) => {
                    let record = self.record_key(&account, &hash);
                    by_account
                        .entry(account)
                        .or_default()
                        .push((record, timestamp::encode(*at)));
                }
                // An unknown id has no record to write; a corrupt pointer
                // would fail every flush: both are dropped.
                Ok(None) | Err(StoreError::Corrupt(_)) => {}
                Err(error) => return Err(error),
            }
        }
        let mut connection = self.backend.connection();
        for touches in by_account.values() {
            for chunk in touches.chunks(BATCH) {
                let mut touch = TOUCH.prepare_invoke();
                for (record, at) in chunk {
                    touch.key(record).arg(at);
                }
                touch
                    .invoke_async::<i64>(&mut connection)
                    .await
                    .map_err(backend_error)?;
            }
        }
        self.accounts.last_use.written(&batch);
        Ok(batch.len())
    }

    fn record_key(&self, account_id: &str, hash: &KeyHash) -> String {
        self.backend
            .key("account", account_id, &format!(":key:{}", hash.to_hex()))
    }

    fn id_key(&self, key_id: &str) -> String {
        self.backend.key("keyid", key_id, "")
    }

    fn hash_key(&self, hash: &KeyHash) -> String {
        self.backend.key("keyhash", &hash.to_hex(), "")
    }

    fn account_key(&self, account_id: &str) -> String {
        self.backend.key("account", account_id, ":keys")
    }

    async fn record(&self, account_id: &str, hash: &KeyHash) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.record_key(account_id, hash))
            .query_async(&mut self.backend.connection())
            .await
            .map_err(backend_error)?;
        Ok(key_codec::decode(hash, &fields)?.map(|record| self.accounts.last_use.apply(record)))
    }

    async fn account_of(&self, hash: &KeyHash) -> Result<Option<Arc<str>>, StoreError> {
        let account: Option<String> = redis::cmd("GET")
            .arg(self.hash_key(hash))
            .query_async(&mut self.backend.connection())
            .await
            .map_err(backend_error)?;
        Ok(account.map(Arc::from))
    }

    async fn load(&self, hash: &KeyHash) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        if let Some(account) = self.accounts.by_hash.get(hash) {
            if let Some(record) = self.record(&account, hash).await? {
                return Ok(Some(record));
            }
            // No record where the pointer said (purged): ask for the pointer again.
            self.accounts.by_hash.remove(hash);
        }
        let Some(account) = self.account_of(hash).await? else {
            return Ok(None);
        };
        let record = self.record(&account, hash).await?;
        if let Some(record) = &record {
            self.accounts.by_hash.insert(*hash, account.clone());
            // So that writing its use behind needs no pointer read.
            self.accounts.by_id.insert(record.id().to_owned(), (*hash, account));
        }
        Ok(record)
    }

    /// The key's record by id, remembering the id's pointer once the record is found.
    async fn record_by_id(&self, key_id: &str) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let Some((hash, account)) = self.pointer_of(key_id).await? else {
            return Ok(None);
        };
        let record = self.record(&account, &hash).await?;
        if record.is_some() {
            self.accounts
                .by_id
                .insert(key_id.to_owned(), (hash, Arc::from(account)));
        }
        Ok(record)
    }

    /// The hash and account a key id points to.
    async fn pointer_of(&self, key_id: &str) -> Result<Option<(KeyHash, String)>, StoreError> {
        if let Some((hash, account)) = self.accounts.by_id.get(key_id) {
            return Ok(Some((hash, account.to_string())));
        }
        let pointer: Option<String> = redis::cmd("GET")
            .arg(self.id_key(key_id))
            .query_async(&mut self.backend.connection())
            .await
            .map_err(backend_error)?;
        let Some(pointer) = pointer else {
            return Ok(None);
        };
        let parsed = pointer
            .split_once(' ')
            .and_then(|(hex, account)| Some((KeyHash::from_hex(hex)?, account.to_owned())));
        match parsed {
            Some(parsed) => Ok(Some(parsed)),
            None => Err(StoreError::Corrupt(format!(
                "key id pointer {pointer:?} (an earlier layout holds only the hash: see RedisKeyStore)"
            ))),
        }
    }

    /// Claims a new key's id and hash pointers (`SET NX` each); on a
    /// conflict nothing stays claimed.
    async fn claim_pointers(&self, record: &KeyRecord) -> Result<(), StoreError> {
        let mut connection = self.backend.connection();
        let (id_key, hash_key) = (self.id_key(record.id()), self.hash_key(&record.hash));
        let id_claimed: Option<String> = redis::cmd("SET")
            .arg(&id_key)
            .arg(format!("{} {}", record.hash.to_hex(), record.account_id()))
            .arg("NX")
            .query_async(&mut connection)
            .await
            .map_err(backend_error)?;
        if id_claimed.is_none() {
            return Err(StoreError::Conflict(format!("key id {} exists", record.id())));
        }
        let hash_claimed: Option<String> = redis::cmd("SET")
            .arg(&hash_key)
            .arg(record.account_id())
            .arg("NX")
            .query_async(&mut connection)
            .await
            .map_err(backend_error)?;
        if hash_claimed.is_none() {
            self.delete(&[id_key]).await?;
            return Err(StoreError::Conflict("a key with this hash exists".into()));
        }
        Ok(())
    }

    async fn release_pointers(&self, record: &KeyRecord) -> Result<(), StoreError> {
        self.delete(&[self.id_key(record.id()), self.hash_key(&record.hash)])
            .await
    }

    // One DEL per key: the keys are on different slots.
    async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        let mut connection = self.backend.connection();
        for key in keys {
            redis::cmd("DEL")
                .arg(key)
                .query_async::<i64>(&mut connection)
                .await
                .map_err(backend_error)?;
        }
        Ok(())
    }

    async fn insert_steps(
        &self,
        record: KeyRecord,
        max_active: Option<usize>,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        self.claim_pointers(&record).await?;
        match self.insert_in_account(&record, max_active, now).await {
            Ok(()) => Ok(()),
            Err(error) => {
                self.release_pointers(&record).await?;
                Err(error)
            }
        }
    }

    async fn insert_in_account(
        &self,
        record: &KeyRecord,
        max_active: Option<usize>,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let mut connection = self.backend.connection();
        let account_key = self.account_key(record.account_id());
        let reserved: i64 = RESERVE
            .key(&account_key)
            .arg(record.id())
            .arg(key_codec::account_entry(record))
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
        let mut create = CREATE.key(self.record_key(record.account_id(), &record.hash));
        create
            .arg(self.backend.changes_channel())
            .arg(Change::Key(record.hash).encode());
        for (field, value) in key_codec::encode(record) {
            create.arg(field).arg(value);
        }
        let created: i64 = create.invoke_async(&mut connection).await.map_err(backend_error)?;
        if created == 0 {
            redis::cmd("HDEL")
                .arg(&account_key)
                .arg(record.id())
                .query_async::<i64>(&mut connection)
                .await
                .map_err(backend_error)?;
            return Err(StoreError::Conflict("a key with this hash exists".into()));
        }
        Ok(())
    }

    async fn revoke_steps(&self, key_id: &str, at: SystemTime) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let Some((hash, account)) = self.pointer_of(key_id).await? else {
            return Ok(None);
        };
        let mut connection = self.backend.connection();
        let fields: Option<HashMap<String, String>> = REVOKE
            .key(self.record_key(&account, &hash))
            .arg(timestamp::encode(at))
            .arg(self.backend.changes_channel())
            .arg(Change::Key(hash).encode())
            .invoke_async(&mut connection)
            .await
            .map_err(backend_error)?;
        let Some(record) = key_codec::decode(&hash, &fields.unwrap_or_default())? else {
            return Ok(None);
        };
        // The record's time: the earliest revocation, whoever set it.
        let revoked_at = record.revoked_at.unwrap_or(at);
        MARK_REVOKED
            .key(self.account_key(&account))
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
        // One round trip for all records, all on the account's slot.
        let mut pipeline = redis::pipe();
        for hash in &hashes {
            pipeline.cmd("HGETALL").arg(self.record_key(account_id, hash));
        }
        let all: Vec<HashMap<String, String>> = pipeline.query_async(&mut connection).await.map_err(backend_error)?;
        let mut records = Vec::with_capacity(all.len());
        for (hash, fields) in hashes.iter().zip(&all) {
            // A reservation whose record was never written is not a key.
            if let Some(record) = key_codec::decode(hash, fields)? {
                records.push(self.accounts.last_use.apply(record));
            }
        }
        records.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id().cmp(b.id())));
        Ok(records)
    }

    async fn rotate_steps(&self, rotation: Rotation) -> Result<Result<Arc<KeyRecord>, RotateRefusal>, StoreError> {
        let (key_id, successor) = (rotation.key_id.as_str(), &rotation.successor);
        let Some((hash, account)) = self.pointer_of(key_id).await? else {
            return Ok(Err(RotateRefusal::Unknown));
        };
        // The expiry never changes: read here, it decides expiry inside the script.
        let Some(old) = self.record(&account, &hash).await? else {
            return Ok(Err(RotateRefusal::Unknown));
        };
        if successor.account_id() != account {
            return Err(StoreError::Conflict(format!(
                "a successor belongs to its key's account, not to {}",
                successor.account_id()
            )));
        }
        self.claim_pointers(successor).await?;
        let rotated = self.rotate_in_account(&rotation, &hash, &old).await;
        if !matches!(rotated, Ok(Ok(_))) {
            self.release_pointers(successor).await?;
        }
        rotated
    }

    async fn rotate_in_account(
        &self,
        rotation: &Rotation,
        hash: &KeyHash,
        old: &KeyRecord,
    ) -> Result<Result<Arc<KeyRecord>, RotateRefusal>, StoreError> {
        let (successor, account) = (&rotation.successor, old.account_id());
        let mut rotate = ROTATE.key(self.record_key(account, hash));
        rotate
            .key(self.account_key(account))
            .key(self.record_key(account, &successor.hash))
            .arg(rotation.key_id.as_str())
            .arg(old.expires_at.map_or_else(|| "-".to_owned(), timestamp::encode))
            .arg(timestamp::encode(rotation.now))
            .arg(timestamp::encode(rotation.retire_at))
            .arg(successor.id())
            .arg(key_codec::account_entry(successor))
            .arg(limit_arg(rotation.max_active))
            .arg(self.backend.changes_channel())
            .arg(Change::Key(*hash).encode())
            .arg(Change::Key(successor.hash).encode());
        for (field, value) in key_codec::encode(successor) {
            rotate.arg(field).arg(value);
        }
        let (status, fields): RotateReply = rotate
            .invoke_async(&mut self.backend.connection())
            .await
            .map_err(backend_error)?;
        match status {
            1 => match key_codec::decode(hash, &fields)? {
                Some(retiring) => Ok(Ok(retiring)),
                None => Err(StoreError::Corrupt("rotated key record".into())),
            },
            0 => Ok(Err(RotateRefusal::Unknown)),
            -1 => Ok(Err(RotateRefusal::Retiring)),
            -2 => Ok(Err(RotateRefusal::Invalid)),
            -3 => Err(StoreError::Conflict(format!("key id {} exists", successor.id()))),
            -4 => Err(StoreError::Conflict("a key with this hash exists".into())),
            -5 => Err(StoreError::KeyLimitReached {
                limit: rotation.max_active.unwrap_or_default(),
            }),
            other => Err(StoreError::Corrupt(format!("key rotation status {other}"))),
        }
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
        // Written behind (see the module docs): no round trip here.
        self.accounts.last_use.note(key_id, at);
        MaybeReady::ready(Ok(()))
    }
}

impl KeyRegistry for RedisKeyStore {
    fn find_by_id(&self, key_id: &str) -> StoreFuture<Option<Arc<KeyRecord>>> {
        let (store, key_id) = (self.clone(), key_id.to_owned());
        MaybeReady::boxed(async move {
            store
                .backend
                .run("find_by_id", async { store.record_by_id(&key_id).await })
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
