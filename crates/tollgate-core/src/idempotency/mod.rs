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

#[cfg(any(test, feature = "conformance"))]
pub(crate) mod conformance;
mod memory;

pub use memory::*;

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::maybe_ready::StoreFuture;

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

/// A response kept for replay: status, the headers worth replaying, body,
/// and trailers (a gRPC response's status travels in them).
///
/// Serialisable with serde so networked backends can store it as one value.
/// `Debug` shows the header and trailer names and the body length only:
/// responses can hold secrets (a freshly created API key, say).
///
/// # Trailers
///
/// Trailers are kept in [`headers`](Self::headers) too, each name prefixed
/// with [`TRAILER_PREFIX`](Self::TRAILER_PREFIX) (`trailer:`). No header
/// name can contain a `:`, so the two never mix, and every backend that
/// stores the headers byte for byte stores the trailers with them: records
/// written before trailers existed, and backends written before them, need
/// no change. Read and write them with [`response_headers`](Self::response_headers),
/// [`trailers`](Self::trailers) and [`push_trailer`](Self::push_trailer).
///
/// ```
/// use bytes::Bytes;
/// use tollgate_core::idempotency::StoredResponse;
///
/// let mut response = StoredResponse {
///     status: 200,
///     headers: vec![("content-type".into(), b"application/grpc".to_vec())],
///     body: Bytes::from_static(b"\0\0\0\0\x02\x08\x01"),
/// };
/// response.push_trailer("grpc-status", b"0".to_vec());
/// assert_eq!(response.response_headers().collect::<Vec<_>>(), [("content-type", &b"application/grpc"[..])]);
/// assert_eq!(response.trailers().collect::<Vec<_>>(), [("grpc-status", &b"0"[..])]);
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// The HTTP status code.
    pub status: u16,
    /// Header names (lower case) and raw values, in response order; a name
    /// may repeat. Trailers follow, their names prefixed with
    /// [`TRAILER_PREFIX`](Self::TRAILER_PREFIX).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole body.
    #[serde(with = "bytes_as_bytes")]
    pub body: Bytes,
}

impl StoredResponse {
    /// What marks an entry of [`headers`](Self::headers) as a trailer. It
    /// ends with `:`, a character no header name contains.
    pub const TRAILER_PREFIX: &'static str = "trailer:";

    /// The bytes this response occupies in a store: body, header and
    /// trailer names and values (what a byte budget is charged for).
    pub fn stored_size(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(name, value)| name.len() + value.len()).sum();
        self.body.len() + headers
    }

    /// The headers, without the trailers, in response order.
    pub fn response_headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers
            .iter()
            .filter(|(name, _)| !name.starts_with(Self::TRAILER_PREFIX))
            .map(|(name, value)| (name.as_str(), value.as_slice()))
    }

    /// The trailers (names without the prefix), in response order.
    pub fn trailers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter().filter_map(|(name, value)| {
            let name = name.strip_prefix(Self::TRAILER_PREFIX)?;
            Some((name, value.as_slice()))
        })
    }

    /// Appends a trailer; `name` is the trailer's own name, such as `grpc-status`.
    pub fn push_trailer(&mut self, name: &str, value: Vec<u8>) {
        self.headers.push((format!("{}{name}", Self::TRAILER_PREFIX), value));
    }
}

impl fmt::Debug for StoredResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<&str> = self.response_headers().map(|(name, _)| name).collect();
        let trailers: Vec<&str> = self.trailers().map(|(name, _)| name).collect();
        f.debug_struct("StoredResponse")
            .field("status", &self.status)
            .field("headers", &headers)
            .field("trailers", &trailers)
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
/// Implemented in memory ([`MemoryIdempotencyStore`]) and on Redis;
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
    fn begin(&self, key: &IdempotencyKey, fingerprint: Fingerprint, lock_ttl: Duration) -> StoreFuture<BeginOutcome>;

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
    ) -> StoreFuture<bool>;

    /// Deletes the claim `token` so the next `begin` claims the key afresh.
    /// Returns whether a claim was deleted; a stale token, a completed entry
    /// or an unknown key are left alone (`false`).
    fn abort(&self, key: &IdempotencyKey, token: ClaimToken) -> StoreFuture<bool>;
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
            r#"StoredResponse { status: 201, headers: ["content-type", "x-raw"], trailers: [], body_len: 256 }"#
        );
        assert_eq!(response.trailers().count(), 0);
    }

    #[test]
    fn trailers_ride_with_the_headers_and_are_charged_and_named_apart() {
        let mut response = StoredResponse {
            status: 200,
            headers: vec![("content-type".into(), b"application/grpc".to_vec())],
            body: Bytes::from_static(b"\0\0\0\0\0"),
        };
        response.push_trailer("grpc-status", b"0".to_vec());
        response.push_trailer("x-bin", vec![0x80, 0xff]);
        assert_eq!(
            response.response_headers().collect::<Vec<_>>(),
            [("content-type", &b"application/grpc"[..])]
        );
        assert_eq!(
            response.trailers().collect::<Vec<_>>(),
            [("grpc-status", &b"0"[..]), ("x-bin", &[0x80, 0xff][..])]
        );
        // Every trailer byte is charged, its prefix included.
        assert_eq!(response.stored_size(), 5 + (12 + 16) + (8 + 11 + 1) + (8 + 5 + 2));
        assert_eq!(
            format!("{response:?}"),
            r#"StoredResponse { status: 200, headers: ["content-type"], trailers: ["grpc-status", "x-bin"], body_len: 5 }"#
        );
        let json = serde_json::to_vec(&response).unwrap();
        let back: StoredResponse = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, response);
        assert_eq!(back.trailers().count(), 2);
        // A record written before trailers existed reads as one without them.
        let old: StoredResponse =
            serde_json::from_str(r#"{"status":200,"headers":[["content-type",[97]]],"body":[104,105]}"#).unwrap();
        assert_eq!(old.trailers().count(), 0);
        assert_eq!(old.response_headers().count(), 1);
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
