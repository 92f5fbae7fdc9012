//! [`RedisIdempotencyStore`]: idempotency claims and stored responses in
//! Redis, so a retry reaching another instance is still answered once.
//!
//! # Layout
//!
//! One string per key, `<prefix>idem:{<scope length>:<scope><key>}`, in one
//! of two binary forms:
//!
//! - in flight: `p`, the claim token (16 bytes), the fingerprint (32 bytes),
//!   expiring after the lock TTL (the backstop for a crashed holder);
//! - completed: `c`, the fingerprint, then the response (see
//!   `response_codec`), expiring after the response TTL.
//!
//! # Operations
//!
//! - `begin` is one `SET key <claim> NX GET PX <lock ttl>`: it claims a free
//!   key and, in the same atomic step, returns what held it otherwise. This
//!   needs Redis 7.0 or later (`NX` with `GET`).
//! - `complete` and `abort` are Lua scripts that act only if the entry is
//!   still the claim with their token, so a holder whose lock expired and
//!   whose key was claimed again cannot touch the newer claim.
//!
//! Every operation touches one key, so all of this works on Redis Cluster.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use tollgate_core::idempotency::{
    BeginOutcome, ClaimToken, Fingerprint, IdempotencyKey, IdempotencyStore, StoredResponse,
};
use tollgate_core::{MaybeReady, StoreError, StoreFuture};

use crate::backend::{backend_error, ttl_millis, Backend};
use crate::response_codec;

static COMPLETE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/idempotency_complete.lua")));
static ABORT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/idempotency_abort.lua")));

const PENDING: u8 = b'p';
const COMPLETED: u8 = b'c';

/// Idempotency records in Redis. Cheap to clone; clones share the connection.
/// Made by [`crate::RedisStores::idempotency_store`].
#[derive(Debug, Clone)]
pub struct RedisIdempotencyStore {
    backend: Backend,
}

impl RedisIdempotencyStore {
    pub(crate) fn new(backend: Backend) -> RedisIdempotencyStore {
        RedisIdempotencyStore { backend }
    }

    fn entry_key(&self, key: &IdempotencyKey) -> String {
        self.backend.key("idem", &key.storage_key(), "")
    }
}

async fn begin_once(
    backend: &Backend,
    key: &str,
    fingerprint: Fingerprint,
    lock_ttl: Duration,
) -> Result<BeginOutcome, StoreError> {
    let token = new_token()?;
    let mut claim = Vec::with_capacity(49);
    claim.push(PENDING);
    claim.extend_from_slice(&token.as_u128().to_be_bytes());
    claim.extend_from_slice(fingerprint.as_bytes());
    let previous: Option<Vec<u8>> = redis::cmd("SET")
        .arg(key)
        .arg(claim)
        .arg("NX")
        .arg("GET")
        .arg("PX")
        .arg(ttl_millis(lock_ttl))
        .query_async(&mut backend.connection())
        .await
        .map_err(backend_error)?;
    match previous {
        None => Ok(BeginOutcome::Claimed(token)),
        Some(entry) => outcome_of(&entry, &fingerprint),
    }
}

// What a live entry means for a request with `fingerprint`.
fn outcome_of(entry: &[u8], fingerprint: &Fingerprint) -> Result<BeginOutcome, StoreError> {
    let corrupt = || StoreError::Corrupt("idempotency entry".into());
    let (stored_fingerprint, response) = match entry.first() {
        Some(&PENDING) if entry.len() == 49 => (&entry[17..49], None),
        Some(&COMPLETED) if entry.len() >= 33 => (&entry[1..33], Some(&entry[33..])),
        _ => return Err(corrupt()),
    };
    if stored_fingerprint != fingerprint.as_bytes() {
        return Ok(BeginOutcome::FingerprintMismatch);
    }
    match response {
        None => Ok(BeginOutcome::InProgress),
        Some(bytes) => response_codec::decode(bytes)
            .map(BeginOutcome::Completed)
            .ok_or_else(corrupt),
    }
}

// 128 random bits: unique among the claims of every instance sharing Redis.
fn new_token() -> Result<ClaimToken, StoreError> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|error| StoreError::backend(format!("no randomness: {error}")))?;
    Ok(ClaimToken::from_u128(u128::from_be_bytes(bytes)))
}

impl IdempotencyStore for RedisIdempotencyStore {
    fn begin(&self, key: &IdempotencyKey, fingerprint: Fingerprint, lock_ttl: Duration) -> StoreFuture<BeginOutcome> {
        let (backend, key) = (self.backend.clone(), self.entry_key(key));
        MaybeReady::boxed(async move {
            backend
                .run("begin", begin_once(&backend, &key, fingerprint, lock_ttl))
                .await
        })
    }

    fn complete(
        &self,
        key: &IdempotencyKey,
        token: ClaimToken,
        response: StoredResponse,
        ttl: Duration,
    ) -> StoreFuture<bool> {
        let (backend, key) = (self.backend.clone(), self.entry_key(key));
        MaybeReady::boxed(async move {
            let mut encoded = Vec::new();
            response_codec::encode_into(&response, &mut encoded);
            backend
                .run("complete", async {
                    let stored: i64 = COMPLETE
                        .key(&key)
                        .arg(&token.as_u128().to_be_bytes()[..])
                        .arg(encoded)
                        .arg(ttl_millis(ttl))
                        .invoke_async(&mut backend.connection())
                        .await
                        .map_err(backend_error)?;
                    Ok(stored == 1)
                })
                .await
        })
    }

    fn abort(&self, key: &IdempotencyKey, token: ClaimToken) -> StoreFuture<bool> {
        let (backend, key) = (self.backend.clone(), self.entry_key(key));
        MaybeReady::boxed(async move {
            backend
                .run("abort", async {
                    let deleted: i64 = ABORT
                        .key(&key)
                        .arg(&token.as_u128().to_be_bytes()[..])
                        .invoke_async(&mut backend.connection())
                        .await
                        .map_err(backend_error)?;
                    Ok(deleted == 1)
                })
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn pending(token: u128, fingerprint: u8) -> Vec<u8> {
        let mut entry = vec![PENDING];
        entry.extend_from_slice(&token.to_be_bytes());
        entry.extend_from_slice(&[fingerprint; 32]);
        entry
    }

    #[test]
    fn entries_read_as_outcomes() {
        let ours = Fingerprint::from_bytes([1; 32]);
        assert_eq!(outcome_of(&pending(7, 1), &ours).unwrap(), BeginOutcome::InProgress);
        assert_eq!(
            outcome_of(&pending(7, 2), &ours).unwrap(),
            BeginOutcome::FingerprintMismatch
        );
        let response = StoredResponse {
            status: 200,
            headers: vec![],
            body: Bytes::from_static(b"ok"),
        };
        let mut completed = vec![COMPLETED];
        completed.extend_from_slice(&[1; 32]);
        response_codec::encode_into(&response, &mut completed);
        assert_eq!(
            outcome_of(&completed, &ours).unwrap(),
            BeginOutcome::Completed(response)
        );
        completed[1] = 9;
        assert_eq!(
            outcome_of(&completed, &ours).unwrap(),
            BeginOutcome::FingerprintMismatch
        );
        for corrupt in [&b""[..], b"x", &pending(7, 1)[..40], b"c\x01"] {
            assert!(matches!(outcome_of(corrupt, &ours), Err(StoreError::Corrupt(_))));
        }
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(new_token().unwrap(), new_token().unwrap());
    }
}
