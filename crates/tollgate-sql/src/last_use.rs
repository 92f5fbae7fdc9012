//! Last-used times, written behind.
//!
//! Authentication notes a key's use on every request it lets through (the
//! auth layer already limits that to a use worth recording). A write per
//! request would make every request a database write, so uses are kept in
//! memory, newest per key, and a background task writes them every
//! [flush interval](crate::SqlConfig::flush_interval) (one minute by
//! default) in one transaction: **at most one write per key per
//! interval**. This instance's reads show its pending uses at once; other
//! instances see them after the next flush. A crash loses at most one
//! interval of last-used times, never anything else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use tollgate_core::keys::KeyRecord;
use tollgate_core::StoreError;

use crate::pool::{database, on_pool, to_db, Pool, WritePool};

#[derive(Debug, Default)]
pub(crate) struct LastUse {
    pending: Mutex<HashMap<String, SystemTime>>,
}

impl LastUse {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, SystemTime>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes a use; never moves a key's time backwards.
    pub(crate) fn note(&self, key_id: &str, at: SystemTime) {
        let mut pending = self.pending();
        match pending.get_mut(key_id) {
            Some(last) => *last = (*last).max(at),
            None => {
                pending.insert(key_id.to_owned(), at);
            }
        }
    }

    /// The record with this instance's pending use, if later than its own.
    pub(crate) fn apply(&self, record: KeyRecord) -> Arc<KeyRecord> {
        let mut record = record;
        if let Some(&at) = self.pending().get(record.id()) {
            if record.last_used_at.is_none_or(|stored| stored < at) {
                record.last_used_at = Some(at);
            }
        }
        Arc::new(record)
    }

    /// How many uses wait to be written.
    pub(crate) fn len(&self) -> usize {
        self.pending().len()
    }

    /// Writes every pending use in one transaction. A use is forgotten once
    /// written, unless a later one was noted meanwhile; on failure all stay
    /// pending for the next flush.
    pub(crate) async fn flush(&self, pool: &Pool) -> Result<usize, StoreError> {
        let batch: Vec<(String, SystemTime)> = self.pending().iter().map(|(id, at)| (id.clone(), *at)).collect();
        if batch.is_empty() {
            return Ok(0);
        }
        on_pool!(pool, |p| {
            let mut tx = p.begin_write().await?;
            for (key_id, at) in &batch {
                sqlx::query(
                    "UPDATE tollgate_keys SET last_used_at = $2 \
                     WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
                )
                .bind(key_id)
                .bind(to_db(*at))
                .execute(&mut *tx)
                .await
                .map_err(database)?;
            }
            tx.commit().await.map_err(database)?;
        });
        let mut pending = self.pending();
        for (key_id, at) in &batch {
            if pending.get(key_id).is_some_and(|last| last <= at) {
                pending.remove(key_id);
            }
        }
        Ok(batch.len())
    }
}
