//! The API key format, modelled on GitHub's tokens so secret scanners can
//! recognise a leaked key offline:
//!
//! ```text
//! tg_live_ 4Fq1M0bXc9ZkTzYw2p8sLrVd3uNeHa Oq3kDf
//! ^prefix  ^30 base62 chars of OS randomness ^CRC32 of prefix+random, 6 base62 chars
//! ```
//!
//! The prefix says what kind of key it is (`tg_live_` production, `tg_test_`
//! sandbox, `tg_read_` read-only by default). 30 base62 characters carry
//! 178 bits from the operating system's generator. The checksum lets a
//! scanner, or [`BearerAuthLayer::require_checksum`](crate::BearerAuthLayer::require_checksum),
//! tell a real key from a typo or from garbage without a database lookup.
//! It is not a signature: anyone can compute it.
//!
//! ```
//! use tollgate_auth::{hash_key, KeyFormat};
//! use tollgate_core::KeyKind;
//!
//! let format = KeyFormat::default();
//! let key = format.generate(KeyKind::Sandbox);
//! let plaintext = key.expose_secret();
//! assert!(plaintext.starts_with("tg_test_"));
//! assert_eq!(plaintext.len(), 8 + 30 + 6);
//! assert_eq!(format.check(plaintext), Ok(KeyKind::Sandbox));
//! assert_eq!(key.hash(), hash_key(plaintext));
//! ```

use std::borrow::Cow;

use tollgate_core::KeyKind;

use crate::secret::ApiKeySecret;

/// Characters of randomness in a key.
pub const RANDOM_LEN: usize = 30;
/// Characters of the checksum suffix.
pub const CHECKSUM_LEN: usize = 6;
/// Random characters in a key id (`key_` + 16).
pub const KEY_ID_RANDOM_LEN: usize = 16;
/// Random characters of a key shown in its display prefix.
pub const DISPLAY_RANDOM_LEN: usize = 4;
/// The longest prefix [`KeyFormat::with_prefix`] accepts.
pub const MAX_PREFIX_LEN: usize = 32;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a string is not a well-formed key, or a prefix is not acceptable.
/// Never carries the key itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    /// The key starts with none of the configured prefixes.
    #[error("the key has none of the known prefixes")]
    UnknownPrefix,
    /// The part after the prefix is not 36 base62 characters.
    #[error("the key is not 36 base62 characters after its prefix")]
    Malformed,
    /// The checksum suffix does not match: a typo, a truncation, or not a key.
    #[error("the key's checksum does not match")]
    ChecksumMismatch,
    /// A prefix given to [`KeyFormat::with_prefix`] is empty, too long, or
    /// has characters other than ASCII letters, digits, `_` and `-`.
    #[error("invalid key prefix: {0}")]
    InvalidPrefix(&'static str),
}

/// Generates and checks API keys: one readable prefix per [`KeyKind`],
/// random base62 characters, a CRC32 checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFormat {
    production: Cow<'static, str>,
    sandbox: Cow<'static, str>,
    read_only: Cow<'static, str>,
}

impl Default for KeyFormat {
    fn default() -> KeyFormat {
        KeyFormat {
            production: Cow::Borrowed("tg_live_"),
            sandbox: Cow::Borrowed("tg_test_"),
            read_only: Cow::Borrowed("tg_read_"),
        }
    }
}

impl KeyFormat {
    /// The default prefixes: `tg_live_`, `tg_test_`, `tg_read_`.
    pub fn new() -> KeyFormat {
        KeyFormat::default()
    }

    /// Uses `prefix` for keys of `kind`, e.g. `sm_live_`. A prefix is 1 to
    /// 32 ASCII letters, digits, `_` or `-`; ending it with `_` keeps keys readable.
    pub fn with_prefix(
        mut self,
        kind: KeyKind,
        prefix: impl Into<Cow<'static, str>>,
    ) -> Result<KeyFormat, KeyFormatError> {
        let prefix = prefix.into();
        if prefix.is_empty() {
            return Err(KeyFormatError::InvalidPrefix("it is empty"));
        }
        if prefix.len() > MAX_PREFIX_LEN {
            return Err(KeyFormatError::InvalidPrefix("it is longer than 32 characters"));
        }
        if !prefix
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
        {
            return Err(KeyFormatError::InvalidPrefix(
                "only ASCII letters, digits, '_' and '-' are allowed",
            ));
        }
        match kind {
            KeyKind::Production => self.production = prefix,
            KeyKind::Sandbox => self.sandbox = prefix,
            KeyKind::ReadOnly => self.read_only = prefix,
        }
        Ok(self)
    }

    /// The prefix of keys of `kind`.
    pub fn prefix(&self, kind: KeyKind) -> &str {
        match kind {
            KeyKind::Production => &self.production,
            KeyKind::Sandbox => &self.sandbox,
            KeyKind::ReadOnly => &self.read_only,
        }
    }

    /// A new key of `kind`.
    ///
    /// # Panics
    ///
    /// If the operating system's random generator fails, which on supported
    /// platforms it does not once the system has booted. Use
    /// [`KeyFormat::try_generate`] to handle that case.
    pub fn generate(&self, kind: KeyKind) -> ApiKeySecret {
        self.try_generate(kind)
            .expect("the operating system's random generator failed")
    }

    /// A new key of `kind`, or the random generator's error.
    pub fn try_generate(&self, kind: KeyKind) -> Result<ApiKeySecret, getrandom::Error> {
        let prefix = self.prefix(kind);
        let mut key = String::with_capacity(prefix.len() + RANDOM_LEN + CHECKSUM_LEN);
        key.push_str(prefix);
        push_random_base62(&mut key, RANDOM_LEN)?;
        let checksum = encode_checksum(crc32fast::hash(key.as_bytes()));
        key.push_str(checksum_str(&checksum));
        Ok(ApiKeySecret::new(key))
    }

    /// The kind of a well-formed key, judged by its prefix, length,
    /// alphabet and checksum. Says nothing about whether the key exists.
    pub fn check(&self, key: &str) -> Result<KeyKind, KeyFormatError> {
        let mut error = KeyFormatError::UnknownPrefix;
        // Several kinds may be tried when one prefix starts another.
        for kind in KeyKind::ALL {
            let Some(rest) = key.strip_prefix(self.prefix(kind)) else {
                continue;
            };
            if rest.len() != RANDOM_LEN + CHECKSUM_LEN || !rest.bytes().all(is_base62) {
                error = KeyFormatError::Malformed;
                continue;
            }
            let (body, checksum) = key.split_at(key.len() - CHECKSUM_LEN);
            if checksum.as_bytes() == encode_checksum(crc32fast::hash(body.as_bytes())) {
                return Ok(kind);
            }
            error = KeyFormatError::ChecksumMismatch;
        }
        Err(error)
    }

    /// Whether `key` is well-formed (see [`KeyFormat::check`]).
    pub fn is_well_formed(&self, key: &str) -> bool {
        self.check(key).is_ok()
    }

    /// The part of a key safe to show so its owner can tell keys apart:
    /// the prefix and the first 4 random characters (`tg_live_4Fq1`). For a
    /// key of another format (an imported one), at most its first 4
    /// characters, and fewer for short keys, so little of it is revealed.
    pub fn display_prefix(&self, key: &str) -> String {
        let shown = match self.check(key) {
            Ok(kind) => self.prefix(kind).len() + DISPLAY_RANDOM_LEN,
            Err(_) => (key.len() / 4).min(DISPLAY_RANDOM_LEN),
        };
        // Keys are ASCII; `get` keeps a non-ASCII string from panicking.
        key.get(..shown).unwrap_or_default().to_owned()
    }
}

/// A new public key id, `key_` and 16 base62 characters.
///
/// # Panics
///
/// If the operating system's random generator fails (see [`KeyFormat::generate`]).
pub fn generate_key_id() -> String {
    try_generate_key_id().expect("the operating system's random generator failed")
}

/// A new public key id, or the random generator's error.
pub fn try_generate_key_id() -> Result<String, getrandom::Error> {
    let mut id = String::with_capacity(4 + KEY_ID_RANDOM_LEN);
    id.push_str("key_");
    push_random_base62(&mut id, KEY_ID_RANDOM_LEN)?;
    Ok(id)
}

fn is_base62(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
}

/// Appends `count` random base62 characters from the operating system's
/// generator, the alphabet of keys and key ids; for other public ids too.
///
/// Uniform by rejection sampling: a byte below 248 (4 × 62) maps to
/// `byte % 62` without bias; the rest are thrown away.
pub fn push_random_base62(out: &mut String, count: usize) -> Result<(), getrandom::Error> {
    let mut buffer = [0u8; 64];
    let mut pushed = 0;
    while pushed < count {
        getrandom::getrandom(&mut buffer)?;
        for byte in buffer.iter().filter(|byte| **byte < 248) {
            if pushed == count {
                break;
            }
            out.push(char::from(BASE62[usize::from(*byte % 62)]));
            pushed += 1;
        }
    }
    buffer.fill(0);
    Ok(())
}

// A CRC32 as 6 base62 digits, most significant first, zero-padded
// (62^6 > 2^32, so every value fits).
fn encode_checksum(mut value: u32) -> [u8; CHECKSUM_LEN] {
    let mut digits = [BASE62[0]; CHECKSUM_LEN];
    for digit in digits.iter_mut().rev() {
        *digit = BASE62[(value % 62) as usize];
        value /= 62;
    }
    digits
}

fn checksum_str(digits: &[u8; CHECKSUM_LEN]) -> &str {
    // Base62 digits are ASCII.
    std::str::from_utf8(digits).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flip(key: &str, index: usize) -> String {
        let mut bytes = key.as_bytes().to_vec();
        bytes[index] = if bytes[index] == b'a' { b'b' } else { b'a' };
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn generated_keys_pass_their_own_check() {
        let format = KeyFormat::default();
        for kind in KeyKind::ALL {
            for _ in 0..50 {
                let key = format.generate(kind);
                assert_eq!(format.check(key.expose_secret()), Ok(kind));
            }
        }
    }

    #[test]
    fn each_kind_has_its_prefix_and_the_randomness_length() {
        let format = KeyFormat::default();
        for (kind, prefix) in [
            (KeyKind::Production, "tg_live_"),
            (KeyKind::Sandbox, "tg_test_"),
            (KeyKind::ReadOnly, "tg_read_"),
        ] {
            let key = format.generate(kind);
            let key = key.expose_secret();
            assert!(key.starts_with(prefix), "{kind}");
            assert_eq!(key.len(), prefix.len() + RANDOM_LEN + CHECKSUM_LEN);
            assert!(key[prefix.len()..].bytes().all(|b| b.is_ascii_alphanumeric()));
        }
    }

    #[test]
    fn thirty_base62_characters_carry_at_least_128_bits() {
        assert!(RANDOM_LEN as f64 * 62f64.log2() >= 128.0);
    }

    #[test]
    fn generated_keys_differ() {
        let format = KeyFormat::default();
        let keys: std::collections::HashSet<String> = (0..1000)
            .map(|_| format.generate(KeyKind::Production).expose_secret().to_owned())
            .collect();
        assert_eq!(keys.len(), 1000);
    }

    #[test]
    fn random_characters_cover_the_whole_alphabet() {
        // 62 symbols over 6,000 draws: each is expected ~97 times, so a
        // missing one means a biased or broken encoder.
        let mut seen = [0usize; 128];
        let mut out = String::new();
        push_random_base62(&mut out, 6_000).unwrap();
        for byte in out.bytes() {
            seen[usize::from(byte)] += 1;
        }
        for symbol in BASE62 {
            assert!(seen[usize::from(*symbol)] > 30, "{} is rare", char::from(*symbol));
        }
    }

    #[test]
    fn any_flipped_character_fails_the_check() {
        let format = KeyFormat::default();
        let key = format.generate(KeyKind::Production);
        let key = key.expose_secret();
        for index in "tg_live_".len()..key.len() {
            let flipped = flip(key, index);
            assert_eq!(
                format.check(&flipped),
                Err(KeyFormatError::ChecksumMismatch),
                "index {index}"
            );
        }
    }

    #[test]
    fn malformed_keys_are_told_apart() {
        let format = KeyFormat::default();
        let key = format.generate(KeyKind::Production);
        let key = key.expose_secret();
        assert_eq!(format.check("ghp_abc"), Err(KeyFormatError::UnknownPrefix));
        assert_eq!(format.check(""), Err(KeyFormatError::UnknownPrefix));
        assert_eq!(format.check(&key[..key.len() - 1]), Err(KeyFormatError::Malformed));
        assert_eq!(format.check(&format!("{key}0")), Err(KeyFormatError::Malformed));
        let with_symbol = format!("{}!{}", &key[..10], &key[11..]);
        assert_eq!(format.check(&with_symbol), Err(KeyFormatError::Malformed));
        let other_kind = key.replacen("tg_live_", "tg_test_", 1);
        assert_eq!(format.check(&other_kind), Err(KeyFormatError::ChecksumMismatch));
    }

    #[test]
    fn prefixes_are_configurable_and_validated() {
        let format = KeyFormat::new().with_prefix(KeyKind::Production, "sm_live_").unwrap();
        let key = format.generate(KeyKind::Production);
        assert!(key.expose_secret().starts_with("sm_live_"));
        assert_eq!(format.check(key.expose_secret()), Ok(KeyKind::Production));
        assert_eq!(
            KeyFormat::default().check(key.expose_secret()),
            Err(KeyFormatError::UnknownPrefix)
        );
        for bad in ["", "has space", "é_", &"x".repeat(33)] {
            assert!(matches!(
                KeyFormat::new().with_prefix(KeyKind::Sandbox, bad.to_owned()),
                Err(KeyFormatError::InvalidPrefix(_))
            ));
        }
    }

    #[test]
    fn a_prefix_that_starts_another_still_checks() {
        let format = KeyFormat::new()
            .with_prefix(KeyKind::Production, "k_")
            .unwrap()
            .with_prefix(KeyKind::Sandbox, "k_t_")
            .unwrap();
        let sandbox = format.generate(KeyKind::Sandbox);
        assert_eq!(format.check(sandbox.expose_secret()), Ok(KeyKind::Sandbox));
        let production = format.generate(KeyKind::Production);
        assert_eq!(format.check(production.expose_secret()), Ok(KeyKind::Production));
    }

    #[test]
    fn checksums_are_six_zero_padded_base62_digits() {
        assert_eq!(&encode_checksum(0), b"000000");
        assert_eq!(&encode_checksum(61), b"00000z");
        assert_eq!(&encode_checksum(62), b"000010");
        assert_eq!(&encode_checksum(u32::MAX), b"4gfFC3");
    }

    #[test]
    fn key_ids_are_key_and_16_base62() {
        let id = generate_key_id();
        assert!(id.starts_with("key_"));
        assert_eq!(id.len(), 20);
        assert!(id[4..].bytes().all(is_base62));
        assert_ne!(id, generate_key_id());
    }

    #[test]
    fn display_prefixes_reveal_little() {
        let format = KeyFormat::default();
        let key = format.generate(KeyKind::ReadOnly);
        let key = key.expose_secret();
        assert_eq!(format.display_prefix(key), &key[..12]);
        assert!(format.display_prefix(key).starts_with("tg_read_"));
        assert_eq!(format.display_prefix("imported-bootstrap-key"), "impo");
        assert_eq!(format.display_prefix("short"), "s");
        assert_eq!(format.display_prefix("abc"), "");
    }
}
