use ipnet::IpNet;
use tollgate_core::allowlist::{AllowlistStore, IpSet, MemoryAllowlistStore};
use tollgate_core::conformance::FakeStore;
use tollgate_core::keys::MemoryKeyStore;
use tollgate_core::{Clock, KeyKind, ManualClock, Scope, StoreError};

use super::*;
use crate::key_info::KeyStatus;

fn manager() -> (KeyManager, ManualClock) {
    let clock = ManualClock::at_unix_secs(1_700_000_000);
    (KeyManager::new(MemoryKeyStore::new()).clock(clock.clone()), clock)
}

fn production(account: &str) -> NewKey {
    NewKey::new(account, KeyKind::Production)
}

#[tokio::test]
async fn create_returns_the_key_once_and_stores_only_its_hash() {
    let (keys, clock) = manager();
    let created = keys
        .create(production("acct_1").label("Production Server").plan("premium"))
        .await
        .unwrap();
    let plaintext = created.secret.expose_secret();
    assert_eq!(KeyFormat::default().check(plaintext), Ok(KeyKind::Production));
    assert_eq!(created.info.display_prefix, &plaintext[..12]);
    assert!(created.info.id.starts_with("key_"));
    assert_eq!(created.info.label, "Production Server");
    assert_eq!(created.info.plan, "premium");
    assert_eq!(created.info.created_at, clock.now());
    assert_eq!(created.info.status_at(clock.now()), KeyStatus::Active);

    let stored = keys.store().find_by_id(&created.info.id).await.unwrap().unwrap();
    assert_eq!(stored.hash, hash_key(plaintext));
    assert_eq!(stored.principal.plan(), "premium");
    let printed = format!("{created:?} {stored:?} {:?}", keys.list("acct_1").await.unwrap());
    assert!(!printed.contains(plaintext), "{printed}");
    assert!(!printed.contains(&plaintext[12..]), "{printed}");
    assert!(!printed.contains(&stored.hash.to_hex()), "{printed}");
    assert!(printed.contains("<redacted>"));
}

#[tokio::test]
async fn scopes_default_by_kind_and_can_be_chosen() {
    let (keys, _) = manager();
    let read_only = keys.create(NewKey::new("acct_1", KeyKind::ReadOnly)).await.unwrap();
    assert_eq!(read_only.info.scopes, [Scope::READ]);
    assert!(read_only.secret.expose_secret().starts_with("tg_read_"));
    let sandbox = keys.create(NewKey::new("acct_1", KeyKind::Sandbox)).await.unwrap();
    assert_eq!(sandbox.info.scopes, [Scope::ALL]);
    let record = keys.store().find_by_id(&sandbox.info.id).await.unwrap().unwrap();
    assert_eq!(record.principal.environment(), tollgate_core::Environment::Sandbox);
    let narrow = keys
        .create(production("acct_1").scopes([Scope::new("messages:read"), Scope::new("templates:read")]))
        .await
        .unwrap();
    assert_eq!(
        narrow.info.scopes,
        [Scope::new("messages:read"), Scope::new("templates:read")]
    );
}

#[tokio::test]
async fn the_eleventh_active_key_is_refused() {
    let (keys, _) = manager();
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(keys.create(production("acct_1")).await.unwrap().info.id);
    }
    match keys.create(production("acct_1")).await {
        Err(KeyManagerError::KeyLimitReached { limit: 10 }) => {}
        other => panic!("expected KeyLimitReached, got {other:?}"),
    }
    assert!(
        matches!(
            keys.import(production("acct_1"), "imported-key-0123456789abcdef").await,
            Err(KeyManagerError::KeyLimitReached { limit: 10 })
        ),
        "imports count too"
    );
    keys.create(production("acct_2"))
        .await
        .expect("other accounts have their own limit");
    keys.revoke("acct_1", &ids[3]).await.unwrap();
    keys.create(production("acct_1"))
        .await
        .expect("a revoked key frees its slot");
    assert_eq!(keys.list("acct_1").await.unwrap().len(), 11);
}

#[tokio::test]
async fn the_limit_is_configurable_or_off() {
    let (keys, _) = manager();
    let keys = keys.max_active_keys(2);
    keys.create(production("acct_1")).await.unwrap();
    keys.create(production("acct_1")).await.unwrap();
    assert!(matches!(
        keys.create(production("acct_1")).await,
        Err(KeyManagerError::KeyLimitReached { limit: 2 })
    ));
    let unlimited = keys.max_active_keys(None);
    for _ in 0..12 {
        unlimited.create(production("acct_2")).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_never_exceed_the_limit() {
    let (keys, _) = manager();
    let tasks: Vec<_> = (0..25)
        .map(|_| {
            let keys = keys.clone();
            tokio::spawn(async move { keys.create(production("acct_race")).await })
        })
        .collect();
    let mut created = 0;
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => created += 1,
            Err(KeyManagerError::KeyLimitReached { limit: 10 }) => refused += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!((created, refused), (10, 15));
}

#[tokio::test]
async fn keys_of_another_account_are_not_found() {
    let (keys, _) = manager();
    let theirs = keys.create(production("acct_other")).await.unwrap();
    let id = &theirs.info.id;
    assert!(matches!(keys.get("acct_1", id).await, Err(KeyManagerError::NotFound)));
    assert!(matches!(
        keys.revoke("acct_1", id).await,
        Err(KeyManagerError::NotFound)
    ));
    assert!(matches!(
        keys.rotate("acct_1", id, Duration::ZERO).await,
        Err(KeyManagerError::NotFound)
    ));
    assert!(matches!(
        keys.get("acct_1", "key_nothing").await,
        Err(KeyManagerError::NotFound)
    ));
    let still = keys.get("acct_other", id).await.unwrap();
    assert_eq!(still.revoked_at, None, "the other account's key is untouched");
}

#[tokio::test]
async fn revoking_twice_is_already_revoked() {
    let (keys, clock) = manager();
    let key = keys.create(production("acct_1")).await.unwrap();
    let revoked = keys.revoke("acct_1", &key.info.id).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(clock.now()));
    assert_eq!(revoked.status_at(clock.now()), KeyStatus::Revoked);
    assert!(matches!(
        keys.revoke("acct_1", &key.info.id).await,
        Err(KeyManagerError::AlreadyRevoked)
    ));
}

#[tokio::test]
async fn rotation_copies_the_key_and_schedules_the_old_ones_revocation() {
    let (keys, clock) = manager();
    let lists = MemoryAllowlistStore::new();
    let keys = keys.allowlists(Arc::new(lists.clone()));
    let network: IpNet = "203.0.113.0/24".parse().unwrap();
    let expires = clock.now() + Duration::from_secs(86_400);
    let old = keys
        .create(
            NewKey::new("acct_1", KeyKind::ReadOnly)
                .label("Dashboards")
                .plan("enterprise")
                .scopes([Scope::new("analytics:read")])
                .ip_allowlist([network])
                .expires_at(expires),
        )
        .await
        .unwrap();
    clock.advance(Duration::from_secs(10));
    let new = keys
        .rotate("acct_1", &old.info.id, Duration::from_secs(600))
        .await
        .unwrap();
    assert_ne!(new.info.id, old.info.id);
    assert_ne!(new.secret, old.secret);
    assert!(new.secret.expose_secret().starts_with("tg_read_"));
    assert_eq!(new.info.kind, KeyKind::ReadOnly);
    assert_eq!(new.info.label, "Dashboards");
    assert_eq!(new.info.plan, "enterprise");
    assert_eq!(new.info.scopes, [Scope::new("analytics:read")]);
    assert_eq!(
        networks(lists.key_allowlist(&new.info.id).await.unwrap()),
        Some(vec![network])
    );
    assert_eq!(new.info.expires_at, Some(expires), "a rotation never extends access");
    assert_eq!(new.info.created_at, clock.now());

    let retiring = keys.get("acct_1", &old.info.id).await.unwrap();
    assert_eq!(retiring.revoked_at, Some(clock.now() + Duration::from_secs(600)));
    assert_eq!(retiring.status_at(clock.now()), KeyStatus::Retiring);
    assert_eq!(
        retiring.status_at(clock.now() + Duration::from_secs(600)),
        KeyStatus::Revoked
    );
}

#[tokio::test]
async fn a_rotation_at_the_limit_is_refused_until_a_key_is_revoked() {
    // A rotation keeps the old key working through its grace period, so it
    // adds a working key: at the limit it is refused, and changes nothing.
    let (keys, clock) = manager();
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(keys.create(production("acct_1")).await.unwrap().info.id);
    }
    let error = keys
        .rotate("acct_1", &ids[0], Duration::from_secs(3600))
        .await
        .unwrap_err();
    assert!(
        matches!(error, KeyManagerError::KeyLimitReached { limit: 10 }),
        "{error}"
    );
    assert_eq!(error.to_rejection().code(), "KEY_LIMIT_REACHED");
    assert_eq!(keys.list("acct_1").await.unwrap().len(), 10, "no successor was stored");
    let old = keys.get("acct_1", &ids[0]).await.unwrap();
    assert_eq!(
        old.status_at(clock.now()),
        KeyStatus::Active,
        "not scheduled for revocation"
    );

    keys.revoke("acct_1", &ids[9]).await.unwrap();
    let new = keys
        .rotate("acct_1", &ids[0], Duration::from_secs(3600))
        .await
        .expect("room once a key is revoked");
    assert!(
        matches!(
            keys.create(production("acct_1")).await,
            Err(KeyManagerError::KeyLimitReached { limit: 10 })
        ),
        "the retiring key and its successor both count"
    );
    clock.advance(Duration::from_secs(3600));
    keys.rotate("acct_1", &new.info.id, Duration::from_secs(3600))
        .await
        .expect("once the old key retired, its successor can be rotated in turn");
}

#[tokio::test]
async fn chained_rotation_is_refused_at_the_limit_with_key_limit_reached() {
    // Rotating each successor at once used to add a working key every time
    // (15 after 14 rotations with a limit of 10).
    let (keys, clock) = manager();
    let keys = keys.max_active_keys(3);
    let mut current = keys.create(production("acct_1")).await.unwrap();
    let mut rotated = 0;
    let refusal = loop {
        match keys.rotate("acct_1", &current.info.id, Duration::from_secs(3600)).await {
            Ok(next) => {
                rotated += 1;
                current = next;
            }
            Err(error) => break error,
        }
        assert!(rotated < 14, "chained rotation is never refused");
    };
    assert_eq!(rotated, 2, "one key plus two successors fill a limit of 3");
    assert!(
        matches!(refusal, KeyManagerError::KeyLimitReached { limit: 3 }),
        "{refusal}"
    );
    let rejection = refusal.to_rejection();
    assert_eq!(
        (rejection.status().as_u16(), rejection.code()),
        (409, "KEY_LIMIT_REACHED")
    );
    let working = keys
        .list("acct_1")
        .await
        .unwrap()
        .iter()
        .filter(|info| matches!(info.status_at(clock.now()), KeyStatus::Active | KeyStatus::Retiring))
        .count();
    assert_eq!(working, 3);
}

#[tokio::test]
async fn rotating_a_retiring_key_is_key_retiring() {
    let (keys, clock) = manager();
    let old = keys.create(production("acct_1")).await.unwrap();
    keys.rotate("acct_1", &old.info.id, Duration::from_secs(3600))
        .await
        .unwrap();
    let error = keys
        .rotate("acct_1", &old.info.id, Duration::from_secs(3600))
        .await
        .unwrap_err();
    assert!(matches!(error, KeyManagerError::Retiring), "{error}");
    let rejection = error.to_rejection();
    assert_eq!((rejection.status().as_u16(), rejection.code()), (409, "KEY_RETIRING"));
    assert_eq!(
        rejection.message(),
        "This API key is already being replaced by a rotation; rotate its successor or revoke it."
    );
    assert_eq!(keys.list("acct_1").await.unwrap().len(), 2, "no second successor");

    // Once its grace period is over it is revoked, and says so.
    clock.advance(Duration::from_secs(3600));
    assert!(matches!(
        keys.rotate("acct_1", &old.info.id, Duration::ZERO).await,
        Err(KeyManagerError::AlreadyRevoked)
    ));
}

#[tokio::test]
async fn an_expired_key_is_expired_even_while_retiring() {
    let (keys, clock) = manager();
    let key = keys
        .create(production("acct_1").expires_at(clock.now() + Duration::from_secs(60)))
        .await
        .unwrap();
    keys.rotate("acct_1", &key.info.id, Duration::from_secs(3600))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(60));
    assert!(matches!(
        keys.rotate("acct_1", &key.info.id, Duration::ZERO).await,
        Err(KeyManagerError::Expired)
    ));
}

#[tokio::test]
async fn revoking_a_retiring_key_ends_its_grace_period() {
    let (keys, clock) = manager();
    let old = keys.create(production("acct_1")).await.unwrap();
    keys.rotate("acct_1", &old.info.id, Duration::from_secs(3600))
        .await
        .unwrap();
    let revoked = keys.revoke("acct_1", &old.info.id).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(clock.now()));
}

#[tokio::test]
async fn expired_keys_are_not_rotated_and_huge_grace_periods_are_refused() {
    let (keys, clock) = manager();
    let key = keys
        .create(production("acct_1").expires_at(clock.now() + Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(matches!(
        keys.rotate("acct_1", &key.info.id, Duration::MAX).await,
        Err(KeyManagerError::InvalidKey(_))
    ));
    clock.advance(Duration::from_secs(5));
    assert!(matches!(
        keys.rotate("acct_1", &key.info.id, Duration::ZERO).await,
        Err(KeyManagerError::Expired)
    ));
}

#[tokio::test]
async fn imports_accept_any_visible_ascii_key_once() {
    let (keys, _) = manager();
    let info = keys
        .import(production("acct_1").label("bootstrap"), "sm-bootstrap-7f3a9c2e41b8")
        .await
        .unwrap();
    assert_eq!(info.display_prefix, "sm-b");
    let record = keys.store().find_by_id(&info.id).await.unwrap().unwrap();
    assert_eq!(record.hash, hash_key("sm-bootstrap-7f3a9c2e41b8"));
    assert!(matches!(
        keys.import(production("acct_1"), "sm-bootstrap-7f3a9c2e41b8").await,
        Err(KeyManagerError::Duplicate)
    ));
    let generated = KeyFormat::default().generate(KeyKind::Production);
    let info = keys
        .import(production("acct_1"), generated.expose_secret())
        .await
        .unwrap();
    assert_eq!(info.display_prefix, &generated.expose_secret()[..12]);
}

#[tokio::test]
async fn imports_refuse_unusable_keys() {
    let (keys, _) = manager();
    let too_long = "k".repeat(257);
    let read_only_key = KeyFormat::default().generate(KeyKind::ReadOnly);
    for bad in [
        "",
        "has space",
        "tab\tkey",
        "caf\u{e9}-key",
        too_long.as_str(),
        read_only_key.expose_secret(),
    ] {
        match keys.import(production("acct_1"), bad).await {
            Err(KeyManagerError::InvalidKey(reason)) => {
                assert!(
                    !reason.contains(bad) || bad.is_empty(),
                    "the reason repeats the key: {reason}"
                )
            }
            other => panic!("{bad:?} was accepted: {other:?}"),
        }
    }
    assert!(keys.list("acct_1").await.unwrap().is_empty());
    let short_limit = keys.max_key_len(8);
    assert!(matches!(
        short_limit.import(production("acct_1"), "123456789").await,
        Err(KeyManagerError::InvalidKey(_))
    ));
}

#[tokio::test]
async fn listing_is_per_account_and_shows_every_state() {
    let (keys, clock) = manager();
    let first = keys.create(production("acct_1").label("one")).await.unwrap();
    clock.advance(Duration::from_secs(1));
    let second = keys.create(production("acct_1").label("two")).await.unwrap();
    keys.create(production("acct_2")).await.unwrap();
    keys.revoke("acct_1", &first.info.id).await.unwrap();
    let listed = keys.list("acct_1").await.unwrap();
    let labels: Vec<_> = listed.iter().map(|info| info.label.as_str()).collect();
    assert_eq!(labels, ["one", "two"]);
    assert_eq!(listed[0].status_at(clock.now()), KeyStatus::Revoked);
    assert_eq!(listed[1].id, second.info.id);
    assert!(keys.list("acct_nobody").await.unwrap().is_empty());
}

#[tokio::test]
async fn invalid_new_keys_store_nothing() {
    let (keys, _) = manager();
    assert!(matches!(
        keys.create(production("acct_1").label("x".repeat(200))).await,
        Err(KeyManagerError::InvalidKey(_))
    ));
    assert!(keys.list("acct_1").await.unwrap().is_empty());
}

#[tokio::test]
async fn rotating_a_revoked_key_is_already_revoked() {
    let (keys, _) = manager();
    let key = keys.create(production("acct_1")).await.unwrap();
    keys.revoke("acct_1", &key.info.id).await.unwrap();
    assert!(matches!(
        keys.rotate("acct_1", &key.info.id, Duration::ZERO).await,
        Err(KeyManagerError::AlreadyRevoked)
    ));
    assert_eq!(keys.list("acct_1").await.unwrap().len(), 1, "no successor was stored");
}

#[tokio::test]
async fn a_rotation_the_store_fails_changes_nothing() {
    let store = FakeStore::new(MemoryKeyStore::new());
    let clock = ManualClock::at_unix_secs(1_700_000_000);
    let keys = KeyManager::new(store.clone()).clock(clock.clone());
    let old = keys.create(production("acct_1")).await.unwrap();
    store.fail("rotate");
    let error = keys
        .rotate("acct_1", &old.info.id, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        matches!(error, KeyManagerError::Store(StoreError::Backend(_))),
        "{error}"
    );
    assert_eq!(error.to_rejection().status().as_u16(), 503);
    assert_eq!(store.calls("rotate"), 1, "one atomic step, nothing to undo");
    let listed = keys.list("acct_1").await.unwrap();
    assert_eq!(listed.len(), 1, "no successor was stored");
    assert_eq!(listed[0].id, old.info.id);
    assert_eq!(
        listed[0].status_at(clock.now()),
        KeyStatus::Active,
        "the old key still works, unscheduled"
    );
}

#[tokio::test]
async fn store_faults_are_store_errors() {
    let store = FakeStore::new(MemoryKeyStore::new());
    store.fail_all();
    let keys = KeyManager::new(store);
    let error = keys.create(production("acct_1")).await.unwrap_err();
    assert!(
        matches!(error, KeyManagerError::Store(StoreError::Backend(_))),
        "{error}"
    );
    assert_eq!(error.to_rejection().code(), "SERVICE_UNAVAILABLE");
}

#[test]
fn the_manager_debug_shows_configuration_only() {
    let keys = KeyManager::new(MemoryKeyStore::new()).max_active_keys(3);
    let debug = format!("{keys:?}");
    assert!(debug.contains("max_active_keys: Some(3)"), "{debug}");
}

fn with_allowlists() -> (KeyManager, FakeStore<MemoryAllowlistStore>) {
    let lists = FakeStore::new(MemoryAllowlistStore::new());
    let keys = KeyManager::new(MemoryKeyStore::new())
        .clock(ManualClock::at_unix_secs(1_700_000_000))
        .allowlists(Arc::new(lists.clone()));
    (keys, lists)
}

fn networks(list: Option<Arc<IpSet>>) -> Option<Vec<IpNet>> {
    list.map(|list| list.networks().to_vec())
}

#[tokio::test]
async fn a_rotated_keys_successor_keeps_its_ip_allowlist() {
    let (keys, lists) = with_allowlists();
    let old = keys.create(production("acct_1")).await.unwrap();
    let plain = keys.create(production("acct_1")).await.unwrap();
    let list = IpSet::parse(["203.0.113.0/24", "2001:db8::/32"]).unwrap();
    lists.set_key_allowlist(&old.info.id, list.clone()).await.unwrap();

    let new = keys
        .rotate("acct_1", &old.info.id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        networks(lists.key_allowlist(&new.info.id).await.unwrap()),
        Some(list.networks().to_vec()),
        "the successor works from no more addresses than the old key"
    );
    assert_eq!(
        networks(lists.key_allowlist(&old.info.id).await.unwrap()),
        Some(list.networks().to_vec()),
        "the old key keeps its list through its grace period"
    );

    let plain_new = keys
        .rotate("acct_1", &plain.info.id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(lists.key_allowlist(&plain_new.info.id).await.unwrap().map(|_| ()), None);
    assert_eq!(lists.calls("set_key_allowlist"), 2, "the test's list and one copy");
}

#[tokio::test]
async fn a_refused_rotation_leaves_no_allowlist_behind() {
    let (keys, lists) = with_allowlists();
    let keys = keys.max_active_keys(1);
    let old = keys.create(production("acct_1")).await.unwrap();
    lists
        .set_key_allowlist(&old.info.id, IpSet::parse(["203.0.113.0/24"]).unwrap())
        .await
        .unwrap();
    let error = keys
        .rotate("acct_1", &old.info.id, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        matches!(error, KeyManagerError::KeyLimitReached { limit: 1 }),
        "{error}"
    );
    assert_eq!(
        lists.calls("set_key_allowlist"),
        2,
        "copied before the store's rotation"
    );
    assert_eq!(lists.calls("clear_key_allowlist"), 1, "and removed after its refusal");
    assert_eq!(keys.list("acct_1").await.unwrap().len(), 1);
    assert!(lists.inner().key_allowlist(&old.info.id).await.unwrap().is_some());
}

#[tokio::test]
async fn a_failing_allowlist_store_stops_the_rotation() {
    let (keys, lists) = with_allowlists();
    let old = keys.create(production("acct_1")).await.unwrap();
    lists.fail("key_allowlist");
    let error = keys
        .rotate("acct_1", &old.info.id, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        matches!(error, KeyManagerError::Store(StoreError::Backend(_))),
        "{error}"
    );
    let listed = keys.list("acct_1").await.unwrap();
    assert_eq!(listed.len(), 1, "no successor was stored");
    assert_eq!(listed[0].status_at(keys.clock.now()), KeyStatus::Active);

    lists.heal();
    lists
        .set_key_allowlist(&old.info.id, IpSet::parse(["203.0.113.0/24"]).unwrap())
        .await
        .unwrap();
    lists.fail("set_key_allowlist");
    let error = keys
        .rotate("acct_1", &old.info.id, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(error, KeyManagerError::Store(_)), "{error}");
    assert_eq!(keys.list("acct_1").await.unwrap().len(), 1, "no successor was stored");
}

#[tokio::test]
async fn a_new_keys_ip_allowlist_is_stored_before_the_key_and_only_where_it_can_be() {
    let (keys, lists) = with_allowlists();
    let network: IpNet = "198.51.100.0/24".parse().unwrap();
    let created = keys.create(production("acct_1").ip_allowlist([network])).await.unwrap();
    assert_eq!(
        networks(lists.key_allowlist(&created.info.id).await.unwrap()),
        Some(vec![network])
    );

    // At the limit: refused, and the list written for it is gone again.
    let keys = keys.max_active_keys(1);
    let error = keys
        .create(production("acct_1").ip_allowlist([network]))
        .await
        .unwrap_err();
    assert!(
        matches!(error, KeyManagerError::KeyLimitReached { limit: 1 }),
        "{error}"
    );
    assert_eq!(lists.calls("set_key_allowlist"), 2);
    assert_eq!(lists.calls("clear_key_allowlist"), 1);

    // An empty list would lock the key out; a list with nowhere to live
    // would be ignored, so the key would work from anywhere.
    let error = keys.create(production("acct_2").ip_allowlist([])).await.unwrap_err();
    assert!(matches!(error, KeyManagerError::InvalidKey(_)), "{error}");
    let (bare, _) = manager();
    let error = bare
        .create(production("acct_1").ip_allowlist([network]))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, KeyManagerError::InvalidKey(reason) if reason.contains("allowlist store")),
        "{error}"
    );
    assert!(bare.list("acct_1").await.unwrap().is_empty());
}
