//! What makes two requests "the same request" under one key.

use http::{Method, Uri};
use sha2::{Digest, Sha256};
use tollgate_core::idempotency::Fingerprint;

/// SHA-256 over the method, the path and query, and the body. Each part is
/// length-prefixed so that no two different requests hash the same input.
pub(crate) fn fingerprint(method: &Method, uri: &Uri, body: &[u8]) -> Fingerprint {
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut hasher = Sha256::new();
    for part in [method.as_str().as_bytes(), path_and_query.as_bytes(), body] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    Fingerprint::from_bytes(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(method: &str, uri: &str, body: &str) -> Fingerprint {
        fingerprint(&method.parse().unwrap(), &uri.parse().unwrap(), body.as_bytes())
    }

    #[test]
    fn every_part_counts() {
        let base = of("POST", "/v1/messages?x=1", "{}");
        assert_eq!(base, of("POST", "/v1/messages?x=1", "{}"));
        assert_eq!(
            base,
            of("POST", "http://api.example/v1/messages?x=1", "{}"),
            "the authority does not"
        );
        assert_ne!(base, of("PATCH", "/v1/messages?x=1", "{}"));
        assert_ne!(base, of("POST", "/v1/messages?x=2", "{}"));
        assert_ne!(base, of("POST", "/v1/messages", "{}"));
        assert_ne!(base, of("POST", "/v1/messages?x=1", "{ }"));
        // Moving bytes between parts changes the hash.
        assert_ne!(of("POST", "/a", "b"), of("POST", "/ab", ""));
    }
}
