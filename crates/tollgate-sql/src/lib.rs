//! Durable SQL implementations of tollgate's stores, on SQLite and
//! PostgreSQL (through [`sqlx`], no TLS, no database needed to build):
//! [`SqlKeyStore`] ([`KeyStore`](tollgate_core::keys::KeyStore) and
//! [`KeyRegistry`](tollgate_core::keys::KeyRegistry)), [`SqlAllowlistStore`],
//! [`SqlIdempotencyStore`] and [`SqlUsageStore`], all from one
//! [`SqlStores::connect`], plus [`listen`], the PostgreSQL source of pushed
//! cache invalidation.
//!
//! ```no_run
//! # async fn example() -> Result<(), tollgate_core::StoreError> {
//! use tollgate_core::keys::CachedKeyStore;
//! use tollgate_sql::SqlStores;
//!
//! let stores = SqlStores::connect("postgres://tollgate@db.internal/tollgate").await?;
//! let keys = CachedKeyStore::new(stores.key_store());
//! # let _ = keys; Ok(()) }
//! ```
//!
//! # URLs
//!
//! `postgres://…` (or `postgresql://…`) is PostgreSQL; `sqlite://path?mode=rwc`
//! (created if missing), `sqlite:path` or a bare path (created if missing)
//! is a SQLite file, opened in WAL mode with a busy timeout.
//!
//! # Schema and migrations
//!
//! The tables are named `tollgate_*` and live in the database (on
//! PostgreSQL, the first schema of the connection's `search_path`) the URL
//! names, beside an application's own tables. The migrations are embedded
//! in the crate and applied on connect, in one locked transaction.
//!
//! **Their history is kept apart from the application's**: sqlx 0.8 records
//! migrations in `_sqlx_migrations`, a table name that cannot be changed,
//! and its `Migrator` refuses a history with versions it does not know. So
//! this crate applies its migrations itself and records them in its own
//! table, `tollgate_migrations`: an application can run its own
//! `sqlx::migrate!` on the same database and neither sees the other's
//! versions.
//!
//! **Migrations are additive**: a later version only adds tables, columns
//! with defaults and indexes, never renames or drops what an older version
//! reads or writes. Applied versions this build does not know are
//! accepted, not an error. So during a rolling upgrade an old and a new
//! instance share one database: the first new instance migrates, the old
//! ones keep working on the larger schema.
//!
//! # Consistency
//!
//! - The key limit and rotation are one transaction each: SQLite takes the
//!   write lock at `BEGIN IMMEDIATE` (queueing behind other writers up to
//!   the [busy timeout](SqlConfig::busy_timeout)); PostgreSQL takes a
//!   transaction-scoped advisory lock on the account. Under contention the
//!   losers get [`StoreError::KeyLimitReached`], never a database error.
//! - Last-used times are written behind, at most once per key per
//!   [flush interval](SqlConfig::flush_interval) (a minute by default),
//!   by a background task.
//! - On PostgreSQL every write to a key or a list announces a
//!   [`Change`](tollgate_core::changes::Change) with `pg_notify` in its own
//!   transaction; [`listen`] delivers them to a
//!   [`Changes`](tollgate_core::changes::Changes) hub, to which a
//!   [`CachedKeyStore`](tollgate_core::keys::CachedKeyStore) subscribes
//!   with `invalidated_by`.
//!
//! # What is stored
//!
//! A key's SHA-256 hash (hex, unique index), never the key; its display
//! prefix, label, kind, scopes, plan, account, environment and times.
//! Per-key IP allowlists live only in the allowlist tables.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod allowlist;
mod config;
mod idempotency;
mod key_store;
mod last_use;
mod listen;
mod migrate;
mod pool;
mod stores;
mod usage;

#[cfg(feature = "testing")]
pub mod testing;

pub use allowlist::SqlAllowlistStore;
pub use config::{SqlConfig, DEFAULT_FLUSH_INTERVAL};
pub use idempotency::SqlIdempotencyStore;
pub use key_store::SqlKeyStore;
pub use listen::{listen, ChangeSource};
pub use pool::{Backend, CHANGES_CHANNEL};
pub use stores::SqlStores;
pub use tollgate_core::StoreError;
pub use usage::SqlUsageStore;
