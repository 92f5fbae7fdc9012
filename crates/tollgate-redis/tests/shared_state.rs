//! What a fleet relies on: instances with their own connections see each
//! other's writes at once, and every record lives under the prefix with the
//! TTL it was given.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tollgate_core::allowlist::{AllowlistStore, IpSet};
use tollgate_core::conformance::unique_name;
use tollgate_core::idempotency::{BeginOutcome, Fingerprint, IdempotencyKey, IdempotencyStore, StoredResponse};
use tollgate_core::keys::{KeyHash, KeyRecord, KeyRegistry, KeyStore};
use tollgate_core::rate_limit::{Limits, RateLimitStore};
use tollgate_core::replay::ReplayStore;
use tollgate_core::{KeyKind, Principal};
use tollgate_redis::testing::TestRedis;

fn key_record(account: &str, id: &str, hash: u8) -> KeyRecord {
    KeyRecord {
        principal: Principal::new(account, id, KeyKind::Production).with_plan("free"),
        hash: KeyHash::from_bytes([hash; 32]),
        label: "Production Server".into(),
        display_prefix: "tg_live_ab".into(),
        created_at: SystemTime::now(),
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    }
}

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
    let (first, second) = (redis.stores.key_store(), redis.another_instance().await.key_store());
    let account = unique_name("acct");
    let id = unique_name("key");
    let record = key_record(&account, &id, 9);
    first.insert(record.clone(), Some(10), SystemTime::now()).await.unwrap();
    let now = SystemTime::now();
    assert!(second
        .find_by_hash(&record.hash)
        .await
        .unwrap()
        .unwrap()
        .is_valid_at(now));
    first.revoke(&id, now).await.unwrap().expect("a known key");
    let seen = second.find_by_hash(&record.hash).await.unwrap().unwrap();
    assert_eq!(seen.revoked_at, Some(now));
    assert!(!seen.is_valid_at(now), "no cache: the very next lookup sees it");
    redis.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_one_limit_per_key() {
    let Some(redis) = TestRedis::connect("shared_limits").await else {
        return;
    };
    let (first, second) = (
        redis.stores.rate_limit_store(),
        redis.another_instance().await.rate_limit_store(),
    );
    let limits = Limits::new(1, Duration::from_secs(1_000)).with_burst(40);
    let checks = (0..100).map(|i| {
        let store = if i % 2 == 0 { first.clone() } else { second.clone() };
        tokio::spawn(async move { store.check("shared", &limits, 1).await.unwrap().is_allowed() })
    });
    let checks: Vec<_> = checks.collect();
    let mut admitted = 0;
    for check in checks {
        admitted += usize::from(check.await.unwrap());
    }
    assert_eq!(admitted, 40, "exactly the burst across both instances");
    redis.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowlist_change_reaches_a_cached_instance_at_once() {
    let Some(redis) = TestRedis::connect("allowlist_across_instances").await else {
        return;
    };
    let (writer, reader) = (
        redis.stores.allowlist_store(),
        redis.another_instance().await.allowlist_store(),
    );
    let account = unique_name("acct");
    let key = unique_name("key");
    let old = IpSet::parse(["10.0.0.0/8"]).unwrap();
    let new = IpSet::parse(["192.0.2.0/24"]).unwrap();
    writer.set_account_allowlist(&account, old.clone()).await.unwrap();
    writer.set_key_allowlist(&key, IpSet::empty()).await.unwrap();
    let cached = reader.allowlists(&account, &key).await.unwrap();
    assert_eq!(cached.account.as_deref(), Some(&old));
    let again = reader.allowlists(&account, &key).await.unwrap();
    assert!(
        std::sync::Arc::ptr_eq(again.account.as_ref().unwrap(), cached.account.as_ref().unwrap()),
        "an unchanged list is served from the cache, not rebuilt"
    );
    writer.set_account_allowlist(&account, new.clone()).await.unwrap();
    assert_eq!(
        reader.allowlists(&account, &key).await.unwrap().account.as_deref(),
        Some(&new)
    );
    writer.clear_key_allowlist(&key).await.unwrap();
    assert_eq!(reader.key_allowlist(&key).await.unwrap(), None);
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
