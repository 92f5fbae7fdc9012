//! The crate's migrations: applied once, recorded apart from an
//! application's sqlx migrations, tolerant of a newer build's versions.

use tollgate_core::StoreError;
use tollgate_sql::testing::TestSql;
use tollgate_sql::SqlStores;

static APP: sqlx::migrate::Migrator = sqlx::migrate!("tests/app_migrations");

macro_rules! on_both {
    ($name:ident, |$db:ident, $pool:ident| $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                let $db = TestSql::sqlite(stringify!($name)).await;
                let $pool = $db.sqlite_pool().expect("SQLite").clone();
                $body;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                let Some($db) = TestSql::postgres(stringify!($name)).await else {
                    return;
                };
                let $pool = $db.postgres_pool().expect("PostgreSQL").clone();
                $body;
            }
        }
    };
}

on_both!(
    an_applications_migrations_and_ours_keep_separate_histories,
    |db, pool| {
        // The application migrates the same database with sqlx's Migrator,
        // after ours ran and before another instance of ours connects.
        APP.run(&pool)
            .await
            .expect("the application's migrations run beside ours");
        let again: SqlStores = db.another_instance().await;
        APP.run(&pool).await.expect("and again, with nothing to do");
        let ours: Vec<(i64,)> = sqlx::query_as("SELECT version FROM tollgate_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .expect("our history");
        assert_eq!(ours, vec![(1,)], "our history holds our migration, applied once");
        let theirs: Vec<(i64,)> = sqlx::query_as("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .expect("their history");
        assert_eq!(theirs, vec![(1,)], "theirs holds only theirs");
        sqlx::query("INSERT INTO app_messages (id, body) VALUES (1, 'hi')")
            .execute(&pool)
            .await
            .expect("the application's table exists");
        drop(again);
    }
);

on_both!(
    a_version_from_a_newer_build_is_accepted_an_edited_one_is_not,
    |db, pool| {
        // A newer instance applied version 2 (additive): this build still connects.
        sqlx::query("INSERT INTO tollgate_migrations (version, description, checksum) VALUES (2, 'later', 'ab')")
            .execute(&pool)
            .await
            .expect("record a newer version");
        db.another_instance().await;
        // Version 1 as applied differs from this build's: refused, not skipped.
        sqlx::query("UPDATE tollgate_migrations SET checksum = 'edited' WHERE version = 1")
            .execute(&pool)
            .await
            .expect("edit the history");
        let refused = SqlStores::connect_with(db.config().clone()).await;
        assert!(
            matches!(refused, Err(StoreError::Corrupt(ref message)) if message.contains("migration 1")),
            "{refused:?}"
        );
    }
);
