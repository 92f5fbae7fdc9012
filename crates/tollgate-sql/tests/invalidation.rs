//! Pushed invalidation on PostgreSQL: a key revoked through one instance is
//! refused by another within 100 ms, though its cache's TTL is an hour;
//! the listener reconnects by itself when its connection is cut.

use std::time::Duration;

use tokio::time::Instant;
use tollgate_core::changes::Changes;
use tollgate_core::keys::{CachedKeyStore, KeyRegistry, KeyStore};
use tollgate_sql::testing::TestSql;

mod common;

const TTL: Duration = Duration::from_secs(3600);

async fn until(deadline: Duration, what: &str, mut done: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < deadline, "{what}: not within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_elsewhere_is_refused_here_within_100ms_and_the_listener_reconnects() {
    let Some(db) = TestSql::postgres("pushed_invalidation").await else {
        return;
    };
    let (here_changes, there_changes) = (Changes::new(), Changes::new());
    let other = db.another_instance().await;
    let _here_source = tollgate_sql::listen(&db, &here_changes).expect("listen here");
    let there_source = tollgate_sql::listen(&other, &there_changes).expect("listen there");
    let here = CachedKeyStore::new(db.key_store())
        .ttl(TTL)
        .invalidated_by(&here_changes);
    let there = CachedKeyStore::new(other.key_store())
        .ttl(TTL)
        .invalidated_by(&there_changes);
    until(Duration::from_secs(5), "both listening", async || {
        here_changes.is_connected() && there_changes.is_connected()
    })
    .await;

    for round in 0..2 {
        let key = common::record("acct_pushed");
        here.insert(key.clone(), None, common::t0()).await.expect("insert");
        // The insert's own change may arrive after a first lookup and drop
        // it: look up until the entry stays.
        until(Duration::from_secs(1), "cached there", async || {
            let found = there.find_by_hash(&key.hash).await.expect("find").expect("known");
            assert!(found.is_valid_at(common::t0()));
            there.cached_entries() == 1
        })
        .await;

        here.revoke(key.id(), common::t0())
            .await
            .expect("revoke")
            .expect("known");
        let took = until(Duration::from_millis(100), "refused there", async || {
            let found = there.find_by_hash(&key.hash).await.expect("find").expect("known");
            !found.is_valid_at(common::t0())
        })
        .await;
        eprintln!("round {round}: refused on the other instance after {took:?}");

        if round == 0 {
            // Cut the other instance's listening connection, and only it.
            let pid = there_source.backend_pid().expect("connected");
            let (terminated,): (bool,) = sqlx::query_as("SELECT pg_terminate_backend($1)")
                .bind(i32::try_from(pid).expect("a pid"))
                .fetch_one(db.postgres_pool().expect("PostgreSQL"))
                .await
                .expect("terminate");
            assert!(terminated);
            until(Duration::from_secs(5), "seen disconnected", async || {
                there_source.backend_pid() != Some(pid)
            })
            .await;
            until(Duration::from_secs(5), "reconnected", async || {
                there_changes.is_connected() && there_source.backend_pid().is_some_and(|new| new != pid)
            })
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_is_marked_disconnected_while_the_listener_is_down() {
    let Some(db) = TestSql::postgres("listener_down").await else {
        return;
    };
    let changes = Changes::new();
    let source = tollgate_sql::listen(&db, &changes).expect("listen");
    until(Duration::from_secs(5), "listening", async || changes.is_connected()).await;
    let pid = source.backend_pid().expect("connected");
    // Keep it down: the pool cannot open a connection while this lasts.
    let server = sqlx::PgPool::connect(&std::env::var("DATABASE_URL").expect("set"))
        .await
        .expect("connect to the server's own database");
    sqlx::query(&format!("ALTER DATABASE \"{}\" ALLOW_CONNECTIONS false", db_name(&db)))
        .execute(&server)
        .await
        .expect("refuse new connections");
    let _: (bool,) = sqlx::query_as("SELECT pg_terminate_backend($1)")
        .bind(i32::try_from(pid).expect("a pid"))
        .fetch_one(&server)
        .await
        .expect("terminate");
    until(Duration::from_secs(5), "marked disconnected", async || {
        !changes.is_connected()
    })
    .await;
    assert_eq!(source.backend_pid(), None);
    sqlx::query(&format!("ALTER DATABASE \"{}\" ALLOW_CONNECTIONS true", db_name(&db)))
        .execute(&server)
        .await
        .expect("allow connections again");
    until(Duration::from_secs(10), "reconnected", async || changes.is_connected()).await;
}

fn db_name(db: &TestSql) -> String {
    db.config().url().rsplit('/').next().expect("a database").to_owned()
}

#[tokio::test]
async fn sqlite_has_no_channel_to_listen_to() {
    let db = TestSql::sqlite("no_listen").await;
    let refused = tollgate_sql::listen(&db, &Changes::new());
    assert!(
        matches!(refused, Err(tollgate_core::StoreError::Conflict(_))),
        "{refused:?}"
    );
}
