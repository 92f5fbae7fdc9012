//! [`SqlAllowlistStore`]: account and key IP allowlists in
//! `tollgate_account_allowlists` and `tollgate_key_allowlists`.

use std::sync::Arc;

use tollgate_core::allowlist::{AllowlistStore, Allowlists, IpSet};
use tollgate_core::changes::Change;
use tollgate_core::{MaybeReady, StoreError, StoreFuture};

use crate::pool::{database, on_pool, WritePool, WriteTx};
use crate::stores::Shared;

/// IP allowlists per account and per key, one row each (networks as
/// CIDRs separated by spaces). Setting or clearing a list announces it
/// ([`Change::AccountAllowlist`] / [`Change::KeyAllowlist`]) on PostgreSQL
/// in the same transaction. Get one from
/// [`SqlStores::allowlist_store`](crate::SqlStores::allowlist_store).
#[derive(Clone)]
pub struct SqlAllowlistStore {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for SqlAllowlistStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlAllowlistStore")
            .field("backend", &self.shared.pool.backend())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy)]
enum Owner {
    Account,
    Key,
}

impl Owner {
    fn table(self) -> (&'static str, &'static str) {
        match self {
            Owner::Account => ("tollgate_account_allowlists", "account_id"),
            Owner::Key => ("tollgate_key_allowlists", "key_id"),
        }
    }

    fn change(self, id: String) -> Change {
        match self {
            Owner::Account => Change::AccountAllowlist(id),
            Owner::Key => Change::KeyAllowlist(id),
        }
    }
}

fn encode(list: &IpSet) -> String {
    list.networks()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn decode(networks: &str) -> Result<Arc<IpSet>, StoreError> {
    IpSet::parse(networks.split_whitespace())
        .map(Arc::new)
        .map_err(|error| StoreError::Corrupt(format!("an allowlist: {error}")))
}

impl SqlAllowlistStore {
    async fn get(&self, owner: Owner, id: String) -> Result<Option<Arc<IpSet>>, StoreError> {
        let (table, column) = owner.table();
        let sql = format!("SELECT networks FROM {table} WHERE {column} = $1");
        let row: Option<(String,)> = on_pool!(&self.shared.pool, |p| {
            sqlx::query_as(&sql)
                .bind(id)
                .fetch_optional(p)
                .await
                .map_err(database)?
        });
        row.map(|(networks,)| decode(&networks)).transpose()
    }

    async fn set(&self, owner: Owner, id: String, list: IpSet) -> Result<(), StoreError> {
        let (table, column) = owner.table();
        let sql = format!(
            "INSERT INTO {table} ({column}, networks) VALUES ($1, $2) \
             ON CONFLICT ({column}) DO UPDATE SET networks = excluded.networks"
        );
        on_pool!(&self.shared.pool, |p| {
            let mut tx = p.begin_write().await?;
            sqlx::query(&sql)
                .bind(&id)
                .bind(encode(&list))
                .execute(&mut *tx)
                .await
                .map_err(database)?;
            tx.announce(&owner.change(id)).await?;
            tx.commit().await.map_err(database)
        })
    }

    async fn clear(&self, owner: Owner, id: String) -> Result<bool, StoreError> {
        let (table, column) = owner.table();
        let sql = format!("DELETE FROM {table} WHERE {column} = $1");
        on_pool!(&self.shared.pool, |p| {
            let mut tx = p.begin_write().await?;
            let deleted = sqlx::query(&sql)
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(database)?
                .rows_affected()
                > 0;
            if deleted {
                tx.announce(&owner.change(id)).await?;
            }
            tx.commit().await.map_err(database)?;
            Ok(deleted)
        })
    }

    async fn both(&self, account_id: String, key_id: String) -> Result<Allowlists, StoreError> {
        // One round trip: the account's row (kind 0) and the key's (kind 1).
        let sql = "SELECT 0, networks FROM tollgate_account_allowlists WHERE account_id = $1 \
                   UNION ALL SELECT 1, networks FROM tollgate_key_allowlists WHERE key_id = $2";
        let rows: Vec<(i32, String)> = on_pool!(&self.shared.pool, |p| {
            sqlx::query_as(sql)
                .bind(account_id)
                .bind(key_id)
                .fetch_all(p)
                .await
                .map_err(database)?
        });
        let mut lists = Allowlists::default();
        for (kind, networks) in rows {
            let list = Some(decode(&networks)?);
            if kind == 0 {
                lists.account = list;
            } else {
                lists.key = list;
            }
        }
        Ok(lists)
    }
}

impl AllowlistStore for SqlAllowlistStore {
    fn account_allowlist(&self, account_id: &str) -> StoreFuture<Option<Arc<IpSet>>> {
        let (store, id) = (self.clone(), account_id.to_owned());
        MaybeReady::boxed(async move { store.get(Owner::Account, id).await })
    }

    fn set_account_allowlist(&self, account_id: &str, list: IpSet) -> StoreFuture<()> {
        let (store, id) = (self.clone(), account_id.to_owned());
        MaybeReady::boxed(async move { store.set(Owner::Account, id, list).await })
    }

    fn clear_account_allowlist(&self, account_id: &str) -> StoreFuture<bool> {
        let (store, id) = (self.clone(), account_id.to_owned());
        MaybeReady::boxed(async move { store.clear(Owner::Account, id).await })
    }

    fn key_allowlist(&self, key_id: &str) -> StoreFuture<Option<Arc<IpSet>>> {
        let (store, id) = (self.clone(), key_id.to_owned());
        MaybeReady::boxed(async move { store.get(Owner::Key, id).await })
    }

    fn set_key_allowlist(&self, key_id: &str, list: IpSet) -> StoreFuture<()> {
        let (store, id) = (self.clone(), key_id.to_owned());
        MaybeReady::boxed(async move { store.set(Owner::Key, id, list).await })
    }

    fn clear_key_allowlist(&self, key_id: &str) -> StoreFuture<bool> {
        let (store, id) = (self.clone(), key_id.to_owned());
        MaybeReady::boxed(async move { store.clear(Owner::Key, id).await })
    }

    fn allowlists(&self, account_id: &str, key_id: &str) -> StoreFuture<Allowlists> {
        let (store, account_id, key_id) = (self.clone(), account_id.to_owned(), key_id.to_owned());
        MaybeReady::boxed(async move { store.both(account_id, key_id).await })
    }
}
