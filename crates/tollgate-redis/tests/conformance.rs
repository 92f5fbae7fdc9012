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
