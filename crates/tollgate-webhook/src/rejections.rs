//! The refusals of this crate, each with its own code so that a sender's
//! logs say what went wrong.

use http::{HeaderName, StatusCode};
use tollgate_core::Rejection;

/// 401: the signature header(s) are absent.
pub const MISSING_SIGNATURE: &str = "MISSING_SIGNATURE";
/// 401: malformed signature headers, or no signature matches.
pub const INVALID_SIGNATURE: &str = "INVALID_SIGNATURE";
/// 401: the timestamp is too old or too far in the future.
pub const TIMESTAMP_OUT_OF_TOLERANCE: &str = "TIMESTAMP_OUT_OF_TOLERANCE";
/// 401: this message was already accepted.
pub const REPLAYED: &str = "REPLAYED";
/// 413: the body is larger than the layer buffers.
pub const PAYLOAD_TOO_LARGE: &str = "PAYLOAD_TOO_LARGE";
/// 400: the body could not be read.
pub const INVALID_BODY: &str = "INVALID_BODY";
/// 400: the `X-Webhook-URL` override is not an acceptable webhook URL.
pub const INVALID_WEBHOOK_URL: &str = "INVALID_WEBHOOK_URL";

/// 401 `MISSING_SIGNATURE`.
pub fn missing_signature(header: &HeaderName) -> Rejection {
    Rejection::new(
        StatusCode::UNAUTHORIZED,
        MISSING_SIGNATURE,
        format!("Missing webhook signature header {header}."),
    )
}

/// 401 `INVALID_SIGNATURE`.
pub fn invalid_signature() -> Rejection {
    Rejection::new(
        StatusCode::UNAUTHORIZED,
        INVALID_SIGNATURE,
        "The webhook signature is invalid.",
    )
}

/// 401 `TIMESTAMP_OUT_OF_TOLERANCE`, with the tolerance in seconds.
pub fn timestamp_out_of_tolerance(tolerance_secs: u64) -> Rejection {
    Rejection::new(
        StatusCode::UNAUTHORIZED,
        TIMESTAMP_OUT_OF_TOLERANCE,
        "The webhook timestamp is too far from the current time.",
    )
    .with_field("tolerance", tolerance_secs)
}

/// 401 `REPLAYED`.
pub fn replayed() -> Rejection {
    Rejection::new(
        StatusCode::UNAUTHORIZED,
        REPLAYED,
        "This webhook message was already received.",
    )
}

/// 413 `PAYLOAD_TOO_LARGE`, with the limit in bytes.
pub fn payload_too_large(limit: usize) -> Rejection {
    Rejection::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        PAYLOAD_TOO_LARGE,
        format!("The request body exceeds {limit} bytes."),
    )
    .with_field("limit", limit)
}

/// 400 `INVALID_BODY`.
pub fn invalid_body() -> Rejection {
    Rejection::new(
        StatusCode::BAD_REQUEST,
        INVALID_BODY,
        "The request body could not be read.",
    )
}
