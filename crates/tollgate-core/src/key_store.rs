//! API keys at rest: [`KeyRecord`], the [`KeyStore`] trait every backend
//! implements, and [`KeyHash`], the only form in which a key is stored.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use subtle::ConstantTimeEq;

use crate::error::StoreError;
use crate::principal::Principal;

/// The SHA-256 of an API key. Keys are looked up and stored by this hash,
/// never by their value. Equality is constant-time; `Debug` is redacted.
#[derive(Clone, Copy, Eq)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// Wraps a SHA-256 digest.
    pub const fn from_bytes(bytes: [u8; 32]) -> KeyHash {
        KeyHash(bytes)
    }

    /// The digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, for backends that key records by string.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses [`KeyHash::to_hex`]'s output.
    pub fn from_hex(text: &str) -> Option<KeyHash> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(KeyHash(bytes))
    }
}

impl PartialEq for KeyHash {
    fn eq(&self, other: &KeyHash) -> bool {
        // Folds the differences of the four words without branching on the
        // data, then compares the result through one `subtle` barrier: as
        // constant-time as a byte-wise `ct_eq`, without 32 barriers on every
        // lookup of the auth hot path.
        let mut difference = 0u64;
        for (ours, theirs) in self.0.chunks_exact(8).zip(other.0.chunks_exact(8)) {
            difference |= word(ours) ^ word(theirs);
        }
        difference.ct_eq(&0).into()
    }
}

fn word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    u64::from_ne_bytes(word)
}

// Written by hand because `PartialEq` is: equal hashes have equal bytes, so
// hashing the bytes agrees with it.
impl std::hash::Hash for KeyHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHash(<redacted>)")
    }
}

/// An API key as stored: who it belongs to and what it may do (its
/// [`Principal`]), its hash, and its lifecycle. Never its value.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    /// Account, key id, kind, scopes, plan, environment, key allowlist.
    pub principal: Principal,
    /// SHA-256 of the key.
    pub hash: KeyHash,
    /// A human label such as "Production Server".
    pub label: String,
    /// The first characters of the key, safe to show so users can tell keys apart.
    pub display_prefix: String,
    /// When the key was created.
    pub created_at: SystemTime,
    /// When the key stops working by itself, if ever.
    pub expires_at: Option<SystemTime>,
    /// When the key was (or will be, after a rotation's grace period) revoked.
    pub revoked_at: Option<SystemTime>,
    /// When the key was last used, at the store's recording resolution.
    pub last_used_at: Option<SystemTime>,
}

impl KeyRecord {
    /// The key's public id.
    pub fn id(&self) -> &str {
        self.principal.key_id()
    }

    /// The owning account's id.
    pub fn account_id(&self) -> &str {
        self.principal.account_id()
    }

    /// Whether the key authenticates requests at `now`: not revoked by then and not expired.
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.revoked_at.is_none_or(|at| at > now) && self.expires_at.is_none_or(|at| at > now)
    }

    /// Whether the key counts toward the account's key limit at `now`:
    /// valid and not scheduled for revocation (a key retiring after a
    /// rotation has already been replaced, so it does not count).
    pub fn counts_toward_limit(&self, now: SystemTime) -> bool {
        self.revoked_at.is_none() && self.is_valid_at(now)
    }
}

/// Where API keys live. Implemented in memory ([`crate::MemoryKeyStore`]),
/// on Redis and on SQL databases; every implementation runs the conformance
/// suite in [`crate::conformance`].
///
/// Each method is one atomic operation on the backend.
pub trait KeyStore: Send + Sync + 'static {
    /// The key with this hash, in whatever state (the caller judges validity).
    fn find_by_hash(&self, hash: &KeyHash) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send;

    /// The key with this id.
    fn find_by_id(&self, key_id: &str) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send;

    /// Stores a new key. With `max_active`, refuses with
    /// [`StoreError::KeyLimitReached`] when the account already has that many
    /// keys that [count toward the limit](KeyRecord::counts_toward_limit) at
    /// `now`; the check and the insert are one atomic step. A duplicate id or
    /// hash is [`StoreError::Conflict`].
    fn insert(
        &self,
        record: KeyRecord,
        max_active: Option<usize>,
        now: SystemTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every key of the account, revoked ones included, oldest first.
    fn list_by_account(&self, account_id: &str)
        -> impl Future<Output = Result<Vec<Arc<KeyRecord>>, StoreError>> + Send;

    /// Revokes the key at `at` (now, or later for a rotation's grace period).
    /// An earlier revocation time already set is kept. Returns the updated
    /// record, or `None` for an unknown id.
    fn revoke(
        &self,
        key_id: &str,
        at: SystemTime,
    ) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send;

    /// Records that the key was used at `at`; never moves the time backwards.
    fn record_last_use(&self, key_id: &str, at: SystemTime) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// [`find_by_hash`](KeyStore::find_by_hash) without waiting, when the
    /// store can answer in-process (a memory store, a cache hit); `None`
    /// sends the caller to `find_by_hash`. Same semantics and atomicity as
    /// `find_by_hash`.
    ///
    /// The auth layer tries it first on every request, so a store that can
    /// answer here spares each request a boxed future. A wrapper forwards
    /// it to the store it wraps.
    fn find_by_hash_now(&self, hash: &KeyHash) -> Option<Result<Option<Arc<KeyRecord>>, StoreError>> {
        let _ = hash;
        None
    }

    /// [`record_last_use`](KeyStore::record_last_use) without waiting, when
    /// the store can write in-process; `None` (nothing done that the async
    /// call would not redo) sends the caller to `record_last_use`. Same
    /// semantics as `record_last_use`.
    fn record_last_use_now(&self, key_id: &str, at: SystemTime) -> Option<Result<(), StoreError>> {
        let _ = (key_id, at);
        None
    }
}

impl<T: KeyStore> KeyStore for Arc<T> {
    fn find_by_hash(&self, hash: &KeyHash) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
        (**self).find_by_hash(hash)
    }

    fn find_by_id(&self, key_id: &str) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
        (**self).find_by_id(key_id)
    }

    fn insert(
        &self,
        record: KeyRecord,
        max_active: Option<usize>,
        now: SystemTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).insert(record, max_active, now)
    }

    fn list_by_account(
        &self,
        account_id: &str,
    ) -> impl Future<Output = Result<Vec<Arc<KeyRecord>>, StoreError>> + Send {
        (**self).list_by_account(account_id)
    }

    fn revoke(
        &self,
        key_id: &str,
        at: SystemTime,
    ) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
        (**self).revoke(key_id, at)
    }

    fn record_last_use(&self, key_id: &str, at: SystemTime) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).record_last_use(key_id, at)
    }

    fn find_by_hash_now(&self, hash: &KeyHash) -> Option<Result<Option<Arc<KeyRecord>>, StoreError>> {
        (**self).find_by_hash_now(hash)
    }

    fn record_last_use_now(&self, key_id: &str, at: SystemTime) -> Option<Result<(), StoreError>> {
        (**self).record_last_use_now(key_id, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_debug_is_redacted_and_hex_round_trips() {
        let hash = KeyHash::from_bytes([0xab; 32]);
        assert_eq!(format!("{hash:?}"), "KeyHash(<redacted>)");
        assert_eq!(KeyHash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(KeyHash::from_hex("zz"), None);
    }

    #[test]
    fn key_hashes_are_equal_only_when_every_byte_is() {
        let hash = KeyHash::from_bytes([7; 32]);
        assert_eq!(hash, KeyHash::from_bytes([7; 32]));
        for index in 0..32 {
            let mut bytes = [7; 32];
            bytes[index] ^= 0x80;
            assert_ne!(hash, KeyHash::from_bytes(bytes), "byte {index}");
        }
    }
}
