//! Every tollgate-core conformance suite, run against Redis.

use tollgate_redis::testing::TestRedis;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_store_conforms() {
    let Some(redis) = TestRedis::connect("key_store_conforms").await else {
        return;
    };
    tollgate_core::conformance::key_store(&redis.stores.key_store()).await;
    redis.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_store_conforms() {
    let Some(redis) = TestRedis::connect("rate_limit_store_conforms").await else {
        return;
    };
    tollgate_core::conformance::rate_limit_store(&redis.stores.rate_limit_store()).await;
    redis.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_store_conforms() {
    let Some(redis) = TestRedis::connect("idempotency_store_conforms").await else {
        return;
    };
    tollgate_core::conformance::idempotency_store(&redis.stores.idempotency_store()).await;
    redis.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlist_store_conforms() {
    let Some(redis) = TestRedis::connect("allowlist_store_conforms").await else {
        return;
    };
    tollgate_core::conformance::allowlist_store(&redis.stores.allowlist_store()).await;
    redis.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_store_conforms() {
    let Some(redis) = TestRedis::connect("replay_store_conforms").await else {
        return;
    };
    tollgate_core::conformance::replay_store(&redis.stores.replay_store()).await;
    redis.cleanup().await;
}

// 20 rotations and 20 creations as tokio tasks on four threads over clones
// of one store, with the account listed from another task throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_key_limit_holds_under_parallel_rotations_and_creations() {
    let Some(redis) = TestRedis::connect("key_limit_in_parallel").await else {
        return;
    };
    tollgate_core::conformance::key_limit_in_parallel(&redis.stores.key_store(), |task| {
        let handle = tokio::spawn(task);
        Box::pin(async move { handle.await.expect("the task finished") })
    })
    .await;
    redis.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_store_conforms() {
    let Some(redis) = TestRedis::connect("usage_store_conforms").await else {
        return;
    };
    tollgate_core::conformance::usage_store(&redis.stores.usage_store()).await;
    redis.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_adds_from_many_tasks_sum_exactly() {
    let Some(redis) = TestRedis::connect("usage_in_parallel").await else {
        return;
    };
    tollgate_core::conformance::usage_in_parallel(&redis.stores.usage_store(), |task| {
        let handle = tokio::spawn(task);
        Box::pin(async move { handle.await.expect("the task finished") })
    })
    .await;
    redis.cleanup().await;
}
