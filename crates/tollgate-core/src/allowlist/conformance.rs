use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::{AllowlistStore, Allowlists, IpSet};
use crate::conformance::{join_all, unique_name};

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an address")
}

fn list(entries: &[&str]) -> IpSet {
    IpSet::parse(entries).expect("valid networks")
}

/// The [`AllowlistStore`] conformance suite.
pub async fn allowlist_store<S: AllowlistStore>(store: &S) {
    unknown_ids_have_no_list(store).await;
    account_lists_round_trip(store).await;
    key_lists_round_trip(store).await;
    setting_replaces_the_whole_list(store).await;
    clearing_removes_the_restriction(store).await;
    an_empty_list_is_kept_and_differs_from_none(store).await;
    accounts_and_keys_with_the_same_id_are_apart(store).await;
    allowlists_returns_both_levels(store).await;
    a_long_list_round_trips(store).await;
    concurrent_replacements_leave_one_whole_list(store).await;
}

async fn unknown_ids_have_no_list<S: AllowlistStore>(store: &S) {
    let nobody = unique_name("nobody");
    assert_eq!(store.account_allowlist(&nobody).await.expect("get"), None);
    assert_eq!(store.key_allowlist(&nobody).await.expect("get"), None);
    assert!(!store.clear_account_allowlist(&nobody).await.expect("clear"));
    assert!(!store.clear_key_allowlist(&nobody).await.expect("clear"));
    assert_eq!(
        store.allowlists(&nobody, &nobody).await.expect("get"),
        Allowlists::default()
    );
}

async fn account_lists_round_trip<S: AllowlistStore>(store: &S) {
    let account = unique_name("acct");
    let servers = list(&["203.0.113.0/24", "2001:db8::/48", "198.51.100.7"]);
    store
        .set_account_allowlist(&account, servers.clone())
        .await
        .expect("set");
    let got = store.account_allowlist(&account).await.expect("get").expect("a list");
    assert_eq!(*got, servers, "the list reads back unchanged");
    assert!(got.contains(ip("203.0.113.50")));
    assert!(got.contains(ip("2001:db8:0:ffff::1")));
    assert!(got.contains(ip("::ffff:198.51.100.7")));
    assert!(!got.contains(ip("198.51.100.8")));
    assert!(!got.contains(ip("2001:db8:1::1")));
}

async fn key_lists_round_trip<S: AllowlistStore>(store: &S) {
    let key = unique_name("key");
    let servers = list(&["192.0.2.10", "192.0.2.11"]);
    store.set_key_allowlist(&key, servers.clone()).await.expect("set");
    let got = store.key_allowlist(&key).await.expect("get").expect("a list");
    assert_eq!(*got, servers);
    assert!(got.contains(ip("192.0.2.11")));
    assert!(!got.contains(ip("192.0.2.12")));
}

async fn setting_replaces_the_whole_list<S: AllowlistStore>(store: &S) {
    let account = unique_name("acct");
    let key = unique_name("key");
    store
        .set_account_allowlist(&account, list(&["10.0.0.0/8", "192.0.2.0/24"]))
        .await
        .expect("set");
    store
        .set_account_allowlist(&account, list(&["172.16.0.0/12"]))
        .await
        .expect("set");
    let got = store.account_allowlist(&account).await.expect("get").expect("a list");
    assert_eq!(*got, list(&["172.16.0.0/12"]), "no entry of the old list survives");
    assert!(!got.contains(ip("10.1.1.1")));
    store.set_key_allowlist(&key, list(&["10.0.0.1"])).await.expect("set");
    store.set_key_allowlist(&key, list(&["10.0.0.2"])).await.expect("set");
    let got = store.key_allowlist(&key).await.expect("get").expect("a list");
    assert_eq!(*got, list(&["10.0.0.2"]));
}

async fn clearing_removes_the_restriction<S: AllowlistStore>(store: &S) {
    let account = unique_name("acct");
    let key = unique_name("key");
    store
        .set_account_allowlist(&account, list(&["10.0.0.0/8"]))
        .await
        .expect("set");
    store.set_key_allowlist(&key, list(&["10.0.0.1"])).await.expect("set");
    assert!(store.clear_account_allowlist(&account).await.expect("clear"));
    assert_eq!(store.account_allowlist(&account).await.expect("get"), None);
    assert!(
        !store.clear_account_allowlist(&account).await.expect("clear"),
        "already gone"
    );
    assert_eq!(
        store.key_allowlist(&key).await.expect("get").as_deref(),
        Some(&list(&["10.0.0.1"])),
        "clearing the account's list leaves its keys' lists"
    );
    assert!(store.clear_key_allowlist(&key).await.expect("clear"));
    assert_eq!(store.key_allowlist(&key).await.expect("get"), None);
    assert!(!store.clear_key_allowlist(&key).await.expect("clear"));
}

async fn an_empty_list_is_kept_and_differs_from_none<S: AllowlistStore>(store: &S) {
    // An empty list locks the account out; it must not read back as "no list".
    let account = unique_name("acct");
    store
        .set_account_allowlist(&account, IpSet::empty())
        .await
        .expect("set");
    let got = store
        .account_allowlist(&account)
        .await
        .expect("get")
        .expect("an empty list, not None");
    assert!(got.is_empty());
    assert!(!got.contains(ip("127.0.0.1")));
    let key = unique_name("key");
    store.set_key_allowlist(&key, IpSet::empty()).await.expect("set");
    assert!(store
        .key_allowlist(&key)
        .await
        .expect("get")
        .is_some_and(|got| got.is_empty()));
}

async fn accounts_and_keys_with_the_same_id_are_apart<S: AllowlistStore>(store: &S) {
    let id = unique_name("same");
    store
        .set_account_allowlist(&id, list(&["10.0.0.0/8"]))
        .await
        .expect("set");
    assert_eq!(store.key_allowlist(&id).await.expect("get"), None);
    store.set_key_allowlist(&id, list(&["192.0.2.1"])).await.expect("set");
    assert_eq!(
        store.account_allowlist(&id).await.expect("get").as_deref(),
        Some(&list(&["10.0.0.0/8"]))
    );
    assert!(store.clear_key_allowlist(&id).await.expect("clear"));
    assert!(store.account_allowlist(&id).await.expect("get").is_some());
}

async fn allowlists_returns_both_levels<S: AllowlistStore>(store: &S) {
    let account = unique_name("acct");
    let key = unique_name("key");
    let other_key = unique_name("key");
    store
        .set_account_allowlist(&account, list(&["10.0.0.0/8"]))
        .await
        .expect("set");
    store.set_key_allowlist(&key, list(&["10.1.2.3"])).await.expect("set");
    let both = store.allowlists(&account, &key).await.expect("get");
    assert_eq!(both.account.as_deref(), Some(&list(&["10.0.0.0/8"])));
    assert_eq!(both.key.as_deref(), Some(&list(&["10.1.2.3"])));
    let account_only = store.allowlists(&account, &other_key).await.expect("get");
    assert_eq!(account_only.account.as_deref(), Some(&list(&["10.0.0.0/8"])));
    assert_eq!(account_only.key, None);
    let key_only = store.allowlists(&unique_name("acct"), &key).await.expect("get");
    assert_eq!(key_only.account, None);
    assert_eq!(key_only.key.as_deref(), Some(&list(&["10.1.2.3"])));
}

async fn a_long_list_round_trips<S: AllowlistStore>(store: &S) {
    // 10,000 /30s spread over 10.0.0.0/8 plus some IPv6 /64s.
    let mut networks: Vec<IpNet> = (0..10_000u32)
        .map(|i| {
            let base = (10u32 << 24) | ((i * 1_000) & 0x00ff_fffc);
            IpNet::new(IpAddr::V4(base.into()), 30).expect("a /30")
        })
        .collect();
    networks.extend((0..100u16).map(|i| format!("2001:db8:{i:x}::/64").parse::<IpNet>().expect("a /64")));
    let long = IpSet::new(networks);
    let account = unique_name("acct");
    store.set_account_allowlist(&account, long.clone()).await.expect("set");
    let got = store.account_allowlist(&account).await.expect("get").expect("a list");
    assert_eq!(got.len(), long.len());
    assert_eq!(*got, long);
    assert!(got.contains(ip("10.0.3.233")), "10.0.3.232/30 is listed (i = 1)");
    assert!(!got.contains(ip("10.0.3.236")));
    assert!(got.contains(ip("2001:db8:63::1")));
    assert!(!got.contains(ip("2001:db8:64::1")));
}

async fn concurrent_replacements_leave_one_whole_list<S: AllowlistStore>(store: &S) {
    let key = unique_name("key");
    let candidates: Vec<IpSet> = (0..20u8)
        .map(|i| IpSet::parse((0..50u8).map(|j| format!("10.{i}.{j}.0/24"))).expect("valid"))
        .collect();
    let writes = candidates
        .iter()
        .map(|candidate| store.set_key_allowlist(&key, candidate.clone()));
    for result in join_all(writes).await {
        result.expect("set");
    }
    let got: Arc<IpSet> = store.key_allowlist(&key).await.expect("get").expect("a list");
    assert!(
        candidates.contains(&got),
        "the list is one of those written, whole: {got:?}"
    );
}
