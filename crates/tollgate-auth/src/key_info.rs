//! What goes into [`KeyManager`](crate::KeyManager) ([`NewKey`]) and what
//! comes out ([`KeyInfo`], [`CreatedKey`]): never a stored key's value or hash.

use std::sync::Arc;
use std::time::SystemTime;

use ipnet::IpNet;
use tollgate_core::keys::KeyRecord;
use tollgate_core::{KeyKind, Scope};

use crate::error::KeyManagerError;
use crate::secret::ApiKeySecret;

/// The longest label accepted, in characters.
pub const MAX_LABEL_LEN: usize = 100;
/// The longest account id or plan name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// A key to create (or import): whose it is and what it may do.
#[derive(Debug, Clone, PartialEq)]
pub struct NewKey {
    /// The owning account.
    pub account_id: String,
    /// Production, sandbox or read-only.
    pub kind: KeyKind,
    /// A human label such as "Production Server" (may be empty).
    pub label: String,
    /// The plan name that rate limiting maps to limits (default `free`).
    pub plan: String,
    /// The granted scopes; `None` for the kind's defaults.
    pub scopes: Option<Vec<Scope>>,
    /// When the key stops working by itself, if ever.
    pub expires_at: Option<SystemTime>,
    /// The only networks the key may be used from, if restricted. Kept in
    /// the manager's [allowlist store](crate::KeyManager::allowlists), the
    /// one place a key's list lives, before the key can authenticate.
    pub ip_allowlist: Option<Vec<IpNet>>,
}

impl NewKey {
    /// A key of `kind` for `account_id`, unlabelled, plan `free`, default
    /// scopes, no expiry, no allowlist.
    pub fn new(account_id: impl Into<String>, kind: KeyKind) -> NewKey {
        NewKey {
            account_id: account_id.into(),
            kind,
            label: String::new(),
            plan: "free".into(),
            scopes: None,
            expires_at: None,
            ip_allowlist: None,
        }
    }

    /// Sets the label.
    pub fn label(mut self, label: impl Into<String>) -> NewKey {
        self.label = label.into();
        self
    }

    /// Sets the plan.
    pub fn plan(mut self, plan: impl Into<String>) -> NewKey {
        self.plan = plan.into();
        self
    }

    /// Grants these scopes instead of the kind's defaults.
    pub fn scopes(mut self, scopes: impl IntoIterator<Item = Scope>) -> NewKey {
        self.scopes = Some(scopes.into_iter().collect());
        self
    }

    /// Makes the key expire at `at`.
    pub fn expires_at(mut self, at: SystemTime) -> NewKey {
        self.expires_at = Some(at);
        self
    }

    /// Restricts the key to these networks (needs a manager with an
    /// [allowlist store](crate::KeyManager::allowlists)).
    pub fn ip_allowlist(mut self, networks: impl IntoIterator<Item = IpNet>) -> NewKey {
        self.ip_allowlist = Some(networks.into_iter().collect());
        self
    }

    pub(crate) fn validate(&self, now: SystemTime) -> Result<(), KeyManagerError> {
        let invalid = |reason: &str| Err(KeyManagerError::InvalidKey(reason.to_owned()));
        if self.account_id.is_empty() || self.account_id.len() > MAX_NAME_LEN || has_control(&self.account_id) {
            return invalid("the account id must be 1 to 128 printable characters");
        }
        if self.label.chars().count() > MAX_LABEL_LEN || has_control(&self.label) {
            return invalid("the label must be at most 100 printable characters");
        }
        if self.plan.is_empty() || self.plan.len() > MAX_NAME_LEN || has_control(&self.plan) {
            return invalid("the plan must be 1 to 128 printable characters");
        }
        if self.scopes.as_ref().is_some_and(Vec::is_empty) {
            return invalid("the scope list is empty (omit it for the key type's defaults)");
        }
        if self.expires_at.is_some_and(|at| at <= now) {
            return invalid("the expiry time has already passed");
        }
        if self.ip_allowlist.as_ref().is_some_and(Vec::is_empty) {
            return invalid("the IP allowlist is empty and would allow no address (omit it for no restriction)");
        }
        Ok(())
    }
}

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// A key's state at some moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Authenticates requests.
    Active,
    /// Replaced by a rotation; works until its grace period ends.
    Retiring,
    /// Revoked: no longer works.
    Revoked,
    /// Past its expiry: no longer works.
    Expired,
}

impl KeyStatus {
    /// `active`, `retiring`, `revoked` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Retiring => "retiring",
            KeyStatus::Revoked => "revoked",
            KeyStatus::Expired => "expired",
        }
    }
}

/// What may be shown about a key: everything but its value and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The public key id, `key_…`.
    pub id: String,
    /// The owning account.
    pub account_id: String,
    /// The human label.
    pub label: String,
    /// Production, sandbox or read-only.
    pub kind: KeyKind,
    /// The granted scopes.
    pub scopes: Vec<Scope>,
    /// The plan name.
    pub plan: String,
    /// The first characters of the key, such as `tg_live_4Fq1`.
    pub display_prefix: String,
    /// When the key was created.
    pub created_at: SystemTime,
    /// When it expires, if ever.
    pub expires_at: Option<SystemTime>,
    /// When it was (or, while retiring, will be) revoked.
    pub revoked_at: Option<SystemTime>,
    /// When it was last used, at the auth layer's recording resolution.
    pub last_used_at: Option<SystemTime>,
}

impl KeyInfo {
    /// The key's status at `now`.
    pub fn status_at(&self, now: SystemTime) -> KeyStatus {
        match (self.revoked_at, self.expires_at) {
            (Some(revoked), _) if revoked <= now => KeyStatus::Revoked,
            (_, Some(expires)) if expires <= now => KeyStatus::Expired,
            (Some(_), _) => KeyStatus::Retiring,
            (None, _) => KeyStatus::Active,
        }
    }
}

impl From<&KeyRecord> for KeyInfo {
    fn from(record: &KeyRecord) -> KeyInfo {
        let principal = &record.principal;
        KeyInfo {
            id: record.id().to_owned(),
            account_id: record.account_id().to_owned(),
            label: record.label.clone(),
            kind: principal.kind(),
            scopes: principal.scopes().to_vec(),
            plan: principal.plan().to_owned(),
            display_prefix: record.display_prefix.clone(),
            created_at: record.created_at,
            expires_at: record.expires_at,
            revoked_at: record.revoked_at,
            last_used_at: record.last_used_at,
        }
    }
}

impl From<Arc<KeyRecord>> for KeyInfo {
    fn from(record: Arc<KeyRecord>) -> KeyInfo {
        KeyInfo::from(&*record)
    }
}

/// A key just created: its public description and its value, which is
/// shown to its owner now and never again (only its hash is stored).
#[derive(Debug, Clone)]
pub struct CreatedKey {
    /// The key's public description.
    pub info: KeyInfo,
    /// The key itself (redacted in `Debug`).
    pub secret: ApiKeySecret,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn info(revoked_at: Option<u64>, expires_at: Option<u64>) -> KeyInfo {
        let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        KeyInfo {
            id: "key_1".into(),
            account_id: "acct".into(),
            label: String::new(),
            kind: KeyKind::Production,
            scopes: vec![Scope::ALL],
            plan: "free".into(),
            display_prefix: "tg_live_abcd".into(),
            created_at: at(0),
            expires_at: expires_at.map(at),
            revoked_at: revoked_at.map(at),
            last_used_at: None,
        }
    }

    #[test]
    fn statuses_follow_revocation_and_expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        assert_eq!(info(None, None).status_at(now), KeyStatus::Active);
        assert_eq!(info(None, Some(200)).status_at(now), KeyStatus::Active);
        assert_eq!(info(Some(200), None).status_at(now), KeyStatus::Retiring);
        assert_eq!(info(Some(100), None).status_at(now), KeyStatus::Revoked);
        assert_eq!(info(None, Some(50)).status_at(now), KeyStatus::Expired);
        assert_eq!(info(Some(50), Some(60)).status_at(now), KeyStatus::Revoked);
    }

    #[test]
    fn new_keys_are_validated() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let valid = NewKey::new("acct", KeyKind::Production).label("Production Server");
        assert!(valid.validate(now).is_ok());
        let invalid = [
            NewKey::new("", KeyKind::Production),
            NewKey::new("a\nb", KeyKind::Production),
            NewKey::new("acct", KeyKind::Production).label("x".repeat(101)),
            NewKey::new("acct", KeyKind::Production).label("tab\there"),
            NewKey::new("acct", KeyKind::Production).plan(""),
            NewKey::new("acct", KeyKind::Production).scopes([]),
            NewKey::new("acct", KeyKind::Production).expires_at(now),
        ];
        for new in invalid {
            assert!(
                matches!(new.validate(now), Err(KeyManagerError::InvalidKey(_))),
                "{new:?}"
            );
        }
        let label_of_100 = NewKey::new("acct", KeyKind::Production).label("é".repeat(100));
        assert!(label_of_100.validate(now).is_ok());
    }
}
