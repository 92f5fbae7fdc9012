//! [`SqlKeyStore`]: API keys in table `tollgate_keys`, by hash (unique
//! index) and by id, with the key limit and rotation each one transaction.

use std::sync::Arc;
use std::time::SystemTime;

use tollgate_core::changes::Change;
use tollgate_core::keys::{KeyHash, KeyRecord, KeyRegistry, KeyStore, RotateRefusal, Rotation};
use tollgate_core::{Environment, KeyKind, MaybeReady, Principal, Scope, StoreError, StoreFuture};

use crate::pool::{database, from_db, on_pool, to_db, WritePool, WriteTx};
use crate::stores::Shared;

const COLUMNS: &str = "id, hash, account_id, kind, scopes, plan, environment, label, \
                       display_prefix, created_at, expires_at, revoked_at, last_used_at";

// One row of `tollgate_keys`, in `COLUMNS` order.
type KeyRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

// Keys valid at $2 of account $1: what counts toward the key limit.
const COUNT_VALID: &str = "SELECT COUNT(*) FROM tollgate_keys WHERE account_id = $1 \
                           AND (revoked_at IS NULL OR revoked_at > $2) \
                           AND (expires_at IS NULL OR expires_at > $2)";

const INSERT: &str = "INSERT INTO tollgate_keys (id, hash, account_id, kind, scopes, plan, environment, \
                      label, display_prefix, created_at, expires_at, revoked_at, last_used_at) \
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

// Revokes key $1 at $2 unless it is revoked earlier already.
const REVOKE: &str = "UPDATE tollgate_keys SET revoked_at = CASE \
                      WHEN revoked_at IS NOT NULL AND revoked_at <= $2 THEN revoked_at ELSE $2 END \
                      WHERE id = $1";

// Refuses with `KeyLimitReached` (returning from the enclosing function)
// when the account has `max_active` keys valid at `now`. A macro, not a
// function, so it is written once for both drivers' transactions.
macro_rules! check_limit {
    ($tx:expr, $account_id:expr, $max_active:expr, $now:expr) => {
        if let Some(limit) = $max_active {
            let (valid,): (i64,) = sqlx::query_as(COUNT_VALID)
                .bind($account_id)
                .bind(to_db($now))
                .fetch_one(&mut *$tx)
                .await
                .map_err(database)?;
            if usize::try_from(valid).unwrap_or(usize::MAX) >= limit {
                return Err(StoreError::KeyLimitReached { limit });
            }
        }
    };
}

// Binds a record to `INSERT`'s thirteen placeholders.
macro_rules! bind_record {
    ($query:expr, $record:expr) => {{
        let record: &KeyRecord = $record;
        let principal = &record.principal;
        let scopes: Vec<&str> = principal.scopes().iter().map(Scope::as_str).collect();
        $query
            .bind(principal.key_id().to_owned())
            .bind(record.hash.to_hex())
            .bind(principal.account_id().to_owned())
            .bind(principal.kind().as_str())
            .bind(serde_json::to_string(&scopes).expect("strings serialise"))
            .bind(principal.plan().to_owned())
            .bind(principal.environment().as_str())
            .bind(record.label.clone())
            .bind(record.display_prefix.clone())
            .bind(to_db(record.created_at))
            .bind(record.expires_at.map(to_db))
            .bind(record.revoked_at.map(to_db))
            .bind(record.last_used_at.map(to_db))
    }};
}

/// The key store and registry on SQL: [`KeyStore`] for authentication,
/// [`KeyRegistry`] for management. Get one from
/// [`SqlStores::key_store`](crate::SqlStores::key_store); clones share the pool.
///
/// - **The key limit is one transaction**: the account's valid keys are
///   counted and the new key inserted under one lock (SQLite `BEGIN
///   IMMEDIATE`; PostgreSQL a transaction-scoped advisory lock on the
///   account), so concurrent creations and rotations never exceed it; the
///   losers get [`StoreError::KeyLimitReached`], not a database error.
/// - **Rotation is one transaction**: the check of the retiring key, the
///   count, the successor's insert and the retirement commit together.
/// - **Changes are announced** on PostgreSQL (`pg_notify` on
///   [`CHANGES_CHANNEL`](crate::CHANGES_CHANNEL), in the writing transaction,
///   so delivered exactly when it commits); see [`listen`](crate::listen).
/// - **Last-used times are written behind**, see [`SqlStores`](crate::SqlStores).
///
/// Only the key's hash is stored, as hex; never the key.
#[derive(Clone)]
pub struct SqlKeyStore {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for SqlKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlKeyStore")
            .field("backend", &self.shared.pool.backend())
            .finish_non_exhaustive()
    }
}

impl SqlKeyStore {
    async fn find(&self, column: &'static str, value: String) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM tollgate_keys WHERE {column} = $1");
        let row: Option<KeyRow> = on_pool!(&self.shared.pool, |p| {
            sqlx::query_as(&sql)
                .bind(value)
                .fetch_optional(p)
                .await
                .map_err(database)?
        });
        row.map(|row| self.record(row)).transpose()
    }

    fn record(&self, row: KeyRow) -> Result<Arc<KeyRecord>, StoreError> {
        Ok(self.shared.last_use.apply(Arc::new(decode(row)?)))
    }

    async fn insert_record(
        &self,
        record: KeyRecord,
        max_active: Option<usize>,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        on_pool!(&self.shared.pool, |p| {
            let mut tx = p.begin_write().await?;
            tx.lock_account(record.account_id()).await?;
            check_limit!(tx, record.account_id(), max_active, now);
            bind_record!(sqlx::query(INSERT), &record)
                .execute(&mut *tx)
                .await
                .map_err(database)?;
            tx.announce(&Change::Key(record.hash)).await?;
            tx.commit().await.map_err(database)
        })
    }

    async fn list(&self, account_id: String) -> Result<Vec<Arc<KeyRecord>>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM tollgate_keys WHERE account_id = $1 ORDER BY created_at, id");
        let rows: Vec<KeyRow> = on_pool!(&self.shared.pool, |p| {
            sqlx::query_as(&sql)
                .bind(account_id)
                .fetch_all(p)
                .await
                .map_err(database)?
        });
        rows.into_iter().map(|row| self.record(row)).collect()
    }

    async fn revoke_at(&self, key_id: String, at: SystemTime) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let sql = format!("{REVOKE} RETURNING {COLUMNS}");
        let row: Option<KeyRow> = on_pool!(&self.shared.pool, |p| {
            let mut tx = p.begin_write().await?;
            let row: Option<KeyRow> = sqlx::query_as(&sql)
                .bind(key_id)
                .bind(to_db(at))
                .fetch_optional(&mut *tx)
                .await
                .map_err(database)?;
            if let Some(row) = &row {
                tx.announce(&Change::Key(hash_of(&row.1)?)).await?;
            }
            tx.commit().await.map_err(database)?;
            row
        });
        row.map(|row| self.record(row)).transpose()
    }

    async fn rotate_key(&self, rotation: Rotation) -> Result<Result<Arc<KeyRecord>, RotateRefusal>, StoreError> {
        let Rotation {
            key_id,
            successor,
            retire_at,
            now,
            max_active,
        } = rotation;
        let select = format!("SELECT {COLUMNS} FROM tollgate_keys WHERE id = $1");
        let retire = format!("{REVOKE} RETURNING {COLUMNS}");
        let row: KeyRow = on_pool!(&self.shared.pool, |p| {
            let mut tx = p.begin_write().await?;
            let account: Option<(String,)> = sqlx::query_as("SELECT account_id FROM tollgate_keys WHERE id = $1")
                .bind(&key_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(database)?;
            let Some((account_id,)) = account else {
                return Ok(Err(RotateRefusal::Unknown));
            };
            // Read again under the account's lock: another rotation of this
            // key may have committed while this one waited for it.
            tx.lock_account(&account_id).await?;
            let current: KeyRow = match sqlx::query_as(&select)
                .bind(&key_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(database)?
            {
                Some(row) => row,
                None => return Ok(Err(RotateRefusal::Unknown)),
            };
            let current = decode(current)?;
            if !current.is_valid_at(now) {
                return Ok(Err(RotateRefusal::Invalid));
            }
            if current.revoked_at.is_some() {
                return Ok(Err(RotateRefusal::Retiring));
            }
            check_limit!(tx, &account_id, max_active, now);
            bind_record!(sqlx::query(INSERT), &successor)
                .execute(&mut *tx)
                .await
                .map_err(database)?;
            let retiring: KeyRow = sqlx::query_as(&retire)
                .bind(&key_id)
                .bind(to_db(retire_at))
                .fetch_one(&mut *tx)
                .await
                .map_err(database)?;
            tx.announce(&Change::Key(current.hash)).await?;
            tx.announce(&Change::Key(successor.hash)).await?;
            tx.commit().await.map_err(database)?;
            retiring
        });
        Ok(Ok(self.record(row)?))
    }
}

fn hash_of(hex: &str) -> Result<KeyHash, StoreError> {
    KeyHash::from_hex(hex).ok_or_else(|| StoreError::Corrupt("a key hash is not 64 hex digits".into()))
}

fn decode(row: KeyRow) -> Result<KeyRecord, StoreError> {
    let (id, hash, account_id, kind, scopes, plan, environment, label, display_prefix, created, expires, revoked, used) =
        row;
    let kind = KeyKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("key {id}: unknown kind {kind:?}")))?;
    let environment = match environment.as_str() {
        "live" => Environment::Live,
        "sandbox" => Environment::Sandbox,
        other => return Err(StoreError::Corrupt(format!("key {id}: unknown environment {other:?}"))),
    };
    let scopes: Vec<String> = serde_json::from_str(&scopes)
        .map_err(|_| StoreError::Corrupt(format!("key {id}: scopes are not a JSON list")))?;
    let principal = Principal::new(account_id, id, kind)
        .with_scopes(scopes.into_iter().map(Scope::new))
        .with_plan(plan)
        .with_environment(environment);
    Ok(KeyRecord {
        principal,
        hash: hash_of(&hash)?,
        label,
        display_prefix,
        created_at: from_db(created),
        expires_at: expires.map(from_db),
        revoked_at: revoked.map(from_db),
        last_used_at: used.map(from_db),
    })
}

impl KeyStore for SqlKeyStore {
    fn find_by_hash(&self, hash: &KeyHash) -> StoreFuture<Option<Arc<KeyRecord>>> {
        let (store, hash) = (self.clone(), hash.to_hex());
        MaybeReady::boxed(async move { store.find("hash", hash).await })
    }

    fn record_last_use(&self, key_id: &str, at: SystemTime) -> StoreFuture<()> {
        self.shared.last_use.note(key_id, at);
        MaybeReady::ready(Ok(()))
    }
}

impl KeyRegistry for SqlKeyStore {
    fn find_by_id(&self, key_id: &str) -> StoreFuture<Option<Arc<KeyRecord>>> {
        let (store, key_id) = (self.clone(), key_id.to_owned());
        MaybeReady::boxed(async move { store.find("id", key_id).await })
    }

    fn insert(&self, record: KeyRecord, max_active: Option<usize>, now: SystemTime) -> StoreFuture<()> {
        let store = self.clone();
        MaybeReady::boxed(async move { store.insert_record(record, max_active, now).await })
    }

    fn list_by_account(&self, account_id: &str) -> StoreFuture<Vec<Arc<KeyRecord>>> {
        let (store, account_id) = (self.clone(), account_id.to_owned());
        MaybeReady::boxed(async move { store.list(account_id).await })
    }

    fn revoke(&self, key_id: &str, at: SystemTime) -> StoreFuture<Option<Arc<KeyRecord>>> {
        let (store, key_id) = (self.clone(), key_id.to_owned());
        MaybeReady::boxed(async move { store.revoke_at(key_id, at).await })
    }

    fn rotate(&self, rotation: Rotation) -> StoreFuture<Result<Arc<KeyRecord>, RotateRefusal>> {
        let store = self.clone();
        MaybeReady::boxed(async move { store.rotate_key(rotation).await })
    }
}
