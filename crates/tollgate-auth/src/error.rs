//! [`KeyManagerError`]: why a key could not be created, rotated or revoked.

use tollgate_core::{Code, Rejection, StoreError};

/// Why a [`KeyManager`](crate::KeyManager) operation failed. Messages never
/// contain a key's value or hash.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyManagerError {
    /// No such key for this account (a key of another account is not found either).
    #[error("API key not found")]
    NotFound,
    /// The account already has the maximum number of active keys: every
    /// key that authenticates counts, keys retiring after a rotation
    /// included, so neither a new key nor a rotation fits until one is revoked.
    #[error("the account already has the maximum of {limit} active API keys")]
    KeyLimitReached {
        /// The configured maximum.
        limit: usize,
    },
    /// The requested key, or the plaintext given to import, is not acceptable.
    #[error("invalid API key: {0}")]
    InvalidKey(String),
    /// The key is already revoked.
    #[error("the API key is already revoked")]
    AlreadyRevoked,
    /// The key is retiring after a rotation: it works until its grace period
    /// ends, and is not rotated again (rotate its successor, or revoke it).
    #[error("the API key is already being replaced by a rotation")]
    Retiring,
    /// The key has expired, so it can no longer be rotated.
    #[error("the API key has expired")]
    Expired,
    /// A key with the same value (or id) is already registered.
    #[error("an API key with this value is already registered")]
    Duplicate,
    /// The operating system's random generator failed.
    #[error("the random generator failed: {0}")]
    Randomness(getrandom::Error),
    /// The key store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for KeyManagerError {
    fn from(error: StoreError) -> KeyManagerError {
        match error {
            StoreError::KeyLimitReached { limit } => KeyManagerError::KeyLimitReached { limit },
            StoreError::Conflict(_) => KeyManagerError::Duplicate,
            other => KeyManagerError::Store(other),
        }
    }
}

impl From<getrandom::Error> for KeyManagerError {
    fn from(error: getrandom::Error) -> KeyManagerError {
        KeyManagerError::Randomness(error)
    }
}

impl KeyManagerError {
    /// The response for a key-management API: 404 `NOT_FOUND`, 409
    /// `KEY_LIMIT_REACHED` (with a `limit` field), 400 `INVALID_KEY`, 409
    /// `KEY_REVOKED` / `KEY_RETIRING` / `KEY_EXPIRED` / `KEY_EXISTS`, 503 for a failing store,
    /// 500 `INTERNAL_ERROR` otherwise.
    pub fn to_rejection(&self) -> Rejection {
        match self {
            KeyManagerError::NotFound => Rejection::new(Code::NotFound, "API key not found."),
            KeyManagerError::KeyLimitReached { limit } => Rejection::new(
                Code::KeyLimitReached,
                format!(
                    "This account already has the maximum of {limit} active API keys. Revoke one to create another."
                ),
            )
            .with_field("limit", *limit),
            KeyManagerError::InvalidKey(reason) => {
                Rejection::new(Code::InvalidKey, format!("Invalid API key request: {reason}."))
            }
            KeyManagerError::AlreadyRevoked => Rejection::new(Code::KeyRevoked, "This API key is already revoked."),
            KeyManagerError::Retiring => Rejection::new(Code::KeyRetiring, Code::KeyRetiring.default_message()),
            KeyManagerError::Expired => Rejection::new(Code::KeyExpired, "This API key has expired."),
            KeyManagerError::Duplicate => {
                Rejection::new(Code::KeyExists, "An API key with this value is already registered.")
            }
            KeyManagerError::Store(error) if error.is_unavailable() => Rejection::store_unavailable(),
            KeyManagerError::Store(_) | KeyManagerError::Randomness(_) => {
                Rejection::new(Code::InternalError, "An internal error occurred.")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_answers_become_their_own_variants() {
        assert!(matches!(
            KeyManagerError::from(StoreError::KeyLimitReached { limit: 10 }),
            KeyManagerError::KeyLimitReached { limit: 10 }
        ));
        assert!(matches!(
            KeyManagerError::from(StoreError::Conflict("x".into())),
            KeyManagerError::Duplicate
        ));
        assert!(matches!(
            KeyManagerError::from(StoreError::Timeout),
            KeyManagerError::Store(StoreError::Timeout)
        ));
    }

    #[test]
    fn rejections_have_the_documented_statuses_and_codes() {
        let cases = [
            (KeyManagerError::NotFound, 404, "NOT_FOUND"),
            (KeyManagerError::KeyLimitReached { limit: 10 }, 409, "KEY_LIMIT_REACHED"),
            (KeyManagerError::InvalidKey("label too long".into()), 400, "INVALID_KEY"),
            (KeyManagerError::AlreadyRevoked, 409, "KEY_REVOKED"),
            (KeyManagerError::Retiring, 409, "KEY_RETIRING"),
            (KeyManagerError::Expired, 409, "KEY_EXPIRED"),
            (KeyManagerError::Duplicate, 409, "KEY_EXISTS"),
            (KeyManagerError::Store(StoreError::Timeout), 503, "SERVICE_UNAVAILABLE"),
            (
                KeyManagerError::Store(StoreError::Corrupt("bad row".into())),
                500,
                "INTERNAL_ERROR",
            ),
        ];
        for (error, status, code) in cases {
            let rejection = error.to_rejection();
            assert_eq!(rejection.status().as_u16(), status, "{error}");
            assert_eq!(rejection.code(), code, "{error}");
        }
    }

    #[test]
    fn the_limit_is_in_the_body() {
        let rejection = KeyManagerError::KeyLimitReached { limit: 10 }.to_rejection();
        assert_eq!(
            rejection.to_json(),
            r#"{"error":{"code":"KEY_LIMIT_REACHED","message":"This account already has the maximum of 10 active API keys. Revoke one to create another.","limit":10}}"#
        );
    }

    #[test]
    fn store_internals_stay_out_of_the_response() {
        let rejection = KeyManagerError::Store(StoreError::Corrupt("row 7 of keys".into())).to_rejection();
        assert!(!rejection.message().contains("row 7"));
    }
}
