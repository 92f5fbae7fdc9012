//! Every tollgate-core conformance suite that applies, on SQLite (a fresh
//! temporary file, always) and PostgreSQL (a fresh database on
//! `$DATABASE_URL`, skipped without it).

use tollgate_sql::testing::TestSql;

async fn sqlite(test: &str) -> Option<TestSql> {
    Some(TestSql::sqlite(test).await)
}

async fn postgres(test: &str) -> Option<TestSql> {
    TestSql::postgres(test).await
}

macro_rules! on_both {
    ($name:ident, |$db:ident| $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                let Some($db) = sqlite(stringify!($name)).await else {
                    return;
                };
                $body;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                let Some($db) = postgres(stringify!($name)).await else {
                    return;
                };
                $body;
            }
        }
    };
}

on_both!(key_store_conforms, |db| tollgate_core::conformance::key_store(
    &db.key_store()
)
.await);

on_both!(idempotency_store_conforms, |db| {
    tollgate_core::conformance::idempotency_store(&db.idempotency_store()).await
});

on_both!(allowlist_store_conforms, |db| {
    tollgate_core::conformance::allowlist_store(&db.allowlist_store()).await
});

// 20 rotations and 20 creations as tokio tasks over clones of one store,
// with the account listed from another task throughout.
on_both!(the_key_limit_holds_under_parallel_rotations_and_creations, |db| {
    tollgate_core::conformance::key_limit_in_parallel(&db.key_store(), |task| {
        let handle = tokio::spawn(task);
        Box::pin(async move { handle.await.expect("the task finished") })
    })
    .await
});

on_both!(usage_store_conforms, |db| tollgate_core::conformance::usage_store(
    &db.usage_store()
)
.await);

on_both!(usage_adds_from_many_tasks_sum_exactly, |db| {
    tollgate_core::conformance::usage_in_parallel(&db.usage_store(), |task| {
        let handle = tokio::spawn(task);
        Box::pin(async move { handle.await.expect("the task finished") })
    })
    .await
});
