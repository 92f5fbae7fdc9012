//! [`SqlIdempotencyStore`]: idempotency claims and stored responses in
//! `tollgate_idempotency`, so exactly-once survives a restart.

use std::sync::Arc;
use std::time::Duration;

use tollgate_core::idempotency::{
    BeginOutcome, ClaimToken, Fingerprint, IdempotencyKey, IdempotencyStore, StoredResponse,
};
use tollgate_core::{MaybeReady, StoreError, StoreFuture};

use crate::pool::{database, on_pool, to_db};
use crate::stores::Shared;

// Claims key $1 for fingerprint $2 with token $3 until $4, if it is free or
// its entry expired by $5; returns the token when it claimed.
const CLAIM: &str = "INSERT INTO tollgate_idempotency \
    (storage_key, fingerprint, token, status, headers, body, expires_at) \
    VALUES ($1, $2, $3, NULL, NULL, NULL, $4) \
    ON CONFLICT (storage_key) DO UPDATE SET fingerprint = excluded.fingerprint, \
    token = excluded.token, status = NULL, headers = NULL, body = NULL, expires_at = excluded.expires_at \
    WHERE tollgate_idempotency.expires_at <= $5 \
    RETURNING token";

const LIVE: &str = "SELECT fingerprint, status, headers, body FROM tollgate_idempotency \
    WHERE storage_key = $1 AND expires_at > $2";

const COMPLETE: &str = "UPDATE tollgate_idempotency SET status = $3, headers = $4, body = $5, expires_at = $6 \
    WHERE storage_key = $1 AND token = $2 AND status IS NULL AND expires_at > $7";

const ABORT: &str = "DELETE FROM tollgate_idempotency WHERE storage_key = $1 AND token = $2 AND status IS NULL";

// A live entry: fingerprint, and the response once completed.
type LiveRow = (String, Option<i32>, Option<String>, Option<Vec<u8>>);

/// Idempotency entries on SQL, one row per key: a claim (fingerprint,
/// token, lock expiry) until completed, then the response (status,
/// headers, body) until its TTL. Each operation is one statement, so two
/// concurrent `begin`s of a free key claim it exactly once (the insert's
/// conflict on the primary key decides). Expiry is judged on the
/// [configured clock](crate::SqlConfig::clock); expired rows are as good as
/// absent and are deleted by the background task. Get one from
/// [`SqlStores::idempotency_store`](crate::SqlStores::idempotency_store).
#[derive(Clone)]
pub struct SqlIdempotencyStore {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for SqlIdempotencyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlIdempotencyStore")
            .field("backend", &self.shared.pool.backend())
            .finish_non_exhaustive()
    }
}

fn token_text(token: ClaimToken) -> String {
    format!("{:032x}", token.as_u128())
}

fn fresh_token() -> Result<ClaimToken, StoreError> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|error| StoreError::backend(error.to_string()))?;
    Ok(ClaimToken::from_u128(u128::from_le_bytes(bytes)))
}

fn response_of(status: i32, headers: Option<String>, body: Option<Vec<u8>>) -> Result<StoredResponse, StoreError> {
    let corrupt = || StoreError::Corrupt("a stored idempotent response".into());
    let headers: Vec<(String, Vec<u8>)> =
        serde_json::from_str(headers.as_deref().unwrap_or("[]")).map_err(|_| corrupt())?;
    Ok(StoredResponse {
        status: u16::try_from(status).map_err(|_| corrupt())?,
        headers,
        body: body.unwrap_or_default().into(),
    })
}

impl SqlIdempotencyStore {
    async fn begin_claim(
        &self,
        key: String,
        fingerprint: Fingerprint,
        lock_ttl: Duration,
    ) -> Result<BeginOutcome, StoreError> {
        let fingerprint = fingerprint.to_hex();
        // Claim, or read the live entry; an entry that expires or is aborted
        // between the two is claimed on the next round.
        for _ in 0..8 {
            let now = self.shared.config.clock.now();
            let token = fresh_token()?;
            let claimed: Option<(String,)> = on_pool!(&self.shared.pool, |p| {
                sqlx::query_as(CLAIM)
                    .bind(&key)
                    .bind(&fingerprint)
                    .bind(token_text(token))
                    .bind(to_db(now + lock_ttl))
                    .bind(to_db(now))
                    .fetch_optional(p)
                    .await
                    .map_err(database)?
            });
            if claimed.is_some() {
                return Ok(BeginOutcome::Claimed(token));
            }
            let live: Option<LiveRow> = on_pool!(&self.shared.pool, |p| {
                sqlx::query_as(LIVE)
                    .bind(&key)
                    .bind(to_db(now))
                    .fetch_optional(p)
                    .await
                    .map_err(database)?
            });
            let Some((stored_fingerprint, status, headers, body)) = live else {
                continue;
            };
            if stored_fingerprint != fingerprint {
                return Ok(BeginOutcome::FingerprintMismatch);
            }
            return match status {
                None => Ok(BeginOutcome::InProgress),
                Some(status) => Ok(BeginOutcome::Completed(response_of(status, headers, body)?)),
            };
        }
        Err(StoreError::backend("the idempotency key kept changing under the claim"))
    }

    async fn complete_claim(
        &self,
        key: String,
        token: ClaimToken,
        response: StoredResponse,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.shared.config.clock.now();
        let headers = serde_json::to_string(&response.headers).expect("headers serialise");
        let done = on_pool!(&self.shared.pool, |p| {
            sqlx::query(COMPLETE)
                .bind(&key)
                .bind(token_text(token))
                .bind(i32::from(response.status))
                .bind(headers)
                .bind(response.body.to_vec())
                .bind(to_db(now + ttl))
                .bind(to_db(now))
                .execute(p)
                .await
                .map_err(database)?
                .rows_affected()
        });
        Ok(done == 1)
    }

    async fn abort_claim(&self, key: String, token: ClaimToken) -> Result<bool, StoreError> {
        let deleted = on_pool!(&self.shared.pool, |p| {
            sqlx::query(ABORT)
                .bind(&key)
                .bind(token_text(token))
                .execute(p)
                .await
                .map_err(database)?
                .rows_affected()
        });
        Ok(deleted > 0)
    }
}

pub(crate) async fn purge_expired(shared: &Shared) -> Result<u64, StoreError> {
    let now = to_db(shared.config.clock.now());
    Ok(on_pool!(&shared.pool, |p| {
        sqlx::query("DELETE FROM tollgate_idempotency WHERE expires_at <= $1")
            .bind(now)
            .execute(p)
            .await
            .map_err(database)?
            .rows_affected()
    }))
}

impl IdempotencyStore for SqlIdempotencyStore {
    fn begin(&self, key: &IdempotencyKey, fingerprint: Fingerprint, lock_ttl: Duration) -> StoreFuture<BeginOutcome> {
        let (store, key) = (self.clone(), key.storage_key());
        MaybeReady::boxed(async move { store.begin_claim(key, fingerprint, lock_ttl).await })
    }

    fn complete(
        &self,
        key: &IdempotencyKey,
        token: ClaimToken,
        response: StoredResponse,
        ttl: Duration,
    ) -> StoreFuture<bool> {
        let (store, key) = (self.clone(), key.storage_key());
        MaybeReady::boxed(async move { store.complete_claim(key, token, response, ttl).await })
    }

    fn abort(&self, key: &IdempotencyKey, token: ClaimToken) -> StoreFuture<bool> {
        let (store, key) = (self.clone(), key.storage_key());
        MaybeReady::boxed(async move { store.abort_claim(key, token).await })
    }
}
