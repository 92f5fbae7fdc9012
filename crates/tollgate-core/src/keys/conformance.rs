use std::time::{Duration, SystemTime};

use super::{KeyHash, KeyRecord, KeyRegistry, RotateRefusal, Rotation};
use crate::conformance::{join_all, unique_name};
use crate::error::StoreError;
use crate::principal::{KeyKind, Principal};

fn random_hash(seed: &str) -> KeyHash {
    // Not a real SHA-256: any 32 distinct bytes do for a store.
    let mut bytes = [0u8; 32];
    for (i, byte) in seed.bytes().enumerate() {
        bytes[i % 32] = bytes[i % 32].wrapping_mul(31).wrapping_add(byte);
    }
    KeyHash::from_bytes(bytes)
}

fn record(account: &str, kind: KeyKind, created_at: SystemTime) -> KeyRecord {
    let id = unique_name("key");
    KeyRecord {
        hash: random_hash(&id),
        principal: Principal::new(account, id, kind).with_plan("premium"),
        label: "Production Server".into(),
        display_prefix: "tg_live_abcd".into(),
        created_at,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    }
}

fn now() -> SystemTime {
    // Whole seconds: some backends store seconds or milliseconds.
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// The conformance suite of [`KeyRegistry`] (and so of [`KeyStore`](super::KeyStore)).
pub async fn key_store<S: KeyRegistry>(store: &S) {
    inserted_keys_are_found_by_hash_and_id(store).await;
    unknown_keys_are_not_found(store).await;
    listing_is_per_account_and_oldest_first(store).await;
    the_key_limit_is_enforced_and_ignores_retiring_keys(store).await;
    duplicates_are_conflicts(store).await;
    revocation_keeps_the_earliest_time(store).await;
    last_use_only_moves_forward(store).await;
    concurrent_inserts_never_exceed_the_limit(store).await;
    rotation_replaces_a_key_in_one_step(store).await;
    concurrent_rotations_of_one_key_rotate_it_once(store).await;
}

async fn inserted_keys_are_found_by_hash_and_id<S: KeyRegistry>(store: &S) {
    let account = unique_name("acct");
    let mut key = record(&account, KeyKind::Sandbox, now());
    key.expires_at = Some(now() + Duration::from_secs(3600));
    store.insert(key.clone(), None, now()).await.expect("insert");
    let by_hash = store
        .find_by_hash(&key.hash)
        .await
        .expect("find")
        .expect("found by hash");
    assert_eq!(*by_hash, key, "a stored key reads back unchanged");
    let by_id = store.find_by_id(key.id()).await.expect("find").expect("found by id");
    assert_eq!(*by_id, key);
    assert_eq!(by_id.principal.plan(), "premium");
    assert_eq!(by_id.principal.kind(), KeyKind::Sandbox);
}

async fn unknown_keys_are_not_found<S: KeyRegistry>(store: &S) {
    assert!(store
        .find_by_hash(&random_hash(&unique_name("nothing")))
        .await
        .expect("find")
        .is_none());
    assert!(store.find_by_id(&unique_name("nothing")).await.expect("find").is_none());
    assert!(store
        .revoke(&unique_name("nothing"), now())
        .await
        .expect("revoke")
        .is_none());
    assert!(store
        .list_by_account(&unique_name("nobody"))
        .await
        .expect("list")
        .is_empty());
}

async fn listing_is_per_account_and_oldest_first<S: KeyRegistry>(store: &S) {
    let account = unique_name("acct");
    let other = unique_name("acct");
    let t0 = now();
    let newer = record(&account, KeyKind::Production, t0 + Duration::from_secs(10));
    let older = record(&account, KeyKind::ReadOnly, t0);
    store.insert(newer.clone(), None, t0).await.expect("insert");
    store.insert(older.clone(), None, t0).await.expect("insert");
    store
        .insert(record(&other, KeyKind::Production, t0), None, t0)
        .await
        .expect("insert");
    store.revoke(older.id(), t0).await.expect("revoke");
    let listed = store.list_by_account(&account).await.expect("list");
    let ids: Vec<&str> = listed.iter().map(|record| record.id()).collect();
    assert_eq!(
        ids,
        [older.id(), newer.id()],
        "revoked keys are listed too, oldest first"
    );
    assert_eq!(listed[0].revoked_at, Some(t0));
}

async fn the_key_limit_is_enforced_and_ignores_retiring_keys<S: KeyRegistry>(store: &S) {
    let account = unique_name("acct");
    let t0 = now();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let key = record(&account, KeyKind::Production, t0);
        ids.push(key.id().to_owned());
        store.insert(key, Some(3), t0).await.expect("within the limit");
    }
    match store
        .insert(record(&account, KeyKind::Production, t0), Some(3), t0)
        .await
    {
        Err(StoreError::KeyLimitReached { limit: 3 }) => {}
        other => panic!("the 4th key must be refused with KeyLimitReached, got {other:?}"),
    }
    // A key retiring after a rotation no longer counts, even before it stops working.
    store
        .revoke(&ids[0], t0 + Duration::from_secs(3600))
        .await
        .expect("revoke");
    store
        .insert(record(&account, KeyKind::Production, t0), Some(3), t0)
        .await
        .expect("room after a rotation");
    // An expired key does not count either.
    let account = unique_name("acct");
    let mut expired = record(&account, KeyKind::Production, t0);
    expired.expires_at = Some(t0);
    store.insert(expired, Some(1), t0).await.expect("insert");
    store
        .insert(record(&account, KeyKind::Production, t0), Some(1), t0)
        .await
        .expect("expired keys do not count");
}

async fn duplicates_are_conflicts<S: KeyRegistry>(store: &S) {
    let account = unique_name("acct");
    let key = record(&account, KeyKind::Production, now());
    store.insert(key.clone(), None, now()).await.expect("insert");
    let mut same_hash = record(&account, KeyKind::Production, now());
    same_hash.hash = key.hash;
    assert!(matches!(
        store.insert(same_hash, None, now()).await,
        Err(StoreError::Conflict(_))
    ));
    let mut same_id = record(&account, KeyKind::Production, now());
    same_id.principal = key.principal.clone();
    assert!(matches!(
        store.insert(same_id, None, now()).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.list_by_account(&account).await.expect("list").len(),
        1,
        "conflicts store nothing"
    );
}

async fn revocation_keeps_the_earliest_time<S: KeyRegistry>(store: &S) {
    let account = unique_name("acct");
    let t0 = now();
    let key = record(&account, KeyKind::Production, t0);
    store.insert(key.clone(), None, t0).await.expect("insert");
    let later = t0 + Duration::from_secs(600);
    let revoked = store.revoke(key.id(), later).await.expect("revoke").expect("known key");
    assert_eq!(revoked.revoked_at, Some(later));
    assert!(revoked.is_valid_at(t0), "valid during the grace period");
    let revoked = store.revoke(key.id(), t0).await.expect("revoke").expect("known key");
    assert_eq!(revoked.revoked_at, Some(t0), "an earlier revocation wins");
    let revoked = store.revoke(key.id(), later).await.expect("revoke").expect("known key");
    assert_eq!(revoked.revoked_at, Some(t0), "a later one does not undo it");
    let found = store
        .find_by_hash(&key.hash)
        .await
        .expect("find")
        .expect("still stored");
    assert!(!found.is_valid_at(t0));
}

async fn last_use_only_moves_forward<S: KeyRegistry>(store: &S) {
    let account = unique_name("acct");
    let t0 = now();
    let key = record(&account, KeyKind::Production, t0);
    store.insert(key.clone(), None, t0).await.expect("insert");
    store
        .record_last_use(key.id(), t0 + Duration::from_secs(60))
        .await
        .expect("record");
    store
        .record_last_use(key.id(), t0 + Duration::from_secs(30))
        .await
        .expect("record");
    let found = store.find_by_id(key.id()).await.expect("find").expect("found");
    assert_eq!(found.last_used_at, Some(t0 + Duration::from_secs(60)));
    store
        .record_last_use(&unique_name("nothing"), t0)
        .await
        .expect("unknown ids are ignored");
}

async fn concurrent_inserts_never_exceed_the_limit<S: KeyRegistry>(store: &S) {
    let account = unique_name("acct");
    let t0 = now();
    let attempts = (0..25).map(|_| store.insert(record(&account, KeyKind::Production, t0), Some(10), t0));
    let results = join_all(attempts).await;
    let admitted = results.iter().filter(|result| result.is_ok()).count();
    assert_eq!(admitted, 10, "exactly the limit is admitted: {results:?}");
    assert_eq!(store.list_by_account(&account).await.expect("list").len(), 10);
}

async fn rotation_replaces_a_key_in_one_step<S: KeyRegistry>(store: &S) {
    let account = unique_name("acct");
    let t0 = now();
    let old = record(&account, KeyKind::Production, t0);
    store.insert(old.clone(), None, t0).await.expect("insert");
    let retire_at = t0 + Duration::from_secs(3600);
    let successor = record(&account, KeyKind::Production, t0);
    let retiring = store
        .rotate(Rotation::new(old.id(), successor.clone(), retire_at, t0))
        .await
        .expect("rotate")
        .expect("an active key rotates");
    assert_eq!(retiring.id(), old.id());
    assert_eq!(retiring.revoked_at, Some(retire_at));
    let found = store
        .find_by_hash(&successor.hash)
        .await
        .expect("find")
        .expect("the successor is stored");
    assert_eq!(found.id(), successor.id());
    let stored_old = store.find_by_id(old.id()).await.expect("find").expect("kept");
    assert_eq!(
        stored_old.revoked_at,
        Some(retire_at),
        "retiring, still valid until then"
    );

    let again = record(&account, KeyKind::Production, t0);
    let refused = store
        .rotate(Rotation::new(old.id(), again.clone(), retire_at, t0))
        .await
        .expect("rotate");
    assert_eq!(refused.unwrap_err(), RotateRefusal::Retiring);
    assert!(
        store.find_by_hash(&again.hash).await.expect("find").is_none(),
        "nothing stored"
    );
    let unknown = store
        .rotate(Rotation::new(unique_name("nothing"), again.clone(), retire_at, t0))
        .await
        .expect("rotate");
    assert_eq!(unknown.unwrap_err(), RotateRefusal::Unknown);

    let revoked = record(&account, KeyKind::Production, t0);
    store.insert(revoked.clone(), None, t0).await.expect("insert");
    store.revoke(revoked.id(), t0).await.expect("revoke");
    let invalid = store
        .rotate(Rotation::new(revoked.id(), again.clone(), retire_at, t0))
        .await
        .expect("rotate");
    assert_eq!(invalid.unwrap_err(), RotateRefusal::Invalid);
    assert!(
        store.find_by_hash(&again.hash).await.expect("find").is_none(),
        "nothing stored"
    );
}

async fn concurrent_rotations_of_one_key_rotate_it_once<S: KeyRegistry>(store: &S) {
    let account = unique_name("acct");
    let t0 = now();
    let old = record(&account, KeyKind::Production, t0);
    store.insert(old.clone(), None, t0).await.expect("insert");
    let retire_at = t0 + Duration::from_secs(60);
    let attempts = (0..20).map(|_| {
        store.rotate(Rotation::new(
            old.id(),
            record(&account, KeyKind::Production, t0),
            retire_at,
            t0,
        ))
    });
    let results = join_all(attempts).await;
    let rotated = results.iter().filter(|result| matches!(result, Ok(Ok(_)))).count();
    assert_eq!(rotated, 1, "exactly one rotation: {results:?}");
    let refused = results
        .iter()
        .filter(|result| matches!(result, Ok(Err(RotateRefusal::Retiring))))
        .count();
    assert_eq!(refused, 19, "the others find the key retiring: {results:?}");
    assert_eq!(store.list_by_account(&account).await.expect("list").len(), 2);
}
