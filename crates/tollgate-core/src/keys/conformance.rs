use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
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
    the_key_limit_is_enforced_and_counts_retiring_keys(store).await;
    duplicates_are_conflicts(store).await;
    revocation_keeps_the_earliest_time(store).await;
    last_use_only_moves_forward(store).await;
    concurrent_inserts_never_exceed_the_limit(store).await;
    rotation_replaces_a_key_in_one_step(store).await;
    a_rotation_at_the_limit_is_refused_until_a_key_is_revoked(store).await;
    chained_rotations_never_exceed_the_limit(store).await;
    concurrent_rotations_of_one_key_rotate_it_once(store).await;
    concurrent_creations_fill_the_limit_exactly_and_never_exceed_it(store).await;
}

// How many of the account's keys authenticate at `now`.
async fn working_keys<S: KeyRegistry>(store: &S, account: &str, now: SystemTime) -> usize {
    store
        .list_by_account(account)
        .await
        .expect("list")
        .iter()
        .filter(|record| record.is_valid_at(now))
        .count()
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

async fn the_key_limit_is_enforced_and_counts_retiring_keys<S: KeyRegistry>(store: &S) {
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
    // A key retiring after a rotation still authenticates, so it still counts.
    let grace_ends = t0 + Duration::from_secs(3600);
    store.revoke(&ids[0], grace_ends).await.expect("revoke");
    match store
        .insert(record(&account, KeyKind::Production, t0), Some(3), t0)
        .await
    {
        Err(StoreError::KeyLimitReached { limit: 3 }) => {}
        other => panic!("a retiring key must count toward the limit, got {other:?}"),
    }
    // Once its grace period is over it no longer counts.
    store
        .insert(record(&account, KeyKind::Production, grace_ends), Some(3), grace_ends)
        .await
        .expect("room once the retiring key stopped working");
    // Nor does a key revoked for real.
    let account = unique_name("acct");
    let revoked = record(&account, KeyKind::Production, t0);
    store.insert(revoked.clone(), Some(1), t0).await.expect("insert");
    store.revoke(revoked.id(), t0).await.expect("revoke");
    store
        .insert(record(&account, KeyKind::Production, t0), Some(1), t0)
        .await
        .expect("revoked keys do not count");
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

    // A key that no longer works is invalid, even with a revocation still to come.
    let mut expired = record(&account, KeyKind::Production, t0);
    expired.expires_at = Some(t0);
    store.insert(expired.clone(), None, t0).await.expect("insert");
    store.revoke(expired.id(), retire_at).await.expect("revoke");
    let invalid = store
        .rotate(Rotation::new(expired.id(), again.clone(), retire_at, t0))
        .await
        .expect("rotate");
    assert_eq!(invalid.unwrap_err(), RotateRefusal::Invalid);
    assert!(
        store.find_by_hash(&again.hash).await.expect("find").is_none(),
        "nothing stored"
    );
}

async fn a_rotation_at_the_limit_is_refused_until_a_key_is_revoked<S: KeyRegistry>(store: &S) {
    let account = unique_name("acct");
    let t0 = now();
    let retire_at = t0 + Duration::from_secs(3600);
    let keys: Vec<KeyRecord> = (0..3).map(|_| record(&account, KeyKind::Production, t0)).collect();
    for key in &keys {
        store.insert(key.clone(), Some(3), t0).await.expect("within the limit");
    }
    let before = store.list_by_account(&account).await.expect("list");
    let successor = record(&account, KeyKind::Production, t0);
    let refused = store
        .rotate(Rotation::new(keys[0].id(), successor.clone(), retire_at, t0).max_active(3))
        .await;
    assert!(
        matches!(refused, Err(StoreError::KeyLimitReached { limit: 3 })),
        "a rotation at the limit adds a working key: {refused:?}"
    );
    assert_eq!(
        store.list_by_account(&account).await.expect("list"),
        before,
        "a refused rotation changes nothing"
    );
    assert!(store.find_by_hash(&successor.hash).await.expect("find").is_none());
    assert!(store.find_by_id(successor.id()).await.expect("find").is_none());

    // Without a limit, or with room, the same rotation goes through.
    store.revoke(keys[2].id(), t0).await.expect("revoke");
    let retiring = store
        .rotate(Rotation::new(keys[0].id(), successor.clone(), retire_at, t0).max_active(3))
        .await
        .expect("room once a key is revoked")
        .expect("rotates");
    assert_eq!(retiring.revoked_at, Some(retire_at));
    assert!(store.find_by_hash(&successor.hash).await.expect("find").is_some());
    assert_eq!(working_keys(store, &account, t0).await, 3);
}

async fn chained_rotations_never_exceed_the_limit<S: KeyRegistry>(store: &S) {
    // A hostile account rotates each successor at once: every rotation
    // leaves the retiring key working for its grace period, so without the
    // limit each would add one more working key.
    const LIMIT: usize = 4;
    let account = unique_name("acct");
    let t0 = now();
    let retire_at = t0 + Duration::from_secs(3600);
    let first = record(&account, KeyKind::Production, t0);
    store.insert(first.clone(), Some(LIMIT), t0).await.expect("insert");
    let mut current = first.id().to_owned();
    let (mut rotated, mut refused) = (0, 0);
    for _ in 0..14 {
        let successor = record(&account, KeyKind::Production, t0);
        let rotation = Rotation::new(&current, successor.clone(), retire_at, t0).max_active(LIMIT);
        match store.rotate(rotation).await {
            Ok(Ok(_)) => {
                rotated += 1;
                current = successor.id().to_owned();
            }
            Err(StoreError::KeyLimitReached { limit: LIMIT }) => refused += 1,
            other => panic!("a chained rotation gave {other:?}"),
        }
        let working = working_keys(store, &account, t0).await;
        assert!(working <= LIMIT, "{working} keys work, the limit is {LIMIT}");
    }
    assert_eq!((rotated, refused), (LIMIT - 1, 14 - (LIMIT - 1)));
    assert_eq!(working_keys(store, &account, t0).await, LIMIT);
    assert_eq!(store.list_by_account(&account).await.expect("list").len(), LIMIT);
    // Revoking the first (retiring) key makes room for one more rotation.
    store.revoke(first.id(), t0).await.expect("revoke");
    store
        .rotate(Rotation::new(&current, record(&account, KeyKind::Production, t0), retire_at, t0).max_active(LIMIT))
        .await
        .expect("room after a revocation")
        .expect("rotates");
    assert_eq!(working_keys(store, &account, t0).await, LIMIT);
}

async fn concurrent_rotations_of_one_key_rotate_it_once<S: KeyRegistry>(store: &S) {
    // With a limit the first rotation fills: the others must still be
    // told the key is retiring (checked first), not that the account is full.
    let account = unique_name("acct");
    let t0 = now();
    let old = record(&account, KeyKind::Production, t0);
    store.insert(old.clone(), Some(2), t0).await.expect("insert");
    let retire_at = t0 + Duration::from_secs(60);
    let attempts = (0..20).map(|_| {
        store.rotate(Rotation::new(old.id(), record(&account, KeyKind::Production, t0), retire_at, t0).max_active(2))
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
    assert_eq!(working_keys(store, &account, t0).await, 2);
}

async fn concurrent_creations_fill_the_limit_exactly_and_never_exceed_it<S: KeyRegistry>(store: &S) {
    const LIMIT: usize = 10;
    let account = unique_name("acct");
    let t0 = now();
    // The account holds 4 working keys, one of them retiring after a rotation.
    let rotated = record(&account, KeyKind::Production, t0);
    store.insert(rotated.clone(), Some(LIMIT), t0).await.expect("insert");
    for _ in 0..2 {
        store
            .insert(record(&account, KeyKind::Production, t0), Some(LIMIT), t0)
            .await
            .expect("insert");
    }
    let successor = record(&account, KeyKind::Production, t0);
    let retire_at = t0 + Duration::from_secs(3600);
    store
        .rotate(Rotation::new(rotated.id(), successor, retire_at, t0).max_active(LIMIT))
        .await
        .expect("rotate")
        .expect("rotates");
    let held = working_keys(store, &account, t0).await;
    assert_eq!(held, 4);

    enum Step {
        Inserted(Result<(), StoreError>),
        Listed(usize),
    }
    // Twenty creations, with a listing of the account between each two.
    let steps = (0..40).map(|i| {
        let account = account.as_str();
        async move {
            if i % 2 == 0 {
                Step::Inserted(
                    store
                        .insert(record(account, KeyKind::Production, t0), Some(LIMIT), t0)
                        .await,
                )
            } else {
                Step::Listed(working_keys(store, account, t0).await)
            }
        }
    });
    let steps = join_all(steps).await;
    let mut inserted = Vec::new();
    for step in &steps {
        match step {
            Step::Inserted(result) => inserted.push(result),
            Step::Listed(working) => {
                assert!(*working <= LIMIT, "{working} working keys listed, the limit is {LIMIT}")
            }
        }
    }
    let admitted = inserted.iter().filter(|result| result.is_ok()).count();
    let full = inserted
        .iter()
        .filter(|result| matches!(result, Err(StoreError::KeyLimitReached { limit: LIMIT })))
        .count();
    assert_eq!(
        (admitted, full),
        (LIMIT - held, 20 - (LIMIT - held)),
        "exactly the room left is admitted: {inserted:?}"
    );
    assert_eq!(working_keys(store, &account, t0).await, LIMIT);
}

/// A spawned task, as [`key_limit_in_parallel`] hands it to the runtime,
/// and the future that waits for it to finish.
pub type SpawnedTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The per-account limit under real parallelism: tasks spawned on a
/// multi-thread runtime over clones of `store`, while another task lists
/// the account and counts its working keys throughout. `spawn` starts a
/// task and returns a future that finishes with it, so this crate needs no
/// runtime: with tokio, `|task| { let handle = tokio::spawn(task);
/// Box::pin(async move { handle.await.expect("task") }) }`.
///
/// - 20 concurrent rotations of one key: exactly one succeeds, the others
///   find it [`RotateRefusal::Retiring`].
/// - 20 concurrent rotations of two keys with room for one more key:
///   exactly one succeeds.
/// - 20 concurrent creations for an account holding 4 working keys (one
///   retiring) with a limit of 10: exactly 6 succeed, the rest are
///   [`StoreError::KeyLimitReached`].
///
/// Throughout, no listing sees more working keys than the limit.
pub async fn key_limit_in_parallel<S, F>(store: &S, spawn: F)
where
    S: KeyRegistry + Clone,
    F: Fn(SpawnedTask) -> SpawnedTask,
{
    let t0 = now();
    let retire_at = t0 + Duration::from_secs(3600);

    // One key, rotated by 20 tasks at once.
    let account = unique_name("acct");
    let old = record(&account, KeyKind::Production, t0);
    store.insert(old.clone(), Some(3), t0).await.expect("insert");
    store
        .insert(record(&account, KeyKind::Production, t0), Some(3), t0)
        .await
        .expect("insert");
    let rotations = rotations_of(store, &account, &[old.id()], retire_at, t0);
    let outcomes = in_parallel(store, &spawn, &account, 3, t0, rotations).await;
    assert_eq!(
        count(&outcomes, |o| matches!(o, Outcome::Rotated(Ok(Ok(_))))),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        count(&outcomes, |o| matches!(
            o,
            Outcome::Rotated(Ok(Err(RotateRefusal::Retiring)))
        )),
        19,
        "{outcomes:?}"
    );
    assert_eq!(working_keys(store, &account, t0).await, 3);

    // Two keys, rotated by 20 tasks at once, with room for one more key.
    let account = unique_name("acct");
    let keys: Vec<KeyRecord> = (0..2).map(|_| record(&account, KeyKind::Production, t0)).collect();
    for key in &keys {
        store.insert(key.clone(), Some(3), t0).await.expect("insert");
    }
    let rotations = rotations_of(store, &account, &[keys[0].id(), keys[1].id()], retire_at, t0);
    let outcomes = in_parallel(store, &spawn, &account, 3, t0, rotations).await;
    assert_eq!(
        count(&outcomes, |o| matches!(o, Outcome::Rotated(Ok(Ok(_))))),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        count(&outcomes, |o| matches!(
            o,
            Outcome::Rotated(Ok(Err(RotateRefusal::Retiring)) | Err(StoreError::KeyLimitReached { limit: 3 }))
        )),
        19,
        "{outcomes:?}"
    );
    assert_eq!(working_keys(store, &account, t0).await, 3);

    // 20 creations at once for an account holding 4 working keys, one retiring.
    const LIMIT: usize = 10;
    let account = unique_name("acct");
    let rotated = record(&account, KeyKind::Production, t0);
    store.insert(rotated.clone(), Some(LIMIT), t0).await.expect("insert");
    for _ in 0..2 {
        store
            .insert(record(&account, KeyKind::Production, t0), Some(LIMIT), t0)
            .await
            .expect("insert");
    }
    store
        .rotate(Rotation::new(rotated.id(), record(&account, KeyKind::Production, t0), retire_at, t0).max_active(LIMIT))
        .await
        .expect("rotate")
        .expect("rotates");
    let held = working_keys(store, &account, t0).await;
    assert_eq!(held, 4);
    let creations = (0..20)
        .map(|_| {
            let (store, key) = (store.clone(), record(&account, KeyKind::Production, t0));
            async move { Outcome::Inserted(store.insert(key, Some(LIMIT), t0).await) }
        })
        .collect();
    let outcomes = in_parallel(store, &spawn, &account, LIMIT, t0, creations).await;
    assert_eq!(
        count(&outcomes, |o| matches!(o, Outcome::Inserted(Ok(())))),
        LIMIT - held,
        "{outcomes:?}"
    );
    assert_eq!(
        count(&outcomes, |o| matches!(
            o,
            Outcome::Inserted(Err(StoreError::KeyLimitReached { limit: LIMIT }))
        )),
        20 - (LIMIT - held),
        "{outcomes:?}"
    );
    assert_eq!(working_keys(store, &account, t0).await, LIMIT);
}

// 20 rotations under a limit of 3, the i-th of `key_ids[i % len]`, each
// with a fresh successor in `account`.
fn rotations_of<S: KeyRegistry + Clone>(
    store: &S,
    account: &str,
    key_ids: &[&str],
    retire_at: SystemTime,
    now: SystemTime,
) -> Vec<impl Future<Output = Outcome> + Send + 'static> {
    (0..20)
        .map(|i| {
            let (store, key_id) = (store.clone(), key_ids[i % key_ids.len()].to_owned());
            let successor = record(account, KeyKind::Production, now);
            async move {
                let rotation = Rotation::new(key_id, successor, retire_at, now).max_active(3);
                Outcome::Rotated(store.rotate(rotation).await)
            }
        })
        .collect()
}

#[derive(Debug)]
enum Outcome {
    Rotated(Result<Result<Arc<KeyRecord>, RotateRefusal>, StoreError>),
    Inserted(Result<(), StoreError>),
}

fn count(outcomes: &[Outcome], test: impl Fn(&Outcome) -> bool) -> usize {
    outcomes.iter().filter(|outcome| test(outcome)).count()
}

// Runs `operations` as spawned tasks while a spawned sampler lists the
// account over and over; asserts no listing saw more than `limit` working
// keys, and returns the operations' outcomes.
async fn in_parallel<S, F, O>(
    store: &S,
    spawn: &F,
    account: &str,
    limit: usize,
    now: SystemTime,
    operations: Vec<O>,
) -> Vec<Outcome>
where
    S: KeyRegistry + Clone,
    F: Fn(SpawnedTask) -> SpawnedTask,
    O: Future<Output = Outcome> + Send + 'static,
{
    let done = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (store, account) = (store.clone(), account.to_owned());
        let (done, most, samples) = (done.clone(), most.clone(), samples.clone());
        spawn(Box::pin(async move {
            loop {
                // Read the flag first: the last listing then follows every operation.
                let finished = done.load(Ordering::SeqCst);
                let working = working_keys(&store, &account, now).await;
                most.fetch_max(working, Ordering::SeqCst);
                samples.fetch_add(1, Ordering::SeqCst);
                if finished {
                    break;
                }
                YieldNow(false).await;
            }
        }))
    };
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<SpawnedTask> = operations
        .into_iter()
        .map(|operation| {
            let outcomes = outcomes.clone();
            spawn(Box::pin(async move {
                let outcome = operation.await;
                outcomes.lock().expect("not poisoned").push(outcome);
            }))
        })
        .collect();
    for task in tasks {
        task.await;
    }
    done.store(true, Ordering::SeqCst);
    sampler.await;
    let most = most.load(Ordering::SeqCst);
    assert!(most <= limit, "a listing saw {most} working keys, the limit is {limit}");
    assert!(samples.load(Ordering::SeqCst) >= 1);
    let outcomes = std::mem::take(&mut *outcomes.lock().expect("not poisoned"));
    assert_eq!(outcomes.len(), 20);
    outcomes
}

// Lets other tasks run once, on any runtime.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
