use std::time::Duration;

use bytes::Bytes;

use super::{BeginOutcome, ClaimToken, Fingerprint, IdempotencyKey, IdempotencyStore, StoredResponse};
use crate::conformance::{join_all, unique_name};

// Long enough that nothing expires while the suite runs, whatever the
// backend's clock: the suite never relies on time passing.
const LOCK_TTL: Duration = Duration::from_secs(600);
const TTL: Duration = Duration::from_secs(24 * 3600);

fn fresh_key() -> IdempotencyKey {
    IdempotencyKey::new(unique_name("scope"), unique_name("key"))
}

fn fingerprint(n: u8) -> Fingerprint {
    Fingerprint::from_bytes([n; 32])
}

fn response() -> StoredResponse {
    StoredResponse {
        status: 201,
        headers: vec![
            ("content-type".into(), b"application/json".to_vec()),
            ("location".into(), b"/v1/messages/msg_1".to_vec()),
            ("x-multi".into(), b"one".to_vec()),
            ("x-multi".into(), b"two".to_vec()),
        ],
        body: Bytes::from_static(br#"{"id":"msg_1","status":"queued"}"#),
    }
}

async fn claim<S: IdempotencyStore>(store: &S, key: &IdempotencyKey, fingerprint: Fingerprint) -> ClaimToken {
    match store.begin(key, fingerprint, LOCK_TTL).await.expect("begin") {
        BeginOutcome::Claimed(token) => token,
        other => panic!("a free key must be claimed, got {other:?}"),
    }
}

async fn outcome<S: IdempotencyStore>(store: &S, key: &IdempotencyKey, fingerprint: Fingerprint) -> BeginOutcome {
    store.begin(key, fingerprint, LOCK_TTL).await.expect("begin")
}

/// The [`IdempotencyStore`] conformance suite.
pub async fn idempotency_store<S: IdempotencyStore>(store: &S) {
    claim_complete_then_replay(store).await;
    in_flight_keys_are_in_progress(store).await;
    another_request_under_the_same_key_is_a_mismatch(store).await;
    aborted_claims_free_the_key(store).await;
    stale_tokens_cannot_touch_a_newer_claim(store).await;
    unknown_keys_cannot_be_completed_or_aborted(store).await;
    scopes_keep_equal_keys_apart(store).await;
    responses_round_trip_byte_for_byte(store).await;
    concurrent_begins_claim_exactly_once(store).await;
}

async fn claim_complete_then_replay<S: IdempotencyStore>(store: &S) {
    let key = fresh_key();
    let token = claim(store, &key, fingerprint(1)).await;
    assert!(
        store.complete(&key, token, response(), TTL).await.expect("complete"),
        "the holder of the claim stores its response"
    );
    for _ in 0..2 {
        assert_eq!(
            outcome(store, &key, fingerprint(1)).await,
            BeginOutcome::Completed(response()),
            "every retry gets the stored response"
        );
    }
    assert!(
        !store.complete(&key, token, response(), TTL).await.expect("complete"),
        "a claim completes once"
    );
    assert!(
        !store.abort(&key, token).await.expect("abort"),
        "a completed key cannot be aborted"
    );
    assert!(matches!(
        outcome(store, &key, fingerprint(1)).await,
        BeginOutcome::Completed(_)
    ));
}

async fn in_flight_keys_are_in_progress<S: IdempotencyStore>(store: &S) {
    let key = fresh_key();
    claim(store, &key, fingerprint(1)).await;
    for _ in 0..2 {
        assert_eq!(outcome(store, &key, fingerprint(1)).await, BeginOutcome::InProgress);
    }
}

async fn another_request_under_the_same_key_is_a_mismatch<S: IdempotencyStore>(store: &S) {
    let key = fresh_key();
    let token = claim(store, &key, fingerprint(1)).await;
    assert_eq!(
        outcome(store, &key, fingerprint(2)).await,
        BeginOutcome::FingerprintMismatch,
        "while in flight"
    );
    assert!(store.complete(&key, token, response(), TTL).await.expect("complete"));
    assert_eq!(
        outcome(store, &key, fingerprint(2)).await,
        BeginOutcome::FingerprintMismatch,
        "once completed"
    );
    assert_eq!(
        outcome(store, &key, fingerprint(1)).await,
        BeginOutcome::Completed(response()),
        "a mismatch changes nothing"
    );
}

async fn aborted_claims_free_the_key<S: IdempotencyStore>(store: &S) {
    let key = fresh_key();
    let first = claim(store, &key, fingerprint(1)).await;
    assert!(store.abort(&key, first).await.expect("abort"));
    assert!(
        !store.abort(&key, first).await.expect("abort"),
        "an aborted claim is gone"
    );
    // The fingerprint went with the claim: any request may claim the key now.
    let second = claim(store, &key, fingerprint(2)).await;
    assert_ne!(second, first, "every claim has its own token");
    assert_eq!(outcome(store, &key, fingerprint(2)).await, BeginOutcome::InProgress);
}

async fn stale_tokens_cannot_touch_a_newer_claim<S: IdempotencyStore>(store: &S) {
    let key = fresh_key();
    let stale = claim(store, &key, fingerprint(1)).await;
    assert!(store.abort(&key, stale).await.expect("abort"));
    let current = claim(store, &key, fingerprint(1)).await;
    assert!(
        !store.complete(&key, stale, response(), TTL).await.expect("complete"),
        "a stale token cannot complete"
    );
    assert!(
        !store.abort(&key, stale).await.expect("abort"),
        "a stale token cannot abort"
    );
    assert_eq!(
        outcome(store, &key, fingerprint(1)).await,
        BeginOutcome::InProgress,
        "the newer claim is untouched"
    );
    let mut newer = response();
    newer.body = Bytes::from_static(b"newer");
    assert!(store
        .complete(&key, current, newer.clone(), TTL)
        .await
        .expect("complete"));
    assert!(!store.abort(&key, stale).await.expect("abort"));
    assert_eq!(
        outcome(store, &key, fingerprint(1)).await,
        BeginOutcome::Completed(newer)
    );
}

async fn unknown_keys_cannot_be_completed_or_aborted<S: IdempotencyStore>(store: &S) {
    let key = fresh_key();
    let token = ClaimToken::from_u128(1);
    assert!(!store.complete(&key, token, response(), TTL).await.expect("complete"));
    assert!(!store.abort(&key, token).await.expect("abort"));
    // Nothing was created on the way.
    claim(store, &key, fingerprint(1)).await;
}

async fn scopes_keep_equal_keys_apart<S: IdempotencyStore>(store: &S) {
    let id = unique_name("shared-id");
    let scope = unique_name("scope");
    let first = IdempotencyKey::new(scope.clone(), id.clone());
    let second = IdempotencyKey::new(unique_name("scope"), id.clone());
    let token = claim(store, &first, fingerprint(1)).await;
    assert!(store.complete(&first, token, response(), TTL).await.expect("complete"));
    claim(store, &second, fingerprint(2)).await;
    // Scope and key are kept apart however their characters fall.
    let split_differently = IdempotencyKey::new(format!("{scope}:"), id.clone());
    claim(store, &split_differently, fingerprint(1)).await;
    let glued = IdempotencyKey::new(scope.clone(), format!("{id}x"));
    claim(store, &glued, fingerprint(1)).await;
    assert_eq!(
        outcome(store, &first, fingerprint(1)).await,
        BeginOutcome::Completed(response())
    );
}

async fn responses_round_trip_byte_for_byte<S: IdempotencyStore>(store: &S) {
    let every_byte: Vec<u8> = (0..=255u8).collect();
    // A gRPC unary response: one length-prefixed message, then its status
    // in the trailers, binary metadata included.
    let mut grpc = StoredResponse {
        status: 200,
        headers: vec![("content-type".into(), b"application/grpc".to_vec())],
        body: Bytes::from_static(b"\0\0\0\0\x07\n\x05msg_1"),
    };
    grpc.push_trailer("grpc-status", b"0".to_vec());
    grpc.push_trailer("grpc-message", Vec::new());
    grpc.push_trailer("x-trace-bin", vec![0, 0x80, 0xff]);
    let cases = [
        StoredResponse {
            status: 500,
            headers: vec![],
            body: Bytes::new(),
        },
        StoredResponse {
            status: 200,
            headers: vec![("x-obs-text".into(), vec![b'a', 0x80, 0xff])],
            body: Bytes::from(every_byte),
        },
        grpc,
    ];
    for stored in cases {
        let key = fresh_key();
        let token = claim(store, &key, fingerprint(3)).await;
        assert!(store
            .complete(&key, token, stored.clone(), TTL)
            .await
            .expect("complete"));
        let trailers: Vec<(String, Vec<u8>)> = stored
            .trailers()
            .map(|(name, value)| (name.to_owned(), value.to_vec()))
            .collect();
        match outcome(store, &key, fingerprint(3)).await {
            BeginOutcome::Completed(back) => {
                assert_eq!(back, stored, "status, headers, trailers and body, byte for byte");
                let back_trailers: Vec<(String, Vec<u8>)> = back
                    .trailers()
                    .map(|(name, value)| (name.to_owned(), value.to_vec()))
                    .collect();
                assert_eq!(back_trailers, trailers, "trailers come back as trailers, in order");
            }
            other => panic!("expected the stored response, got {other:?}"),
        }
    }
}

async fn concurrent_begins_claim_exactly_once<S: IdempotencyStore>(store: &S) {
    let key = fresh_key();
    let outcomes = join_all((0..32).map(|_| store.begin(&key, fingerprint(1), LOCK_TTL))).await;
    let claimed = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Ok(BeginOutcome::Claimed(_))))
        .count();
    let in_progress = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Ok(BeginOutcome::InProgress)))
        .count();
    assert_eq!((claimed, in_progress), (1, 31), "{outcomes:?}");

    // Different keys do not serialise on each other: every one is claimed.
    let keys: Vec<IdempotencyKey> = (0..16).map(|_| fresh_key()).collect();
    let outcomes = join_all(keys.iter().map(|key| store.begin(key, fingerprint(1), LOCK_TTL))).await;
    assert!(
        outcomes
            .iter()
            .all(|outcome| matches!(outcome, Ok(BeginOutcome::Claimed(_)))),
        "{outcomes:?}"
    );
}
