//! [`listen`]: the PostgreSQL source of pushed invalidation.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tollgate_core::changes::{Change, Changes};
use tollgate_core::StoreError;

use crate::pool::CHANGES_CHANNEL;
use crate::SqlStores;

const FIRST_RETRY: Duration = Duration::from_millis(50);
const LAST_RETRY: Duration = Duration::from_secs(5);

/// Listens to the changes every instance's stores announce on PostgreSQL
/// (`LISTEN` on [`CHANGES_CHANNEL`]) and delivers them to `changes`, on a
/// task of its own that holds one connection of the stores' pool.
///
/// The hub is marked [connected](Changes::set_connected) once `LISTEN` is
/// in place. When the connection drops, the hub is marked disconnected
/// (caches then rely on their TTL) and the task reconnects by itself,
/// retrying with a growing delay (50 ms to 5 s); once listening again it
/// marks the hub connected, which delivers [`Change::Everything`], since
/// changes may have been missed meanwhile. The task stops when the
/// returned [`ChangeSource`] is dropped or the pool is closed.
///
/// Fails with [`StoreError::Conflict`] on SQLite, which has no channel to
/// listen to (a SQLite database is one host's: use the TTL there).
///
/// ```no_run
/// # async fn example(stores: tollgate_sql::SqlStores) -> Result<(), tollgate_core::StoreError> {
/// use std::time::Duration;
/// use tollgate_core::changes::Changes;
/// use tollgate_core::keys::CachedKeyStore;
///
/// let changes = Changes::new();
/// let _source = tollgate_sql::listen(&stores, &changes)?; // keep it alive
/// let keys = CachedKeyStore::new(stores.key_store())
///     .ttl(Duration::from_secs(30))
///     .invalidated_by(&changes);
/// # let _ = keys; Ok(()) }
/// ```
pub fn listen(stores: &SqlStores, changes: &Changes) -> Result<ChangeSource, StoreError> {
    let Some(pool) = stores.postgres_pool() else {
        return Err(StoreError::Conflict("pushed invalidation needs PostgreSQL".into()));
    };
    let pid = Arc::new(AtomicU32::new(0));
    let task = tokio::spawn(run(pool.clone(), changes.clone(), pid.clone()));
    Ok(ChangeSource { task, pid })
}

/// The running [`listen`] task; dropping it stops the task.
#[derive(Debug)]
pub struct ChangeSource {
    task: tokio::task::JoinHandle<()>,
    pid: Arc<AtomicU32>,
}

impl ChangeSource {
    /// The PostgreSQL backend process id of the listening connection, while
    /// connected (for diagnostics, and for tests that cut it).
    pub fn backend_pid(&self) -> Option<u32> {
        match self.pid.load(Ordering::Acquire) {
            0 => None,
            pid => Some(pid),
        }
    }
}

impl Drop for ChangeSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(pool: PgPool, changes: Changes, pid: Arc<AtomicU32>) {
    let mut retry = FIRST_RETRY;
    while !pool.is_closed() {
        match subscribe(&pool).await {
            Ok((mut listener, backend)) => {
                retry = FIRST_RETRY;
                pid.store(backend, Ordering::Release);
                changes.set_connected(true);
                // `try_recv` answers `None` when the connection dropped
                // (eager reconnection is off: we reconnect, to know when).
                while let Ok(Some(notification)) = listener.try_recv().await {
                    match Change::decode(notification.payload()) {
                        Some(change) => changes.deliver(&change),
                        None => tracing::warn!("ignored a change notification that does not parse"),
                    }
                }
                pid.store(0, Ordering::Release);
                changes.set_connected(false);
                tracing::warn!("lost the change notification connection; reconnecting");
            }
            Err(error) => tracing::warn!(%error, "could not listen for change notifications"),
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(LAST_RETRY);
    }
}

async fn subscribe(pool: &PgPool) -> Result<(PgListener, u32), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.eager_reconnect(false);
    listener.listen(CHANGES_CHANNEL).await?;
    let (backend,): (i32,) = sqlx::query_as("SELECT pg_backend_pid()")
        .fetch_one(&mut listener)
        .await?;
    Ok((listener, u32::try_from(backend).unwrap_or(0)))
}
