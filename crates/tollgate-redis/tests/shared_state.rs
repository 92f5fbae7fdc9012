//! What a fleet relies on: instances with their own connections see each
//! other's writes at once, and every record lives under the prefix with the
//! TTL it was given.

use std::time::Duration;

use bytes::Bytes;
use tollgate_core::conformance::unique_name;
use tollgate_core::idempotency::{BeginOutcome, Fingerprint, IdempotencyKey, IdempotencyStore, StoredResponse};
use tollgate_core::replay::ReplayStore;
use tollgate_redis::testing::TestRedis;

mod fleet;

async fn pttl(redis: &TestRedis, key: &str) -> i64 {
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("PTTL").arg(key).query_async(&mut connection).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_instance_is_seen_by_another_on_its_next_lookup() {
    let Some(redis) = TestRedis::connect("revocation_across_instances").await else {
        return;
    };
    fleet::a_revocation_on_one_instance_is_seen_by_another_on_its_next_lookup(&redis).await;
    redis.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_one_limit_per_key() {
    let Some(redis) = TestRedis::connect("shared_limits").await else {
        return;
    };
    fleet::instances_share_one_limit_per_key(&redis).await;
    redis.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowlist_change_reaches_a_cached_instance_at_once() {
    let Some(redis) = TestRedis::connect("allowlist_across_instances").await else {
        return;
    };
    fleet::an_allowlist_change_reaches_a_cached_instance_at_once(&redis).await;
    redis.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_entries_expire_with_their_ttls() {
    let Some(redis) = TestRedis::connect("idempotency_ttls").await else {
        return;
    };
    let (first, second) = (
        redis.stores.idempotency_store(),
        redis.another_instance().await.idempotency_store(),
    );
    let key = IdempotencyKey::new(unique_name("scope"), "request-1");
    let entry = format!("{}idem:{{{}}}", redis.stores.key_prefix(), key.storage_key());
    let fingerprint = Fingerprint::from_bytes([5; 32]);
    let BeginOutcome::Claimed(token) = first.begin(&key, fingerprint, Duration::from_secs(30)).await.unwrap() else {
        panic!("a free key is claimed");
    };
    let lock = pttl(&redis, &entry).await;
    assert!(
        (25_000..=30_000).contains(&lock),
        "the claim expires after the lock TTL: {lock}"
    );
    assert_eq!(
        second.begin(&key, fingerprint, Duration::from_secs(30)).await.unwrap(),
        BeginOutcome::InProgress,
        "another instance sees the claim"
    );
    let response = StoredResponse {
        status: 202,
        headers: vec![("content-type".into(), b"application/json".to_vec())],
        body: Bytes::from_static(br#"{"id":"msg_1"}"#),
    };
    assert!(first
        .complete(&key, token, response.clone(), Duration::from_secs(3_600))
        .await
        .unwrap());
    let kept = pttl(&redis, &entry).await;
    assert!(
        (3_595_000..=3_600_000).contains(&kept),
        "the response expires after its TTL: {kept}"
    );
    assert_eq!(
        second.begin(&key, fingerprint, Duration::from_secs(30)).await.unwrap(),
        BeginOutcome::Completed(response)
    );
    redis.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_ids_expire_with_the_window_and_cleanup_leaves_nothing() {
    let Some(redis) = TestRedis::connect("replay_ttl_and_cleanup").await else {
        return;
    };
    let store = redis.stores.replay_store();
    assert!(store
        .check_and_remember("sender", "msg_1", Duration::from_secs(300))
        .await
        .unwrap());
    let window = pttl(
        &redis,
        &format!("{}replay:{{6:sendermsg_1}}", redis.stores.key_prefix()),
    )
    .await;
    assert!((295_000..=300_000).contains(&window), "{window}");
    assert!(!redis
        .another_instance()
        .await
        .replay_store()
        .check_and_remember("sender", "msg_1", Duration::from_secs(300))
        .await
        .unwrap());
    assert_eq!(redis.key_count().await, 1);
    assert_eq!(redis.stores.purge().await.unwrap(), 1);
    assert_eq!(redis.key_count().await, 0);
    redis.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_counted_on_two_instances_adds_up_in_redis() {
    use std::sync::Arc;
    use tollgate_core::usage::{Day, DayUsage, UsageRecorder, UsageStore};

    let Some(redis) = TestRedis::connect("usage_across_instances").await else {
        return;
    };
    let there = redis.another_instance().await;
    let here_recorder = UsageRecorder::new(Arc::new(redis.usage_store()));
    let there_recorder = UsageRecorder::new(Arc::new(there.usage_store()));
    for n in 0..30 {
        here_recorder.record("key_1", n % 10 == 0);
        there_recorder.record("key_1", false);
        there_recorder.record("key_2", true);
    }
    assert_eq!(here_recorder.flush().await.unwrap(), 1);
    assert_eq!(there_recorder.flush().await.unwrap(), 2);
    let today = Day::from_unix_secs(tollgate_core::unix_secs(std::time::SystemTime::now()));
    let usage = redis.usage_store();
    assert_eq!(
        usage.days("key_1", Day(today.0 - 30), today).await.unwrap(),
        vec![DayUsage {
            day: today,
            requests: 60,
            rate_limited: 3
        }]
    );
    assert_eq!(
        there.usage_store().days("key_2", today, today).await.unwrap(),
        vec![DayUsage {
            day: today,
            requests: 30,
            rate_limited: 30
        }]
    );
    assert_eq!(redis.key_count().await, 2, "one hash per key and day");
    redis.cleanup().await;
}
