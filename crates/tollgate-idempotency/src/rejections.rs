//! The refusals of the idempotency layer, from the [`Code`] catalogue.

use std::time::Duration;

use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use tollgate_core::{Code, Rejection};

use crate::key::MAX_KEY_LEN;

/// 400 `IDEMPOTENCY_KEY_MISSING`: the route requires a key and none was sent.
pub(crate) fn missing_key(header: &HeaderName) -> Rejection {
    Rejection::new(
        Code::IdempotencyKeyMissing,
        format!("This request requires an idempotency key in the {header} header."),
    )
}

/// 400 `INVALID_IDEMPOTENCY_KEY`: empty, too long, or not visible ASCII.
pub(crate) fn invalid_key(header: &HeaderName) -> Rejection {
    Rejection::new(
        Code::InvalidIdempotencyKey,
        format!("The {header} header must be 1 to {MAX_KEY_LEN} visible ASCII characters, such as a UUID."),
    )
}

/// 400 `INVALID_IDEMPOTENCY_KEY`: several key headers, or one sent twice.
pub(crate) fn ambiguous_key() -> Rejection {
    Rejection::new(
        Code::InvalidIdempotencyKey,
        "Send exactly one idempotency key: the key header was repeated or key headers disagree.",
    )
}

/// 413 `PAYLOAD_TOO_LARGE`: the body is longer than the layer buffers.
pub(crate) fn payload_too_large(limit: usize) -> Rejection {
    Rejection::new(
        Code::PayloadTooLarge,
        format!("The request body exceeds the limit of {limit} bytes."),
    )
    .with_field("max_bytes", limit)
}

/// 400 `INVALID_REQUEST_BODY`: the body could not be read to the end.
pub(crate) fn unreadable_body() -> Rejection {
    Rejection::from_code(Code::InvalidRequestBody)
}

/// 400 `REQUEST_TRAILERS_UNSUPPORTED`: trailers cannot be part of an
/// idempotent request (they would escape the fingerprint and the replay).
pub(crate) fn trailers_unsupported() -> Rejection {
    Rejection::from_code(Code::RequestTrailersUnsupported)
}

/// 409 `IDEMPOTENCY_IN_PROGRESS`, with `Retry-After`: the first request with
/// this key is still running.
pub(crate) fn in_progress(retry_after: Duration) -> Rejection {
    let seconds = retry_after.as_secs().max(1);
    Rejection::from_code(Code::IdempotencyInProgress)
        .with_field("retry_after", seconds)
        .with_header(RETRY_AFTER, HeaderValue::from(seconds))
}

/// 422 `IDEMPOTENCY_KEY_REUSED`: the key belongs to a different request.
pub(crate) fn key_reused() -> Rejection {
    Rejection::from_code(Code::IdempotencyKeyReused)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The catalogue's default messages are the ones this layer has always sent.
    #[test]
    fn messages_are_unchanged() {
        assert_eq!(unreadable_body().message(), "The request body could not be read.");
        assert_eq!(
            trailers_unsupported().message(),
            "Requests with an idempotency key cannot carry trailers."
        );
        assert_eq!(
            in_progress(Duration::from_secs(1)).message(),
            "A request with this idempotency key is still being processed. Retry later."
        );
        assert_eq!(
            key_reused().message(),
            "This idempotency key was already used with a different request (method, path or body)."
        );
    }
}
