//! Pushed invalidation: "these keys or lists changed", delivered to every
//! instance so local caches drop what another instance changed at once,
//! instead of serving it until their TTL runs out.
//!
//! A store that writes a key or a list announces the [`Change`] on its
//! backend (PostgreSQL `NOTIFY`, Redis `PUBLISH`), in the same step as the
//! write where the backend allows. A *source* on each instance listens to
//! the backend and hands what arrives to that instance's [`Changes`] hub;
//! caches subscribe to the hub. When a source loses its connection it
//! marks the hub disconnected (caches fall back to their TTL as the bound)
//! and, once reconnected, delivers [`Change::Everything`], since anything
//! may have been missed in between.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};

use crate::keys::KeyHash;

/// Something a cache may hold that changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The key with this hash was created, revoked, rotated or edited.
    Key(KeyHash),
    /// The account's IP allowlist was set or removed.
    AccountAllowlist(String),
    /// The key's IP allowlist was set or removed.
    KeyAllowlist(String),
    /// Anything may have changed (a source reconnected): drop everything.
    Everything,
}

impl Change {
    /// The change as one line of text, the payload every backend carries.
    pub fn encode(&self) -> String {
        match self {
            Change::Key(hash) => format!("key:{}", hash.to_hex()),
            Change::AccountAllowlist(account_id) => format!("account-allowlist:{account_id}"),
            Change::KeyAllowlist(key_id) => format!("key-allowlist:{key_id}"),
            Change::Everything => "everything".to_owned(),
        }
    }

    /// Parses [`Change::encode`]'s output; `None` for anything else.
    pub fn decode(text: &str) -> Option<Change> {
        if text == "everything" {
            return Some(Change::Everything);
        }
        let (kind, value) = text.split_once(':')?;
        match kind {
            "key" => KeyHash::from_hex(value).map(Change::Key),
            "account-allowlist" => Some(Change::AccountAllowlist(value.to_owned())),
            "key-allowlist" => Some(Change::KeyAllowlist(value.to_owned())),
            _ => None,
        }
    }
}

/// What a cache does with a change.
pub trait ChangeListener: Send + Sync + 'static {
    /// Drops whatever the change makes stale. Called on the source's task:
    /// must not block.
    fn changed(&self, change: &Change);
}

/// One instance's hub of changes: sources deliver, caches listen. Clones
/// share the hub. Listeners are held weakly, so a dropped cache stops
/// listening by itself.
#[derive(Clone, Default)]
pub struct Changes {
    inner: Arc<Hub>,
}

#[derive(Default)]
struct Hub {
    listeners: RwLock<Vec<Weak<dyn ChangeListener>>>,
    connected: AtomicBool,
}

impl Changes {
    /// A hub with no listeners, not connected to any source.
    pub fn new() -> Changes {
        Changes::default()
    }

    /// Adds a listener, held until it is dropped elsewhere.
    pub fn subscribe(&self, listener: &Arc<dyn ChangeListener>) {
        let mut listeners = self.inner.listeners.write().unwrap_or_else(PoisonError::into_inner);
        listeners.retain(|listener| listener.strong_count() > 0);
        listeners.push(Arc::downgrade(listener));
    }

    /// Hands a change to every listener.
    pub fn deliver(&self, change: &Change) {
        let listeners = self.inner.listeners.read().unwrap_or_else(PoisonError::into_inner);
        for listener in listeners.iter().filter_map(Weak::upgrade) {
            listener.changed(change);
        }
    }

    /// Called by the source: whether it is connected to its backend. Going
    /// from disconnected to connected delivers [`Change::Everything`].
    pub fn set_connected(&self, connected: bool) {
        let was = self.inner.connected.swap(connected, Ordering::AcqRel);
        if connected && !was {
            self.deliver(&Change::Everything);
        }
    }

    /// Whether a source is connected, so changes arrive as they happen (for
    /// readiness checks); when not, caches rely on their TTL alone.
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }
}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes")
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Recorder(Mutex<Vec<Change>>);

    impl ChangeListener for Recorder {
        fn changed(&self, change: &Change) {
            self.0.lock().unwrap().push(change.clone());
        }
    }

    #[test]
    fn changes_round_trip_as_text_and_garbage_is_none() {
        for change in [
            Change::Key(KeyHash::from_bytes([9; 32])),
            Change::AccountAllowlist("acct_1".into()),
            Change::KeyAllowlist("key:with:colons".into()),
            Change::Everything,
        ] {
            assert_eq!(Change::decode(&change.encode()), Some(change));
        }
        for garbage in ["", "key:zz", "nothing:1", "everything:else"] {
            assert_eq!(Change::decode(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn listeners_hear_deliveries_until_dropped_and_reconnects_flush_everything() {
        let changes = Changes::new();
        let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
        let listener: Arc<dyn ChangeListener> = recorder.clone();
        changes.subscribe(&listener);

        changes.deliver(&Change::KeyAllowlist("key_1".into()));
        assert!(!changes.is_connected());
        changes.set_connected(true);
        changes.set_connected(true);
        changes.set_connected(false);
        assert_eq!(
            *recorder.0.lock().unwrap(),
            vec![Change::KeyAllowlist("key_1".into()), Change::Everything]
        );

        drop(listener);
        drop(recorder);
        changes.deliver(&Change::Everything);
    }
}
