//! [`MemoryAllowlistStore`]: per-account and per-key IP allowlists in
//! process memory, for one instance.

use std::sync::Arc;

use dashmap::DashMap;

use super::{AllowlistStore, Allowlists, IpSet};
use crate::maybe_ready::{MaybeReady, StoreFuture};

/// Allowlists in process memory, each kept as a built [`IpSet`] behind an
/// `Arc`: a lookup is a map read and a reference count, however long the
/// list. Clones share the same lists.
#[derive(Debug, Clone, Default)]
pub struct MemoryAllowlistStore {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    accounts: DashMap<String, Arc<IpSet>>,
    keys: DashMap<String, Arc<IpSet>>,
}

impl MemoryAllowlistStore {
    /// An empty store: no account or key is restricted.
    pub fn new() -> MemoryAllowlistStore {
        MemoryAllowlistStore::default()
    }
}

// Replacing the map's Arc is the atomic swap: a reader holds the old set or
// the new one, never a half-written list.
fn read(map: &DashMap<String, Arc<IpSet>>, id: &str) -> Option<Arc<IpSet>> {
    map.get(id).map(|entry| Arc::clone(&entry))
}

impl AllowlistStore for MemoryAllowlistStore {
    fn account_allowlist(&self, account_id: &str) -> StoreFuture<Option<Arc<IpSet>>> {
        MaybeReady::ready(Ok(read(&self.inner.accounts, account_id)))
    }

    fn set_account_allowlist(&self, account_id: &str, list: IpSet) -> StoreFuture<()> {
        self.inner.accounts.insert(account_id.to_owned(), Arc::new(list));
        MaybeReady::ready(Ok(()))
    }

    fn clear_account_allowlist(&self, account_id: &str) -> StoreFuture<bool> {
        MaybeReady::ready(Ok(self.inner.accounts.remove(account_id).is_some()))
    }

    fn key_allowlist(&self, key_id: &str) -> StoreFuture<Option<Arc<IpSet>>> {
        MaybeReady::ready(Ok(read(&self.inner.keys, key_id)))
    }

    fn set_key_allowlist(&self, key_id: &str, list: IpSet) -> StoreFuture<()> {
        self.inner.keys.insert(key_id.to_owned(), Arc::new(list));
        MaybeReady::ready(Ok(()))
    }

    fn clear_key_allowlist(&self, key_id: &str) -> StoreFuture<bool> {
        MaybeReady::ready(Ok(self.inner.keys.remove(key_id).is_some()))
    }

    fn allowlists(&self, account_id: &str, key_id: &str) -> StoreFuture<Allowlists> {
        MaybeReady::ready(Ok(Allowlists {
            account: read(&self.inner.accounts, account_id),
            key: read(&self.inner.keys, key_id),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[tokio::test]
    async fn conforms() {
        crate::conformance::allowlist_store(&MemoryAllowlistStore::new()).await;
    }

    // The memory store answers at once.
    fn ready<T>(answer: MaybeReady<T>) -> T {
        answer
            .into_ready()
            .unwrap_or_else(|_| panic!("the memory store never waits"))
    }

    #[test]
    fn readers_on_other_threads_never_see_a_mixed_list() {
        // Two writers keep swapping between two disjoint lists while two
        // readers check that every list they get is wholly one or the other.
        let store = MemoryAllowlistStore::new();
        let first = IpSet::parse((0..200).map(|i| format!("10.0.{i}.0/24"))).unwrap();
        let second = IpSet::parse((0..200).map(|i| format!("172.16.{i}.0/24"))).unwrap();
        ready(store.set_account_allowlist("acct", first.clone())).unwrap();
        let probe_first: IpAddr = "10.0.199.1".parse().unwrap();
        let probe_second: IpAddr = "172.16.0.1".parse().unwrap();
        std::thread::scope(|scope| {
            for list in [&first, &second] {
                let store = store.clone();
                scope.spawn(move || {
                    for _ in 0..500 {
                        ready(store.set_account_allowlist("acct", list.clone())).unwrap();
                    }
                });
            }
            for _ in 0..2 {
                let store = store.clone();
                let (first, second) = (&first, &second);
                scope.spawn(move || {
                    for _ in 0..5000 {
                        let got = ready(store.account_allowlist("acct"))
                            .unwrap()
                            .expect("a list is always there");
                        assert!(*got == *first || *got == *second, "a torn list");
                        assert_ne!(got.contains(probe_first), got.contains(probe_second));
                    }
                });
            }
        });
    }
}
