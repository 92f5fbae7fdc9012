//! For tests that need a database — this crate's and yours: stores on a
//! fresh SQLite file (always available) or a fresh PostgreSQL database
//! made on `$DATABASE_URL`'s server (skipped with a printed line without
//! it, a failure instead under `TOLLGATE_REQUIRE_POSTGRES=1`), deleted or
//! dropped afterwards.
//!
//! ```no_run
//! # async fn example() {
//! use tollgate_sql::testing::TestSql;
//!
//! let sqlite = TestSql::sqlite("my_test").await;
//! tollgate_core::conformance::key_store(&sqlite.key_store()).await;
//!
//! let Some(postgres) = TestSql::postgres("my_test").await else {
//!     return; // skipped: no DATABASE_URL
//! };
//! tollgate_core::conformance::key_store(&postgres.key_store()).await;
//! # }
//! ```

use std::path::PathBuf;

use sqlx::Connection;
use tollgate_core::conformance::unique_name;

use crate::{SqlConfig, SqlStores};

/// Stores on a database of their own, removed when this is dropped (at
/// the end of the test, or while a failing one unwinds).
pub struct TestSql {
    /// The stores on the test's database.
    pub stores: SqlStores,
    config: SqlConfig,
    target: Target,
}

enum Target {
    Sqlite(PathBuf),
    Postgres { server_url: String, database: String },
}

impl std::ops::Deref for TestSql {
    type Target = SqlStores;

    fn deref(&self) -> &SqlStores {
        &self.stores
    }
}

impl TestSql {
    /// Stores on a new SQLite file in the temporary directory.
    pub async fn sqlite(test: &str) -> TestSql {
        TestSql::sqlite_with(test, |config| config).await
    }

    /// Like [`TestSql::sqlite`], adjusting the configuration first.
    pub async fn sqlite_with(test: &str, adjust: impl FnOnce(SqlConfig) -> SqlConfig) -> TestSql {
        let path = std::env::temp_dir().join(format!("{}.db", unique_name(&format!("tollgate_{test}"))));
        let config = adjust(SqlConfig::new(format!("sqlite://{}?mode=rwc", path.display())));
        let target = Target::Sqlite(path);
        let stores = SqlStores::connect_with(config.clone())
            .await
            .expect("open a SQLite file");
        TestSql { stores, config, target }
    }

    /// Stores on a new database on `$DATABASE_URL`'s server. Without
    /// `DATABASE_URL` (or with an unreachable server) the test is skipped:
    /// this prints why and returns `None`, unless
    /// `TOLLGATE_REQUIRE_POSTGRES=1`, which makes it a failure.
    pub async fn postgres(test: &str) -> Option<TestSql> {
        TestSql::postgres_with(test, |config| config).await
    }

    /// Like [`TestSql::postgres`], adjusting the configuration first.
    pub async fn postgres_with(test: &str, adjust: impl FnOnce(SqlConfig) -> SqlConfig) -> Option<TestSql> {
        let required = std::env::var("TOLLGATE_REQUIRE_POSTGRES").is_ok_and(|value| value == "1");
        let Ok(server_url) = std::env::var("DATABASE_URL") else {
            assert!(
                !required,
                "{test}: TOLLGATE_REQUIRE_POSTGRES=1 but DATABASE_URL is not set"
            );
            announce_skip(&format!("{test}: skipped, DATABASE_URL is not set"));
            return None;
        };
        let database = unique_name("tgtest");
        if let Err(error) = create_database(&server_url, &database).await {
            assert!(
                !required,
                "{test}: TOLLGATE_REQUIRE_POSTGRES=1 but PostgreSQL is unreachable: {error}"
            );
            announce_skip(&format!("{test}: skipped, PostgreSQL is unreachable: {error}"));
            return None;
        }
        let config = adjust(SqlConfig::new(with_database(&server_url, &database)));
        let target = Target::Postgres { server_url, database };
        let stores = SqlStores::connect_with(config.clone())
            .await
            .expect("connect to the test database");
        Some(TestSql { stores, config, target })
    }

    /// Another instance on the same database: its own pool, as another
    /// process of the fleet would have.
    pub async fn another_instance(&self) -> SqlStores {
        SqlStores::connect_with(self.config.clone())
            .await
            .expect("connect a second instance")
    }

    /// The configuration (URL, pool, intervals), to connect more instances.
    pub fn config(&self) -> &SqlConfig {
        &self.config
    }
}

impl Drop for TestSql {
    fn drop(&mut self) {
        match &self.target {
            Target::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
            Target::Postgres { server_url, database } => {
                // Drop cannot await, and may run while a failing test
                // unwinds inside its runtime: drop the database from a
                // thread of our own with its own runtime. `FORCE` ends the
                // test's connections still open.
                let (server_url, database) = (server_url.clone(), database.clone());
                let dropped = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime");
                    runtime.block_on(async {
                        let mut admin = sqlx::PgConnection::connect(&server_url).await?;
                        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"))
                            .execute(&mut admin)
                            .await?;
                        admin.close().await
                    })
                });
                if let Ok(Err(error)) = dropped.join() {
                    eprintln!("could not drop the test database: {error}");
                }
            }
        }
    }
}

async fn create_database(server_url: &str, database: &str) -> Result<(), sqlx::Error> {
    let mut admin = sqlx::PgConnection::connect(server_url).await?;
    sqlx::raw_sql(&format!("CREATE DATABASE \"{database}\""))
        .execute(&mut admin)
        .await?;
    admin.close().await
}

// `url` with its database (the path) replaced by `database`, query kept.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |at| at + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

/// Prints a skip so it shows even though the test harness captures output:
/// the harness captures `print!`/`eprint!`, not writes to the stream itself.
pub fn announce_skip(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{message}");
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_is_replaced_and_the_rest_kept() {
        for (url, expected) in [
            ("postgres://u@h:5432/test", "postgres://u@h:5432/db"),
            (
                "postgres://u@h:5432/test?sslmode=disable",
                "postgres://u@h:5432/db?sslmode=disable",
            ),
            ("postgres://u@h", "postgres://u@h/db"),
        ] {
            assert_eq!(super::with_database(url, "db"), expected);
        }
    }
}
