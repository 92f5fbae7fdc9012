//! The example's own database: accounts, webhook endpoints, messages,
//! pending webhook deliveries, the audit log and (on a single node) daily
//! quota counts.
//!
//! One [`Database`] speaks to SQLite (a file, the single-node default) or
//! PostgreSQL (a fleet) through sqlx's `Any` driver; every query is written
//! once, in the SQL both accept. Every call is bounded by the configured
//! timeout, so a database that has gone away fails requests closed (503)
//! instead of hanging them, and the pool reconnects by itself once it is back.

pub mod audit;
pub mod deliveries;
pub mod history;
pub mod messages;
pub mod migrations;
pub mod quota;
pub mod sessions;
pub mod webhooks;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

/// Which database a [`Database`] speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file: one node.
    Sqlite,
    /// PostgreSQL: a fleet.
    Postgres,
}

/// A failed or timed-out database call. Shown without the URL.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database did not answer within the timeout.
    #[error("the database did not answer within {0:?}")]
    Timeout(Duration),
    /// The database answered with an error.
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

/// A pool of connections with a per-call timeout. Clones share the pool.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    timeout: Duration,
}

impl Database {
    /// Connects to `url` (`postgres://…`, `sqlite:…`, or a file path for
    /// SQLite, created if missing) and applies the example's migrations.
    /// Every later call fails after `timeout`.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Database, String> {
        sqlx::any::install_default_drivers();
        let (url, backend) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (url.to_owned(), Backend::Postgres)
        } else {
            let path = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .unwrap_or(url);
            (format!("sqlite://{path}?mode=rwc"), Backend::Sqlite)
        };
        let options = AnyPoolOptions::new()
            .acquire_timeout(timeout)
            // SQLite: one writer at a time anyway; a few readers beside it.
            .max_connections(if backend == Backend::Sqlite { 4 } else { 10 })
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        use sqlx::Executor;
                        // WAL: a commit is durable against a crash of the
                        // process (kill -9) once it returns; concurrent
                        // writers wait instead of failing.
                        connection.execute("PRAGMA journal_mode = WAL").await?;
                        connection.execute("PRAGMA synchronous = NORMAL").await?;
                        connection.execute("PRAGMA busy_timeout = 5000").await?;
                    }
                    Ok(())
                })
            });
        let described = describe(&url, backend);
        let pool = tokio::time::timeout(timeout.max(Duration::from_secs(5)), options.connect(&url))
            .await
            .map_err(|_| format!("cannot reach the database {described}: no answer"))?
            .map_err(|error| format!("cannot open the database {described}: {error}"))?;
        migrations::migrate(&pool)
            .await
            .map_err(|error| format!("cannot migrate the database {described}: {error}"))?;
        Ok(Database { pool, backend, timeout })
    }

    /// The pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// SQLite or PostgreSQL.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `call` within the timeout.
    pub async fn run<T>(&self, call: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, DbError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(DbError::from),
            Err(_) => Err(DbError::Timeout(self.timeout)),
        }
    }

    /// One round trip, for `/health/ready`.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.run(async { sqlx::query("SELECT 1").execute(&self.pool).await.map(drop) })
            .await
    }

    /// Records an account and its plan (`api_accounts`), replacing the plan
    /// of one already recorded: the configuration names the plan, the
    /// database lists every account a deployment has served.
    pub async fn record_account(&self, id: &str, plan: &str, now_unix: u64) -> Result<(), DbError> {
        self.run(
            sqlx::query(
                "INSERT INTO api_accounts (id, plan, created_unix) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET plan = excluded.plan",
            )
            .bind(id.to_owned())
            .bind(plan.to_owned())
            .bind(now_unix as i64)
            .execute(&self.pool),
        )
        .await
        .map(drop)
    }

    /// Closes every connection (at shutdown, after the last write).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

// The database for messages: a file path as given, a URL without its password.
fn describe(url: &str, backend: Backend) -> String {
    match backend {
        Backend::Sqlite => {
            let path = url.trim_start_matches("sqlite://");
            let path = path.split('?').next().unwrap_or(path);
            format!("{:?}", Path::new(path))
        }
        Backend::Postgres => match url.split_once('@') {
            Some((_, host)) => format!("postgres://…@{host}"),
            None => url.to_owned(),
        },
    }
}
