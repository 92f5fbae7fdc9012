//! The refusals of this crate, each with its own code so that a sender's
//! logs say what went wrong. Codes come from the [`Code`] catalogue.

use http::HeaderName;
use tollgate_core::{Code, Rejection};

/// 401: the signature header(s) are absent.
pub const MISSING_SIGNATURE: &str = Code::MissingSignature.as_str();
/// 401: malformed signature headers, or no signature matches.
pub const INVALID_SIGNATURE: &str = Code::InvalidSignature.as_str();
/// 401: the timestamp is too old or too far in the future.
pub const TIMESTAMP_OUT_OF_TOLERANCE: &str = Code::TimestampOutOfTolerance.as_str();
/// 401: this message was already accepted.
pub const REPLAYED: &str = Code::Replayed.as_str();
/// 413: the body is larger than the layer buffers.
pub const PAYLOAD_TOO_LARGE: &str = Code::PayloadTooLarge.as_str();
/// 400: the body could not be read.
pub const INVALID_BODY: &str = Code::InvalidBody.as_str();
/// 400: the `X-Webhook-URL` override is not an acceptable webhook URL.
pub const INVALID_WEBHOOK_URL: &str = Code::InvalidWebhookUrl.as_str();

/// 401 `MISSING_SIGNATURE`.
pub fn missing_signature(header: &HeaderName) -> Rejection {
    Rejection::new(
        Code::MissingSignature,
        format!("Missing webhook signature header {header}."),
    )
}

/// 401 `INVALID_SIGNATURE`.
pub fn invalid_signature() -> Rejection {
    Rejection::from_code(Code::InvalidSignature)
}

/// 401 `TIMESTAMP_OUT_OF_TOLERANCE`, with the tolerance in seconds.
pub fn timestamp_out_of_tolerance(tolerance_secs: u64) -> Rejection {
    Rejection::from_code(Code::TimestampOutOfTolerance).with_field("tolerance", tolerance_secs)
}

/// 401 `REPLAYED`.
pub fn replayed() -> Rejection {
    Rejection::from_code(Code::Replayed)
}

/// 413 `PAYLOAD_TOO_LARGE`, with the limit in bytes.
pub fn payload_too_large(limit: usize) -> Rejection {
    Rejection::new(
        Code::PayloadTooLarge,
        format!("The request body exceeds {limit} bytes."),
    )
    .with_field("limit", limit)
}

/// 400 `INVALID_BODY`.
pub fn invalid_body() -> Rejection {
    Rejection::from_code(Code::InvalidBody)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The catalogue's default messages are the ones this layer has always sent.
    #[test]
    fn messages_are_unchanged() {
        assert_eq!(invalid_signature().message(), "The webhook signature is invalid.");
        assert_eq!(
            timestamp_out_of_tolerance(300).message(),
            "The webhook timestamp is too far from the current time."
        );
        assert_eq!(replayed().message(), "This webhook message was already received.");
        assert_eq!(
            (invalid_body().status().as_u16(), invalid_body().message()),
            (400, "The request body could not be read.")
        );
    }
}
