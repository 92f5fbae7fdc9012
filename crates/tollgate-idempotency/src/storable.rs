//! [`Storable`]: a handler's say in what the layer stores for its response.

use std::fmt;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

/// A response extension by which a handler decides what the idempotency
/// layer keeps of its response, for responses that must not be stored as
/// they are (one that shows a secret once: a created or rotated API key,
/// a webhook signing secret).
///
/// Without it, a deduplicated response is stored and replayed as it is.
/// The layer removes the extension from every response it hands on.
///
/// - [`Storable::Skip`]: nothing is stored and the claim is released, so a
///   retry with the same key **runs the handler again** (a second key is
///   created). Use it where running twice is harmless.
/// - [`Storable::Replace`]: the client of this attempt gets the real
///   response, streamed as it came; the store keeps the
///   [`StoredReplacement`] instead, and every retry with the same key is
///   answered with it, byte for byte, without running the handler.
#[derive(Clone, Debug)]
pub enum Storable {
    /// Store nothing; release the claim so a retry runs again.
    Skip,
    /// Store this response instead of the real one.
    Replace(StoredReplacement),
}

/// The response stored (and replayed to retries) in place of the real one:
/// status, headers and body. Hop-by-hop headers and `Set-Cookie` are
/// dropped as for any stored response.
#[derive(Clone)]
pub struct StoredReplacement {
    /// The status retries get.
    pub status: StatusCode,
    /// The headers retries get (besides `Idempotent-Replayed: true`).
    pub headers: HeaderMap,
    /// The body retries get.
    pub body: Bytes,
}

impl StoredReplacement {
    /// A replacement with this status and body and no headers.
    pub fn new(status: StatusCode, body: impl Into<Bytes>) -> StoredReplacement {
        StoredReplacement {
            status,
            headers: HeaderMap::new(),
            body: body.into(),
        }
    }

    /// A replacement with these headers.
    pub fn with_headers(mut self, headers: HeaderMap) -> StoredReplacement {
        self.headers = headers;
        self
    }
}

impl fmt::Debug for StoredReplacement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredReplacement")
            .field("status", &self.status)
            .field("headers", &self.headers.len())
            .field("body_len", &self.body.len())
            .finish()
    }
}
