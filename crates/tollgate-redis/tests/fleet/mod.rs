//! What a fleet relies on, as functions over any [`TestRedis`]: run by
//! `shared_state` on `$REDIS_URL` and by `cluster` on a Redis Cluster.

use std::time::{Duration, SystemTime};

use tollgate_core::allowlist::{AllowlistStore, IpSet};
use tollgate_core::conformance::unique_name;
use tollgate_core::keys::{KeyHash, KeyRecord, KeyRegistry, KeyStore};
use tollgate_core::rate_limit::{Limits, RateLimitStore};
use tollgate_core::{KeyKind, Principal};
use tollgate_redis::testing::TestRedis;

pub fn key_record(account: &str, id: &str, hash: u8) -> KeyRecord {
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

pub async fn a_revocation_on_one_instance_is_seen_by_another_on_its_next_lookup(redis: &TestRedis) {
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
}

pub async fn instances_share_one_limit_per_key(redis: &TestRedis) {
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
}

pub async fn an_allowlist_change_reaches_a_cached_instance_at_once(redis: &TestRedis) {
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
}
