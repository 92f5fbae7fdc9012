//! Idempotent requests at rest: the [`IdempotencyStore`] trait every backend
//! implements, the [`IdempotencyKey`] a request is deduplicated under, and
//! the [`StoredResponse`] that a retry gets back instead of a second execution.
//!
//! The life of a key is three atomic operations:
//!
//! 1. [`begin`](IdempotencyStore::begin) claims the key for one execution
//!    (or reports that it is in flight, completed, or used with another request);
//! 2. [`complete`](IdempotencyStore::complete) stores the response under the claim;
//! 3. [`abort`](IdempotencyStore::abort) gives the claim up so a retry can run.
//!
//! A [`ClaimToken`] ties `complete` and `abort` to the claim that `begin` made,
//! so an instance whose claim expired cannot overwrite or release a newer one.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// The identity a request is deduplicated under: the client's key inside a
/// scope (normally the account and environment of the caller), so two
/// customers can use the same key without seeing each other's responses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    scope: String,
    key: String,
}

impl IdempotencyKey {
    /// The key `key` inside `scope`.
    pub fn new(scope: impl Into<String>, key: impl Into<String>) -> IdempotencyKey {
        IdempotencyKey {
            scope: scope.into(),
            key: key.into(),
        }
    }

    /// The scope, such as `account:acct_1:live`.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The client's key, such as a UUID.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// One string naming this key, for backends that key records by string:
    /// `<scope length>:<scope><key>`. The length prefix keeps it unambiguous
    /// whatever characters the scope and the key contain.
    pub fn storage_key(&self) -> String {
        format!("{}:{}{}", self.scope.len(), self.scope, self.key)
    }
}

/// The SHA-256 of what makes two requests "the same request" (method, path
/// and query, body). A key reused with another fingerprint is a client error.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Wraps a SHA-256 digest.
    pub const fn from_bytes(bytes: [u8; 32]) -> Fingerprint {
        Fingerprint(bytes)
    }

    /// The digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, for backends that store strings.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses [`Fingerprint::to_hex`]'s output.
    pub fn from_hex(text: &str) -> Option<Fingerprint> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Fingerprint(bytes))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight bytes tell fingerprints apart in logs; all 32 are noise.
        write!(f, "Fingerprint({}…)", hex::encode(&self.0[..8]))
    }
}

/// Proof of one claim on a key, returned by [`IdempotencyStore::begin`].
///
/// Unique among the claims a store hands out for the same key, so a stale
/// holder (whose lock expired and whose key was claimed again) is refused by
/// [`complete`](IdempotencyStore::complete) and [`abort`](IdempotencyStore::abort).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClaimToken(u128);

impl ClaimToken {
    /// A token from its numeric form (a counter, or 128 random bits).
    pub const fn from_u128(value: u128) -> ClaimToken {
        ClaimToken(value)
    }

    /// The numeric form, for backends that store it.
    pub const fn as_u128(self) -> u128 {
        self.0
    }
}

/// A response kept for replay: status, the headers worth replaying, body.
///
/// Serialisable with serde so networked backends can store it as one value.
/// `Debug` shows the header names and the body length only: responses can
/// hold secrets (a freshly created API key, say).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// The HTTP status code.
    pub status: u16,
    /// Header names (lower case) and raw values, in response order; a name
    /// may repeat.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole body.
    #[serde(with = "bytes_as_bytes")]
    pub body: Bytes,
}

impl StoredResponse {
    /// The bytes this response occupies in a store: body, header names and
    /// values (what a byte budget is charged for).
    pub fn stored_size(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(name, value)| name.len() + value.len()).sum();
        self.body.len() + headers
    }
}

impl fmt::Debug for StoredResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("StoredResponse")
            .field("status", &self.status)
            .field("headers", &names)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// What [`IdempotencyStore::begin`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeginOutcome {
    /// The key was free (never used, expired, or aborted): the caller now owns
    /// the one execution and must `complete` or `abort` with this token.
    Claimed(ClaimToken),
    /// Another request with the same key and fingerprint is executing.
    InProgress,
    /// The key's request already ran: replay this response.
    Completed(StoredResponse),
    /// The key is in flight or completed for a different request.
    FingerprintMismatch,
}

/// Where idempotency keys, their claims and their stored responses live.
/// Implemented in memory ([`crate::MemoryIdempotencyStore`]) and on Redis;
/// every implementation runs [`crate::conformance::idempotency_store`].
///
/// Each method is one atomic operation on the backend: two concurrent
/// `begin`s of a free key yield exactly one [`BeginOutcome::Claimed`].
///
/// An entry's life: `begin` creates an in-flight claim that lives for
/// `lock_ttl` (the backstop when its holder crashes); `complete` replaces it
/// with a response that lives for `ttl`; `abort` deletes it. An expired entry
/// is as good as absent.
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Looks the key up and, if it is free, claims it, in one step.
    ///
    /// A live entry with another fingerprint gives
    /// [`BeginOutcome::FingerprintMismatch`] (whether in flight or completed);
    /// with the same fingerprint it gives [`BeginOutcome::InProgress`] or
    /// [`BeginOutcome::Completed`]. Otherwise a claim expiring after
    /// `lock_ttl` is recorded with the fingerprint and
    /// [`BeginOutcome::Claimed`] returned.
    fn begin(
        &self,
        key: &IdempotencyKey,
        fingerprint: Fingerprint,
        lock_ttl: Duration,
    ) -> impl Future<Output = Result<BeginOutcome, StoreError>> + Send;

    /// Stores `response` for `ttl` in place of the claim `token`, if that
    /// claim still holds the key (live and not replaced). Returns whether it
    /// was stored; `false` means the claim was lost (expired, aborted, or the
    /// key claimed again) and nothing changed.
    fn complete(
        &self,
        key: &IdempotencyKey,
        token: ClaimToken,
        response: StoredResponse,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes the claim `token` so the next `begin` claims the key afresh.
    /// Returns whether a claim was deleted; a stale token, a completed entry
    /// or an unknown key are left alone (`false`).
    fn abort(&self, key: &IdempotencyKey, token: ClaimToken) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

impl<T: IdempotencyStore> IdempotencyStore for Arc<T> {
    fn begin(
        &self,
        key: &IdempotencyKey,
        fingerprint: Fingerprint,
        lock_ttl: Duration,
    ) -> impl Future<Output = Result<BeginOutcome, StoreError>> + Send {
        (**self).begin(key, fingerprint, lock_ttl)
    }

    fn complete(
        &self,
        key: &IdempotencyKey,
        token: ClaimToken,
        response: StoredResponse,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).complete(key, token, response, ttl)
    }

    fn abort(&self, key: &IdempotencyKey, token: ClaimToken) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).abort(key, token)
    }
}

// serde for `Bytes` without the `bytes/serde` feature: written as a byte
// string (compact in binary formats), read back from a byte string or a
// sequence of numbers (what JSON makes of it).
mod bytes_as_bytes {
    use std::fmt;

    use bytes::Bytes;
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::Serializer;

    pub(super) fn serialize<S: Serializer>(bytes: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        deserializer.deserialize_byte_buf(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Bytes;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Bytes, E> {
            Ok(Bytes::copy_from_slice(bytes))
        }

        fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Bytes, E> {
            Ok(Bytes::from(bytes))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
            let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
            while let Some(byte) = seq.next_element::<u8>()? {
                bytes.push(byte);
            }
            Ok(Bytes::from(bytes))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_keys_are_unambiguous() {
        let a = IdempotencyKey::new("a:b", "c");
        let b = IdempotencyKey::new("a", "b:c");
        assert_ne!(a.storage_key(), b.storage_key());
        assert_eq!(a.storage_key(), "3:a:bc");
        assert_eq!(b.storage_key(), "1:ab:c");
    }

    #[test]
    fn stored_responses_round_trip_through_json_and_hide_their_body() {
        let response = StoredResponse {
            status: 201,
            headers: vec![
                ("content-type".into(), b"application/json".to_vec()),
                ("x-raw".into(), vec![0x80, 0xff, b'a']),
            ],
            body: Bytes::from((0..=255u8).collect::<Vec<u8>>()),
        };
        let json = serde_json::to_vec(&response).unwrap();
        let back: StoredResponse = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, response);
        assert_eq!(response.stored_size(), 256 + 12 + 16 + 5 + 3);
        assert_eq!(
            format!("{response:?}"),
            r#"StoredResponse { status: 201, headers: ["content-type", "x-raw"], body_len: 256 }"#
        );
    }

    #[test]
    fn fingerprints_round_trip_hex_and_debug_briefly() {
        let fingerprint = Fingerprint::from_bytes([0xab; 32]);
        assert_eq!(Fingerprint::from_hex(&fingerprint.to_hex()), Some(fingerprint));
        assert_eq!(Fingerprint::from_hex("abc"), None);
        assert_eq!(format!("{fingerprint:?}"), "Fingerprint(abababababababab…)");
        assert_eq!(ClaimToken::from_u128(7).as_u128(), 7);
    }
}
