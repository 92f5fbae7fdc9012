//! Two instances (two pools) on one database: the key limit under real
//! contention, last-used times written behind, exactly-once across a
//! restart, usage adding up.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{record, t0};
use tollgate_core::idempotency::{BeginOutcome, Fingerprint, IdempotencyKey, IdempotencyStore, StoredResponse};
use tollgate_core::keys::{KeyRegistry, KeyStore};
use tollgate_core::usage::{Day, DayUsage, UsageDelta, UsageStore};
use tollgate_core::{ManualClock, StoreError};
use tollgate_sql::SqlStores;

const LIMIT: usize = 5;

// 20 creations for one account at once, alternating between two pools,
// as tasks on four threads: exactly the limit succeed, every other one is
// refused with KeyLimitReached (never SQLITE_BUSY or a serialization error).
async fn creations_race_to_the_limit(one: SqlStores, two: SqlStores) {
    let account = tollgate_core::conformance::unique_name("acct");
    let tasks: Vec<_> = (0..20)
        .map(|n| {
            let store = if n % 2 == 0 { one.key_store() } else { two.key_store() };
            let record = record(&account);
            tokio::spawn(async move { store.insert(record, Some(LIMIT), t0()).await })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        match task.await.expect("the task finished") {
            Ok(()) => created += 1,
            Err(StoreError::KeyLimitReached { limit }) => assert_eq!(limit, LIMIT),
            Err(other) => panic!("a creation failed with {other:?}, not KeyLimitReached"),
        }
    }
    assert_eq!(created, LIMIT, "exactly the limit were created");
    let listed = one.key_store().list_by_account(&account).await.expect("list");
    assert_eq!(listed.len(), LIMIT, "and exactly those are stored");
}

on_both!(concurrent_creations_on_two_pools_stop_at_the_limit, |db| {
    creations_race_to_the_limit(db.stores.clone(), db.another_instance().await).await
});

on_both!(last_used_times_are_written_behind_once_per_flush, |db| {
    let here = db.key_store();
    let other = db.another_instance().await;
    let key = record("acct_last_used");
    here.insert(key.clone(), None, t0()).await.expect("insert");

    let used = t0() + Duration::from_secs(90);
    here.record_last_use(key.id(), used).await.expect("note");
    here.record_last_use(key.id(), used - Duration::from_secs(30))
        .await
        .expect("note");
    let seen_here = here.find_by_hash(&key.hash).await.expect("find").expect("known");
    assert_eq!(seen_here.last_used_at, Some(used), "this instance sees its use at once");
    let seen_there = other
        .key_store()
        .find_by_id(key.id())
        .await
        .expect("find")
        .expect("known");
    assert_eq!(seen_there.last_used_at, None, "not written before the flush");
    assert_eq!(db.pending_last_uses(), 1, "one pending write for two uses");

    assert_eq!(db.flush().await.expect("flush"), 1, "one key written");
    assert_eq!(db.pending_last_uses(), 0);
    assert_eq!(db.flush().await.expect("flush"), 0, "nothing left to write");
    let seen_there = other
        .key_store()
        .find_by_hash(&key.hash)
        .await
        .expect("find")
        .expect("known");
    assert_eq!(
        seen_there.last_used_at,
        Some(used),
        "the other instance sees it after the flush"
    );

    // A use older than the stored one never moves it back.
    other.key_store().record_last_use(key.id(), t0()).await.expect("note");
    other.flush().await.expect("flush");
    let stored = here.find_by_id(key.id()).await.expect("find").expect("known");
    assert_eq!(stored.last_used_at, Some(used));
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_task_flushes_last_used_times_every_interval() {
    let db = common::sqlite_with("background_flush", |config| {
        config.flush_interval(Duration::from_millis(20))
    })
    .await;
    let key = record("acct_background");
    db.key_store().insert(key.clone(), None, t0()).await.expect("insert");
    db.key_store().record_last_use(key.id(), t0()).await.expect("note");
    let other = db.another_instance().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let stored = other
            .key_store()
            .find_by_id(key.id())
            .await
            .expect("find")
            .expect("known");
        if stored.last_used_at == Some(t0()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never flushed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(db.pending_last_uses(), 0);
}

fn response() -> StoredResponse {
    let mut response = StoredResponse {
        status: 201,
        headers: vec![("content-type".into(), b"application/json".to_vec())],
        body: bytes_of(b"{\"id\":\"msg_1\"}"),
    };
    response.push_trailer("grpc-status", b"0".to_vec());
    response
}

fn bytes_of(bytes: &'static [u8]) -> bytes::Bytes {
    bytes::Bytes::from_static(bytes)
}

on_both!(a_completed_request_is_replayed_after_a_restart, |db| {
    let key = IdempotencyKey::new("acct_1", tollgate_core::conformance::unique_name("req"));
    let fingerprint = Fingerprint::from_bytes([3; 32]);
    let BeginOutcome::Claimed(token) = db
        .idempotency_store()
        .begin(&key, fingerprint, Duration::from_secs(60))
        .await
        .expect("begin")
    else {
        panic!("a fresh key is claimed");
    };
    let restarted = db.another_instance().await;
    assert_eq!(
        restarted
            .idempotency_store()
            .begin(&key, fingerprint, Duration::from_secs(60))
            .await
            .expect("begin"),
        BeginOutcome::InProgress,
        "another instance sees the claim"
    );
    assert!(db
        .idempotency_store()
        .complete(&key, token, response(), Duration::from_secs(3600))
        .await
        .expect("complete"));
    db.close().await;
    assert_eq!(
        restarted
            .idempotency_store()
            .begin(&key, fingerprint, Duration::from_secs(60))
            .await
            .expect("begin"),
        BeginOutcome::Completed(response()),
        "replayed byte for byte by an instance started before the first one stopped"
    );
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_and_responses_expire_on_the_configured_clock() {
    let clock = ManualClock::new(t0());
    let db = common::sqlite_with("idempotency_expiry", |config| config.clock(clock.clone())).await;
    let store = db.idempotency_store();
    let key = IdempotencyKey::new("acct_1", "req_1");
    let fingerprint = Fingerprint::from_bytes([4; 32]);
    let lock_ttl = Duration::from_secs(10);
    let BeginOutcome::Claimed(stale) = store.begin(&key, fingerprint, lock_ttl).await.expect("begin") else {
        panic!("claimed");
    };
    clock.advance(Duration::from_secs(9));
    assert_eq!(
        store.begin(&key, fingerprint, lock_ttl).await.expect("begin"),
        BeginOutcome::InProgress
    );
    clock.advance(Duration::from_secs(1));
    let BeginOutcome::Claimed(fresh) = store.begin(&key, fingerprint, lock_ttl).await.expect("begin") else {
        panic!("the claim's lock expired, so the key is claimed again");
    };
    assert_ne!(fresh, stale);
    assert!(!store
        .complete(&key, stale, response(), Duration::from_secs(60))
        .await
        .expect("complete"));
    assert!(!store.abort(&key, stale).await.expect("abort"));
    assert!(store
        .complete(&key, fresh, response(), Duration::from_secs(60))
        .await
        .expect("complete"));
    clock.advance(Duration::from_secs(59));
    assert_eq!(
        db.purge_expired().await.expect("purge"),
        0,
        "the response lives for its TTL"
    );
    assert!(matches!(
        store.begin(&key, fingerprint, lock_ttl).await.expect("begin"),
        BeginOutcome::Completed(_)
    ));
    clock.advance(Duration::from_secs(1));
    assert_eq!(db.purge_expired().await.expect("purge"), 1, "then it is deleted");
    assert!(matches!(
        store.begin(&key, fingerprint, lock_ttl).await.expect("begin"),
        BeginOutcome::Claimed(_)
    ));
}

on_both!(usage_from_two_instances_adds_up_per_key_and_day, |db| {
    let other = db.another_instance().await;
    let key_id = tollgate_core::conformance::unique_name("key");
    let delta = |day: u32, requests: u64, rate_limited: u64| UsageDelta {
        key_id: key_id.clone(),
        day: Day(day),
        requests,
        rate_limited,
    };
    let batches = (0..10).map(|n| {
        let store: Arc<dyn UsageStore> = if n % 2 == 0 {
            Arc::new(db.usage_store())
        } else {
            Arc::new(other.usage_store())
        };
        let batch = vec![delta(20_000, 3, 1), delta(20_001, 1, 0), delta(20_000, 2, 0)];
        tokio::spawn(async move { store.add(batch).await })
    });
    for task in batches.collect::<Vec<_>>() {
        task.await.expect("finished").expect("add");
    }
    db.usage_store().add(vec![delta(19_990, 7, 7)]).await.expect("add");
    assert_eq!(
        other
            .usage_store()
            .days(&key_id, Day(19_995), Day(20_001))
            .await
            .expect("days"),
        vec![
            DayUsage {
                day: Day(20_000),
                requests: 50,
                rate_limited: 10
            },
            DayUsage {
                day: Day(20_001),
                requests: 10,
                rate_limited: 0
            },
        ]
    );
    assert_eq!(
        db.usage_store()
            .days(&key_id, Day(19_990), Day(19_990))
            .await
            .expect("days"),
        vec![DayUsage {
            day: Day(19_990),
            requests: 7,
            rate_limited: 7
        }]
    );
    assert_eq!(
        db.usage_store()
            .days("nobody", Day(0), Day(u32::MAX))
            .await
            .expect("days"),
        vec![]
    );
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_past_the_retention_is_deleted_on_the_configured_clock() {
    let clock = ManualClock::new(t0());
    let db = common::sqlite_with("usage_retention", |config| {
        config.clock(clock.clone()).usage_retention_days(3)
    })
    .await;
    let today = Day::from_unix_secs(tollgate_core::unix_secs(t0()));
    let day = |ago: u32| Day(today.0 - ago);
    let key_id = "key_retained";
    let deltas = [0, 2, 3].map(|ago| UsageDelta {
        key_id: key_id.into(),
        day: day(ago),
        requests: 1,
        rate_limited: 0,
    });
    db.usage_store().add(deltas.to_vec()).await.expect("add");
    assert_eq!(
        db.purge_expired().await.expect("purge"),
        1,
        "three days kept, today included"
    );
    let kept: Vec<Day> = db
        .usage_store()
        .days(key_id, day(10), today)
        .await
        .expect("days")
        .into_iter()
        .map(|usage| usage.day)
        .collect();
    assert_eq!(kept, vec![day(2), today]);
    clock.advance(Duration::from_secs(86_400));
    assert_eq!(
        db.purge_expired().await.expect("purge"),
        1,
        "a day later the oldest goes"
    );
}
