//! [`KeyManager`]: the seed API's key lifecycle — generate (the value shown
//! once), list, revoke, rotate with a grace period — over any
//! [`KeyRegistry`], with the per-account limit of active keys (10 by
//! default) and each rotation enforced by the store atomically.
//!
//! The limit counts every key that authenticates, keys in their grace
//! period after a rotation included: a rotation adds a working key until
//! the old one retires, so at the limit it is refused with
//! [`KeyManagerError::KeyLimitReached`] until a key is revoked.
//!
//! ```
//! use std::time::Duration;
//! use tollgate_auth::{KeyManager, KeyManagerError, NewKey};
//! use tollgate_core::keys::MemoryKeyStore;
//! use tollgate_core::KeyKind;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), KeyManagerError> {
//! let keys = KeyManager::new(MemoryKeyStore::new()).max_active_keys(2);
//! let first = keys.create(NewKey::new("acct_1", KeyKind::Production).label("Server")).await?;
//! let dashboards = keys.create(NewKey::new("acct_1", KeyKind::ReadOnly).label("Dashboards")).await?;
//! assert!(matches!(
//!     keys.create(NewKey::new("acct_1", KeyKind::Sandbox)).await,
//!     Err(KeyManagerError::KeyLimitReached { limit: 2 })
//! ));
//!
//! // A rotation keeps the old key working for an hour more, so it needs room too.
//! assert!(matches!(
//!     keys.rotate("acct_1", &first.info.id, Duration::from_secs(3600)).await,
//!     Err(KeyManagerError::KeyLimitReached { limit: 2 })
//! ));
//! keys.revoke("acct_1", &dashboards.info.id).await?;
//! let second = keys.rotate("acct_1", &first.info.id, Duration::from_secs(3600)).await?;
//! assert_ne!(second.secret, first.secret);
//! assert_eq!(keys.list("acct_1").await?.len(), 3);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tollgate_core::allowlist::{AllowlistStore, IpSet};
use tollgate_core::keys::{KeyRecord, KeyRegistry, RotateRefusal, Rotation};
use tollgate_core::{Principal, SharedClock};

use crate::error::KeyManagerError;
use crate::key_format::{try_generate_key_id, KeyFormat};
use crate::key_info::{CreatedKey, KeyInfo, NewKey};
use crate::parse::DEFAULT_MAX_TOKEN_LEN;
use crate::secret::{hash_key, ApiKeySecret};

/// The seed API's limit of active keys per account.
pub const DEFAULT_MAX_ACTIVE_KEYS: usize = 10;

// Imported keys shorter than this are accepted but logged: they are guessable.
const SHORT_IMPORTED_KEY: usize = 20;

/// Creates, lists, rotates and revokes API keys. Clones share the store.
#[derive(Clone)]
pub struct KeyManager {
    store: Arc<dyn KeyRegistry>,
    allowlists: Option<Arc<dyn AllowlistStore>>,
    format: KeyFormat,
    clock: SharedClock,
    max_active_keys: Option<usize>,
    max_key_len: usize,
}

impl fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyManager")
            .field("format", &self.format)
            .field("max_active_keys", &self.max_active_keys)
            .field("max_key_len", &self.max_key_len)
            .field("allowlists", &self.allowlists.is_some())
            .finish_non_exhaustive()
    }
}

impl KeyManager {
    /// A manager over `store`: default key format, system clock, at most 10
    /// active keys per account, imported keys up to 256 characters.
    pub fn new(store: impl KeyRegistry) -> KeyManager {
        KeyManager::from_shared(Arc::new(store))
    }

    /// Like [`KeyManager::new`], for a store already shared.
    pub fn from_shared(store: Arc<dyn KeyRegistry>) -> KeyManager {
        KeyManager {
            store,
            allowlists: None,
            format: KeyFormat::default(),
            clock: SharedClock::default(),
            max_active_keys: Some(DEFAULT_MAX_ACTIVE_KEYS),
            max_key_len: DEFAULT_MAX_TOKEN_LEN,
        }
    }

    /// The store holding per-key IP lists, the one place a key's list
    /// lives: [`create`](KeyManager::create) and [`import`](KeyManager::import)
    /// write a [`NewKey::ip_allowlist`] there, and rotation copies the
    /// retiring key's list to its successor, each before the key can
    /// authenticate. Without it, a key cannot be given a list here.
    pub fn allowlists(mut self, allowlists: Arc<dyn AllowlistStore>) -> Self {
        self.allowlists = Some(allowlists);
        self
    }

    /// The format of generated keys.
    pub fn format(mut self, format: KeyFormat) -> Self {
        self.format = format;
        self
    }

    /// The clock for creation, expiry, revocation and grace periods.
    pub fn clock(mut self, clock: impl Into<SharedClock>) -> Self {
        self.clock = clock.into();
        self
    }

    /// The most active keys an account may have; `None` for no limit. Every
    /// key that authenticates counts, keys retiring after a rotation
    /// included; the limit applies to [`create`](KeyManager::create),
    /// [`import`](KeyManager::import) and [`rotate`](KeyManager::rotate).
    pub fn max_active_keys(mut self, limit: impl Into<Option<usize>>) -> Self {
        self.max_active_keys = limit.into();
        self
    }

    /// The longest key [`KeyManager::import`] accepts; keep it no longer
    /// than the auth layer's `max_token_len`.
    pub fn max_key_len(mut self, max: usize) -> Self {
        self.max_key_len = max;
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn KeyRegistry> {
        &self.store
    }

    /// Generates a key. The returned secret is the only copy of its value.
    pub async fn create(&self, new: NewKey) -> Result<CreatedKey, KeyManagerError> {
        let now = self.clock.now();
        new.validate(now)?;
        let secret = self.format.try_generate(new.kind)?;
        let record = self.record(&new, &secret, now)?;
        self.insert(record.clone(), &new, now).await?;
        Ok(CreatedKey {
            info: KeyInfo::from(&record),
            secret,
        })
    }

    /// Registers a key whose value was chosen elsewhere, such as a bootstrap
    /// key from an environment variable. It must be 1 to `max_key_len`
    /// visible ASCII characters; one in this manager's format must carry the
    /// prefix of `new.kind`. Registering the same value twice is
    /// [`KeyManagerError::Duplicate`].
    pub async fn import(&self, new: NewKey, plaintext: &str) -> Result<KeyInfo, KeyManagerError> {
        let now = self.clock.now();
        new.validate(now)?;
        if plaintext.is_empty() {
            return Err(KeyManagerError::InvalidKey("the key is empty".into()));
        }
        if plaintext.len() > self.max_key_len {
            return Err(KeyManagerError::InvalidKey(format!(
                "the key is longer than {} characters",
                self.max_key_len
            )));
        }
        if !plaintext.bytes().all(|byte| matches!(byte, 0x21..=0x7e)) {
            return Err(KeyManagerError::InvalidKey(
                "the key may only contain visible ASCII characters".into(),
            ));
        }
        if let Ok(kind) = self.format.check(plaintext) {
            if kind != new.kind {
                return Err(KeyManagerError::InvalidKey(format!(
                    "the key's prefix marks it as a {kind} key, not {}",
                    new.kind
                )));
            }
        }
        if plaintext.len() < SHORT_IMPORTED_KEY {
            tracing::warn!(
                account_id = %new.account_id,
                "importing an API key shorter than {SHORT_IMPORTED_KEY} characters; it may be guessable"
            );
        }
        let secret = ApiKeySecret::new(plaintext.to_owned());
        let record = self.record(&new, &secret, now)?;
        self.insert(record.clone(), &new, now).await?;
        Ok(KeyInfo::from(&record))
    }

    /// Every key of the account, revoked ones included, oldest first.
    pub async fn list(&self, account_id: &str) -> Result<Vec<KeyInfo>, KeyManagerError> {
        let records = self.store.list_by_account(account_id).await?;
        Ok(records.into_iter().map(KeyInfo::from).collect())
    }

    /// One key of the account.
    pub async fn get(&self, account_id: &str, key_id: &str) -> Result<KeyInfo, KeyManagerError> {
        self.owned(account_id, key_id).await.map(KeyInfo::from)
    }

    /// Revokes the key now: its very next request is refused.
    /// A key already revoked is [`KeyManagerError::AlreadyRevoked`]; a key
    /// retiring after a rotation is revoked at once.
    pub async fn revoke(&self, account_id: &str, key_id: &str) -> Result<KeyInfo, KeyManagerError> {
        let now = self.clock.now();
        let record = self.owned(account_id, key_id).await?;
        if record.revoked_at.is_some_and(|at| at <= now) {
            return Err(KeyManagerError::AlreadyRevoked);
        }
        let revoked = self.store.revoke(key_id, now).await?.ok_or(KeyManagerError::NotFound)?;
        Ok(KeyInfo::from(revoked))
    }

    /// Replaces a key with a new one of the same kind, label, plan, scopes,
    /// allowlist and expiry, in one atomic step of the store: the new key is
    /// stored and the old key is set to be revoked once `grace` has passed,
    /// so clients can switch over while both work. Both count toward the
    /// limit meanwhile, so an account already at its limit of working keys
    /// is refused with [`KeyManagerError::KeyLimitReached`] (nothing
    /// changes) until it revokes a key. A key already retiring after a
    /// rotation is [`KeyManagerError::Retiring`] (rotate its successor, or
    /// revoke it), a key revoked [`KeyManagerError::AlreadyRevoked`], an
    /// expired one [`KeyManagerError::Expired`].
    ///
    /// With an [`allowlists`](KeyManager::allowlists) store, the old key's
    /// IP list is copied to the successor first, so the successor never
    /// works from an address the old key could not; if that copy fails, the
    /// rotation does not happen ([`KeyManagerError::Store`]).
    pub async fn rotate(&self, account_id: &str, key_id: &str, grace: Duration) -> Result<CreatedKey, KeyManagerError> {
        let now = self.clock.now();
        let retire_at = now
            .checked_add(grace)
            .ok_or_else(|| KeyManagerError::InvalidKey("the grace period is too long".into()))?;
        let old = self.owned(account_id, key_id).await?;
        let secret = self.format.try_generate(old.principal.kind())?;
        let successor_id = try_generate_key_id()?;
        let record = KeyRecord {
            principal: successor(&old.principal, successor_id.clone()),
            hash: secret.hash(),
            label: old.label.clone(),
            display_prefix: self.format.display_prefix(secret.expose_secret()),
            created_at: now,
            expires_at: old.expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        // The store counts the account's working keys, retiring ones
        // included, and stores the successor in the same atomic step, so
        // rotating each successor at once cannot grow the account past it.
        let rotation = Rotation::new(key_id, record.clone(), retire_at, now).max_active(self.max_active_keys);
        // The successor cannot authenticate before the store's rotation
        // inserts it, so its list is in place before it can be used.
        let list = match &self.allowlists {
            Some(allowlists) => allowlists.key_allowlist(key_id).await.map_err(KeyManagerError::Store)?,
            None => None,
        };
        let staged = self.stage_allowlist(&successor_id, list.as_deref()).await?;
        let rotated = self.store.rotate(rotation).await;
        if staged && !matches!(rotated, Ok(Ok(_))) {
            self.clear_allowlist(&successor_id).await;
        }
        match rotated? {
            Ok(_) => Ok(CreatedKey {
                info: KeyInfo::from(&record),
                secret,
            }),
            Err(RotateRefusal::Unknown) => Err(KeyManagerError::NotFound),
            Err(RotateRefusal::Retiring) => Err(KeyManagerError::Retiring),
            // Expiry never changes, so the record read above tells an expired
            // key from one revoked since (or before).
            Err(RotateRefusal::Invalid) => {
                let revoked = old.revoked_at.is_some_and(|at| at <= now);
                let expired = old.expires_at.is_some_and(|at| at <= now);
                if expired && !revoked {
                    Err(KeyManagerError::Expired)
                } else {
                    Err(KeyManagerError::AlreadyRevoked)
                }
            }
        }
    }

    // Stores a new key under the limit, its IP list (if any) first, so the
    // key never authenticates without it.
    async fn insert(&self, record: KeyRecord, new: &NewKey, now: SystemTime) -> Result<(), KeyManagerError> {
        let list = new
            .ip_allowlist
            .as_ref()
            .map(|networks| IpSet::new(networks.iter().copied()));
        let staged = self.stage_allowlist(record.id(), list.as_ref()).await?;
        let key_id = record.id().to_owned();
        let inserted = self.store.insert(record, self.max_active_keys, now).await;
        if staged && inserted.is_err() {
            self.clear_allowlist(&key_id).await;
        }
        Ok(inserted?)
    }

    // Writes the IP list of a key that is not stored yet; returns whether
    // there was one. A list with no allowlist store to keep it is refused:
    // the key would otherwise work from anywhere.
    async fn stage_allowlist(&self, key_id: &str, list: Option<&IpSet>) -> Result<bool, KeyManagerError> {
        let Some(list) = list else {
            return Ok(false);
        };
        let Some(allowlists) = &self.allowlists else {
            return Err(KeyManagerError::InvalidKey(
                "an IP allowlist needs a key manager with an allowlist store".into(),
            ));
        };
        allowlists
            .set_key_allowlist(key_id, list.clone())
            .await
            .map_err(KeyManagerError::Store)?;
        Ok(true)
    }

    // Removes the list written for a key that was never stored.
    async fn clear_allowlist(&self, key_id: &str) {
        let Some(allowlists) = &self.allowlists else {
            return;
        };
        if let Err(error) = allowlists.clear_key_allowlist(key_id).await {
            tracing::warn!(
                %key_id,
                %error,
                "could not remove the IP allowlist written for a key that was not stored"
            );
        }
    }

    // The key, if it exists and belongs to the account; a key of another
    // account is reported exactly like a missing one.
    async fn owned(&self, account_id: &str, key_id: &str) -> Result<Arc<KeyRecord>, KeyManagerError> {
        match self.store.find_by_id(key_id).await? {
            Some(record) if record.account_id() == account_id => Ok(record),
            _ => Err(KeyManagerError::NotFound),
        }
    }

    fn record(&self, new: &NewKey, secret: &ApiKeySecret, now: SystemTime) -> Result<KeyRecord, KeyManagerError> {
        let mut principal =
            Principal::new(new.account_id.as_str(), try_generate_key_id()?, new.kind).with_plan(new.plan.as_str());
        if let Some(scopes) = &new.scopes {
            principal = principal.with_scopes(scopes.iter().cloned());
        }
        Ok(KeyRecord {
            principal,
            hash: hash_key(secret.expose_secret()),
            label: new.label.clone(),
            display_prefix: self.format.display_prefix(secret.expose_secret()),
            created_at: now,
            expires_at: new.expires_at,
            revoked_at: None,
            last_used_at: None,
        })
    }
}

// The principal of a rotated key's replacement: everything but the key id.
fn successor(old: &Principal, key_id: String) -> Principal {
    Principal::new(old.account_id(), key_id, old.kind())
        .with_scopes(old.scopes().iter().cloned())
        .with_plan(old.plan())
        .with_environment(old.environment())
}

// Long, so in `manager/tests.rs`.
#[cfg(test)]
mod tests;
