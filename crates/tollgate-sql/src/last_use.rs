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

use tollgate_core::keys::PendingUses;
use tollgate_core::StoreError;

use crate::pool::{database, on_pool, to_db, Pool, WritePool};

/// Writes every pending use in one transaction. A use is forgotten once
/// written, unless a later one was noted meanwhile; on failure all stay
/// pending for the next flush.
pub(crate) async fn flush(uses: &PendingUses, pool: &Pool) -> Result<usize, StoreError> {
    let batch = uses.batch();
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
    uses.written(&batch);
    Ok(batch.len())
}
