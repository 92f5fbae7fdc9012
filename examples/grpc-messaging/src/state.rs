//! What the server shares: the clock, the stores behind the layers, the key
//! manager and the messages.

use std::sync::Arc;

use tollgate_auth::KeyManager;
use tollgate_core::idempotency::MemoryIdempotencyStore;
use tollgate_core::keys::MemoryKeyStore;
use tollgate_core::rate_limit::MemoryRateLimitStore;
use tollgate_core::SharedClock;

use crate::messages::MessageStore;

/// The shared state, in memory; clones are cheap and share everything.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    clock: SharedClock,
    key_store: MemoryKeyStore,
    keys: KeyManager,
    rate_limits: MemoryRateLimitStore,
    idempotency: MemoryIdempotencyStore,
    messages: MessageStore,
}

impl AppState {
    /// Empty in-memory stores on `clock` (a `ManualClock` in tests).
    pub fn new(clock: impl Into<SharedClock>) -> AppState {
        let clock = clock.into();
        let key_store = MemoryKeyStore::new();
        AppState(Arc::new(Inner {
            keys: KeyManager::new(key_store.clone()).clock(clock.clone()),
            key_store,
            rate_limits: MemoryRateLimitStore::new().with_clock(clock.clone()),
            idempotency: MemoryIdempotencyStore::new().with_clock(clock.clone()),
            messages: MessageStore::default(),
            clock,
        }))
    }

    /// The clock.
    pub fn clock(&self) -> &SharedClock {
        &self.0.clock
    }

    /// Creates, lists, rotates and revokes API keys.
    pub fn keys(&self) -> &KeyManager {
        &self.0.keys
    }

    /// The key store that authentication reads.
    pub fn key_store(&self) -> &MemoryKeyStore {
        &self.0.key_store
    }

    /// Per-key rate limits and daily quotas.
    pub fn rate_limits(&self) -> &MemoryRateLimitStore {
        &self.0.rate_limits
    }

    /// Idempotency records of `SendMessage` calls.
    pub fn idempotency(&self) -> &MemoryIdempotencyStore {
        &self.0.idempotency
    }

    /// The messages sent.
    pub fn messages(&self) -> &MessageStore {
        &self.0.messages
    }
}
