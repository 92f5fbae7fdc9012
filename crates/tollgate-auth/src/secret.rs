//! [`ApiKeySecret`]: a plaintext API key that refuses to be printed, and
//! [`hash_key`]: the SHA-256 under which keys are stored and looked up.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tollgate_core::keys::KeyHash;

/// The SHA-256 of a key: the only form in which keys are stored and looked up.
pub fn hash_key(key: &str) -> KeyHash {
    hash_key_bytes(key.as_bytes())
}

pub(crate) fn hash_key_bytes(key: &[u8]) -> KeyHash {
    KeyHash::from_bytes(Sha256::digest(key).into())
}

/// A plaintext API key, as handed to its owner exactly once.
///
/// `Debug` and `Display` print `<redacted>`; read the value with
/// [`ApiKeySecret::expose_secret`]. Equality is constant-time. The bytes are
/// overwritten when the value is dropped (best effort: copies the program
/// made itself, such as a `String` it built from it, are its own).
///
/// ```
/// use tollgate_auth::{KeyFormat, ApiKeySecret};
/// use tollgate_core::KeyKind;
///
/// let secret = KeyFormat::default().generate(KeyKind::Production);
/// assert_eq!(format!("{secret:?}"), "ApiKeySecret(<redacted>)");
/// assert_eq!(secret.to_string(), "<redacted>");
/// assert!(secret.expose_secret().starts_with("tg_live_"));
/// ```
#[derive(Clone)]
pub struct ApiKeySecret {
    // Always visible ASCII, so it is valid UTF-8.
    bytes: Vec<u8>,
}

impl ApiKeySecret {
    /// Wraps a key's plaintext. The caller has checked it is visible ASCII.
    pub(crate) fn new(plaintext: String) -> ApiKeySecret {
        ApiKeySecret {
            bytes: plaintext.into_bytes(),
        }
    }

    /// The plaintext key. Show it to its owner once; store only its hash.
    pub fn expose_secret(&self) -> &str {
        std::str::from_utf8(&self.bytes).unwrap_or_default()
    }

    /// The SHA-256 under which the key is stored and looked up.
    pub fn hash(&self) -> KeyHash {
        hash_key(self.expose_secret())
    }
}

impl PartialEq for ApiKeySecret {
    fn eq(&self, other: &ApiKeySecret) -> bool {
        self.bytes.ct_eq(&other.bytes).into()
    }
}

impl Eq for ApiKeySecret {}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeySecret(<redacted>)")
    }
}

impl fmt::Display for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for ApiKeySecret {
    fn drop(&mut self) {
        self.bytes.iter_mut().for_each(|byte| *byte = 0);
        // Keeps the compiler from dropping the writes as dead stores.
        std::hint::black_box(&self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_key() {
        let secret = ApiKeySecret::new("tg_live_supersecretvalue".into());
        let debug = format!("{secret:?}");
        let display = format!("{secret}");
        let pretty = format!("{secret:#?}");
        for printed in [&debug, &display, &pretty] {
            assert!(!printed.contains("supersecret"), "{printed}");
        }
        assert_eq!(debug, "ApiKeySecret(<redacted>)");
        assert_eq!(display, "<redacted>");
    }

    #[test]
    fn expose_secret_and_hash_use_the_plaintext() {
        let secret = ApiKeySecret::new("tg_live_value".into());
        assert_eq!(secret.expose_secret(), "tg_live_value");
        assert_eq!(secret.hash(), hash_key("tg_live_value"));
    }

    #[test]
    fn hashes_are_sha256() {
        assert_eq!(
            hash_key("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn equality_compares_values() {
        let a = ApiKeySecret::new("same".into());
        assert_eq!(a, a.clone());
        assert_ne!(a, ApiKeySecret::new("other".into()));
        assert_ne!(a, ApiKeySecret::new("sam".into()));
    }
}
