//! Keyed HMAC-SHA256 states for one or several secrets (rotation).

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::SecretError;

/// An HMAC-SHA256 tag.
pub(crate) type Tag = [u8; 32];

type HmacSha256 = Hmac<Sha256>;

// With several secrets the body is fed in slices small enough to stay in
// cache while every key's state consumes them.
const CHUNK: usize = 32 * 1024;

/// One keyed HMAC state per secret, the first being the primary secret.
/// Keying happens once; each message starts from a clone of the state.
#[derive(Clone)]
pub(crate) struct Keys(Vec<HmacSha256>);

impl Keys {
    /// One state per HMAC key (each derived from a secret by its
    /// [`Scheme`](crate::Scheme)), in order; at least one.
    pub(crate) fn new(keys: Vec<Vec<u8>>) -> Result<Keys, SecretError> {
        if keys.is_empty() {
            return Err(SecretError::NoSecret);
        }
        let keys = keys
            .iter()
            // HMAC takes keys of any length, so this cannot fail.
            .map(|key| HmacSha256::new_from_slice(key).map_err(|_| SecretError::Empty))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Keys(keys))
    }

    /// The tag of the concatenation of `parts` under each key, in order.
    pub(crate) fn tags(&self, parts: &[&[u8]]) -> Vec<Tag> {
        let mut macs = self.0.clone();
        for part in parts {
            if let [mac] = macs.as_mut_slice() {
                mac.update(part);
                continue;
            }
            for chunk in part.chunks(CHUNK) {
                for mac in &mut macs {
                    mac.update(chunk);
                }
            }
        }
        macs.into_iter().map(|mac| mac.finalize().into_bytes().into()).collect()
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keys(<{} redacted>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_match_a_plain_hmac_for_every_key_and_any_split() {
        let body = vec![7u8; 3 * CHUNK + 5];
        let keys = Keys::new(vec![b"one".to_vec(), b"two".to_vec()]).unwrap();
        let tags = keys.tags(&[b"prefix.", &body]);
        for (tag, secret) in tags.iter().zip(["one", "two"]) {
            let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(b"prefix.");
            mac.update(&body);
            mac.verify_slice(tag).expect("same tag");
        }
        let mut joined = b"prefix.".to_vec();
        joined.extend_from_slice(&body);
        assert_eq!(keys.tags(&[&joined]), tags, "the split does not matter");
    }

    #[test]
    fn at_least_one_secret_is_required_and_debug_is_redacted() {
        assert_eq!(Keys::new(Vec::new()).unwrap_err(), SecretError::NoSecret);
        let keys = Keys::new(vec![b"hunter2".to_vec()]).unwrap();
        assert_eq!(format!("{keys:?}"), "Keys(<1 redacted>)");
    }
}
