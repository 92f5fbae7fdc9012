//! Webhook signing secrets at rest: sealed, never plaintext.
//!
//! The server must sign with the secret, so it cannot keep only a hash (as
//! it does for API keys). Instead each secret is sealed with
//! ChaCha20-Poly1305 under a 32-byte *secrets key* that never enters the
//! database: a dump, a backup or a read-only SQL injection reveals no
//! signing secret, and a sealed value moved to another account's row fails
//! to open (the account id is authenticated with it). Whoever holds both
//! the database and the secrets key holds the secrets; keep the key apart
//! (`SECRETS_KEY`, or a file readable only by the server).

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

const NONCE_LEN: usize = 12;

/// Seals and opens secrets under one key. `Debug` never shows the key.
#[derive(Clone)]
pub struct SecretSealer {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSealer(<redacted>)")
    }
}

impl SecretSealer {
    /// A sealer under `key`.
    pub fn new(key: [u8; 32]) -> SecretSealer {
        SecretSealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// A sealer under a key given as base64 (`SECRETS_KEY`); the error never shows it.
    pub fn from_base64(text: &str) -> Result<SecretSealer, String> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| "SECRETS_KEY is not base64".to_owned())?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "SECRETS_KEY must be 32 bytes, base64-encoded (44 characters)".to_owned())?;
        Ok(SecretSealer::new(key))
    }

    /// The key in `path` (base64), created with a fresh random key readable
    /// only by its owner when missing: a single node's default, beside its database.
    pub fn from_key_file(path: &Path) -> Result<SecretSealer, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => SecretSealer::from_base64(&text).map_err(|error| format!("{}: {error}", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = ChaCha20Poly1305::generate_key(&mut OsRng);
                write_private(path, &STANDARD.encode(key))
                    .map_err(|error| format!("cannot create the secrets key {}: {error}", path.display()))?;
                Ok(SecretSealer::new(key.into()))
            }
            Err(error) => Err(format!("cannot read the secrets key {}: {error}", path.display())),
        }
    }

    /// Seals `secret`, bound to `context` (the account id): base64 of nonce and ciphertext.
    pub fn seal(&self, secret: &str, context: &str) -> String {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .expect("ChaCha20-Poly1305 seals any message this small");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        STANDARD.encode(out)
    }

    /// Opens what [`seal`](Self::seal) made for the same `context`; `None`
    /// when it was sealed under another key or for another context, or altered.
    pub fn open(&self, sealed: &str, context: &str) -> Option<String> {
        let bytes = STANDARD.decode(sealed).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_account() {
        let sealer = SecretSealer::new([7; 32]);
        let sealed = sealer.seal("whsec_topsecret", "acct_a");
        assert!(!sealed.contains("topsecret"));
        assert_ne!(
            sealed,
            sealer.seal("whsec_topsecret", "acct_a"),
            "a fresh nonce each time"
        );
        assert_eq!(sealer.open(&sealed, "acct_a").as_deref(), Some("whsec_topsecret"));
        assert_eq!(sealer.open(&sealed, "acct_b"), None);
        assert_eq!(SecretSealer::new([8; 32]).open(&sealed, "acct_a"), None);
        assert_eq!(sealer.open("AAAA", "acct_a"), None);
        assert_eq!(format!("{sealer:?}"), "SecretSealer(<redacted>)");
    }

    #[test]
    fn a_key_file_is_created_once_then_reused() {
        let path = std::env::temp_dir().join(format!("messaging-api-sealer-{}.key", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let first = SecretSealer::from_key_file(&path).unwrap();
        let sealed = first.seal("whsec_x", "acct");
        let again = SecretSealer::from_key_file(&path).unwrap();
        assert_eq!(again.open(&sealed, "acct").as_deref(), Some("whsec_x"));
        std::fs::remove_file(&path).unwrap();
        assert!(SecretSealer::from_base64("c2hvcnQ=").unwrap_err().contains("32 bytes"));
    }
}
