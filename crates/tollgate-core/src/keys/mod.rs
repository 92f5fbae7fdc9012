//! API keys at rest: [`KeyRecord`], [`KeyHash`] (the only form in which a
//! key is stored), the two store traits — [`KeyStore`] for authentication,
//! [`KeyRegistry`] for management — the [`MemoryKeyStore`] and the
//! [`CachedKeyStore`] that puts a local cache in front of a shared one.

mod cached;
#[cfg(any(test, feature = "conformance"))]
pub(crate) mod conformance;
mod memory;
mod pending_uses;

pub use cached::{CachedKeyStore, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_MISSES, DEFAULT_TTL, MAX_NEGATIVE_TTL};
pub use memory::MemoryKeyStore;
pub use pending_uses::PendingUses;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use subtle::ConstantTimeEq;

use crate::maybe_ready::StoreFuture;
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
    /// exactly when it [authenticates](KeyRecord::is_valid_at) at `now`.
    /// A key in its grace period after a rotation still works, so it
    /// counts until it is revoked for real; revoked and expired keys do not.
    pub fn counts_toward_limit(&self, now: SystemTime) -> bool {
        self.is_valid_at(now)
    }
}

// `KeyHash` is already a SHA-256 digest: its first bytes are as uniform as
// any hash function's output, so the map uses them as they are instead of
// hashing them again with SipHash. Only keys the server generated are ever
// inserted, so nobody can fill one bucket on purpose.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BuildDigestHasher;

#[derive(Default)]
pub(crate) struct DigestHasher(u64);

impl std::hash::BuildHasher for BuildDigestHasher {
    type Hasher = DigestHasher;

    fn build_hasher(&self) -> DigestHasher {
        DigestHasher::default()
    }
}

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let len = bytes.len().min(8);
        word[..len].copy_from_slice(&bytes[..len]);
        self.0 = self.0.rotate_left(17) ^ u64::from_le_bytes(word);
    }
}

/// What authentication needs of a key store: the lookup by hash, and a
/// note of each key's last use. A read-only replica or a cache implements
/// this alone; [`KeyRegistry`] adds what managing keys needs.
///
/// Implemented in memory ([`MemoryKeyStore`]), by [`CachedKeyStore`] in
/// front of any registry, on Redis and on SQL databases; every
/// implementation runs [`crate::conformance::key_store`].
pub trait KeyStore: Send + Sync + 'static {
    /// The key with this hash, in whatever state (the caller judges validity).
    fn find_by_hash(&self, hash: &KeyHash) -> StoreFuture<Option<Arc<KeyRecord>>>;

    /// Records that the key was used at `at`; never moves the time backwards.
    fn record_last_use(&self, key_id: &str, at: SystemTime) -> StoreFuture<()>;
}

/// One key replaced by another: what [`KeyRegistry::rotate`] is asked to do.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// The id of the key to retire.
    pub key_id: String,
    /// The key that replaces it: a new id and hash, the rest carried over.
    pub successor: KeyRecord,
    /// When the retiring key stops working: now plus the grace period.
    pub retire_at: SystemTime,
    /// The time the rotation is judged at.
    pub now: SystemTime,
    /// The most keys the account may have that authenticate at `now`, or
    /// `None` for no limit. A rotation adds one working key (the retiring
    /// key works until `retire_at`, beside its successor), so with a limit
    /// it is refused with
    /// [`StoreError::KeyLimitReached`](crate::StoreError::KeyLimitReached)
    /// when the account already has that many keys
    /// [valid](KeyRecord::is_valid_at) at `now`, retiring ones included;
    /// the count and the insert of the successor are one atomic step.
    pub max_active: Option<usize>,
}

impl Rotation {
    /// Key `key_id` replaced by `successor`, retiring at `retire_at`, judged
    /// at `now`, with no limit on the account's keys (see [`Rotation::max_active`]).
    pub fn new(key_id: impl Into<String>, successor: KeyRecord, retire_at: SystemTime, now: SystemTime) -> Rotation {
        Rotation {
            key_id: key_id.into(),
            successor,
            retire_at,
            now,
            max_active: None,
        }
    }

    /// Limits the account to `limit` keys valid at `now` (`None`: no limit):
    /// at the limit, the rotation is refused with
    /// [`StoreError::KeyLimitReached`](crate::StoreError::KeyLimitReached)
    /// and changes nothing, until a key is revoked.
    pub fn max_active(mut self, limit: impl Into<Option<usize>>) -> Rotation {
        self.max_active = limit.into();
        self
    }
}

/// What a rotation found, when it did not rotate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateRefusal {
    /// No key has that id.
    Unknown,
    /// The key still authenticates but is already retiring (a rotation or
    /// revocation is scheduled): rotate its successor, or revoke it.
    Retiring,
    /// The key no longer authenticates (revoked or expired).
    Invalid,
}

/// What managing keys needs on top of [`KeyStore`]: lookups by id and by
/// account, and the writes, each one atomic step on the backend.
pub trait KeyRegistry: KeyStore {
    /// The key with this id.
    fn find_by_id(&self, key_id: &str) -> StoreFuture<Option<Arc<KeyRecord>>>;

    /// Stores a new key. With `max_active`, refuses with
    /// [`StoreError::KeyLimitReached`](crate::StoreError::KeyLimitReached) when the account already has that many
    /// keys that [count toward the limit](KeyRecord::counts_toward_limit) at
    /// `now` — every key that authenticates at `now`, keys in their grace
    /// period after a rotation included; the count and the insert are one
    /// atomic step. A duplicate id or hash is
    /// [`StoreError::Conflict`](crate::StoreError::Conflict).
    fn insert(&self, record: KeyRecord, max_active: Option<usize>, now: SystemTime) -> StoreFuture<()>;

    /// Every key of the account, revoked ones included, oldest first.
    fn list_by_account(&self, account_id: &str) -> StoreFuture<Vec<Arc<KeyRecord>>>;

    /// Revokes the key at `at` (now, or later for a rotation's grace period).
    /// An earlier revocation time already set is kept. Returns the updated
    /// record, or `None` for an unknown id.
    fn revoke(&self, key_id: &str, at: SystemTime) -> StoreFuture<Option<Arc<KeyRecord>>>;

    /// Replaces a key by its successor in one atomic step: if the key
    /// exists, authenticates at `rotation.now` and is not already retiring,
    /// stores the successor and schedules the key's revocation at
    /// `rotation.retire_at`, returning the retiring record; otherwise
    /// changes nothing and says why (a key that no longer authenticates is
    /// [`RotateRefusal::Invalid`], whether or not a revocation is also
    /// scheduled). With [`Rotation::max_active`], a rotation of a key that
    /// may rotate is refused with
    /// [`StoreError::KeyLimitReached`](crate::StoreError::KeyLimitReached)
    /// when the account already has that many keys valid at `rotation.now`
    /// (retiring ones included), and changes nothing; the count and the
    /// rotation are one atomic step. A duplicate successor id or hash is
    /// [`StoreError::Conflict`](crate::StoreError::Conflict).
    fn rotate(&self, rotation: Rotation) -> StoreFuture<Result<Arc<KeyRecord>, RotateRefusal>>;
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
