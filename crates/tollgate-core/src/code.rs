//! [`Code`]: every machine-readable error code a tollgate layer (or the
//! key manager) can answer with, its HTTP status and its default message.
//! Layers render their refusals from this one table, so a client author
//! can read in one place what they may receive.

use http::StatusCode;

macro_rules! catalogue {
    ($( $(#[$doc:meta])* $variant:ident => $status:ident, $text:literal, $message:literal; )*) => {
        /// A machine-readable error code: the `code` of the seed's error
        /// body, the last part of a problem document's `type`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Code {
            $( $(#[$doc])* $variant, )*
        }

        impl Code {
            /// Every code, in the order of this table.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The code as clients see it, such as `RATE_LIMITED`.
            pub const fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $text,)* }
            }

            /// The HTTP status it is sent with.
            pub const fn status(self) -> StatusCode {
                match self { $(Code::$variant => StatusCode::$status,)* }
            }

            /// The message used when a layer has nothing more specific to say.
            pub const fn default_message(self) -> &'static str {
                match self { $(Code::$variant => $message,)* }
            }
        }
    };
}

catalogue! {
    /// No usable credentials: a missing, malformed, unknown, revoked or expired key.
    Unauthorized => UNAUTHORIZED, "UNAUTHORIZED", "Invalid API key.";
    /// The key may not do this: a read-only key writing, a missing scope.
    Forbidden => FORBIDDEN, "FORBIDDEN", "This API key does not have the permission this request requires.";
    /// The client IP is outside an allowlist that applies.
    IpNotAllowed => FORBIDDEN, "IP_NOT_ALLOWED", "Requests from this IP address are not allowed.";
    /// Over the per-second rate or the daily quota.
    RateLimited => TOO_MANY_REQUESTS, "RATE_LIMITED", "Rate limit exceeded.";
    /// A store the layer needs did not answer (fail closed).
    ServiceUnavailable => SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", "The service is temporarily unavailable. Please retry.";
    /// A configuration or storage error on the server's side.
    InternalError => INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", "Internal server error.";
    /// Another request with this idempotency key is still running.
    IdempotencyInProgress => CONFLICT, "IDEMPOTENCY_IN_PROGRESS", "A request with this idempotency key is still being processed. Retry later.";
    /// The idempotency key was used for a different request.
    IdempotencyKeyReused => UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED", "This idempotency key was already used with a different request (method, path or body).";
    /// The idempotency key header is malformed or repeated.
    InvalidIdempotencyKey => BAD_REQUEST, "INVALID_IDEMPOTENCY_KEY", "The idempotency key must be 1 to 255 visible ASCII characters, such as a UUID.";
    /// A route that requires an idempotency key got none.
    IdempotencyKeyMissing => BAD_REQUEST, "IDEMPOTENCY_KEY_MISSING", "This request requires an idempotency key.";
    /// The request body is over the layer's limit.
    PayloadTooLarge => PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", "The request body is too large.";
    /// The request body could not be read.
    InvalidRequestBody => BAD_REQUEST, "INVALID_REQUEST_BODY", "The request body could not be read.";
    /// An idempotent request carried trailers, which cannot be replayed.
    RequestTrailersUnsupported => BAD_REQUEST, "REQUEST_TRAILERS_UNSUPPORTED", "Requests with an idempotency key cannot carry trailers.";
    /// A webhook arrived without its signature header.
    MissingSignature => UNAUTHORIZED, "MISSING_SIGNATURE", "Missing webhook signature.";
    /// A webhook's signature does not match its body.
    InvalidSignature => UNAUTHORIZED, "INVALID_SIGNATURE", "The webhook signature is invalid.";
    /// A webhook's timestamp is outside the tolerance.
    TimestampOutOfTolerance => UNAUTHORIZED, "TIMESTAMP_OUT_OF_TOLERANCE", "The webhook timestamp is too far from the current time.";
    /// A webhook's body could not be read.
    InvalidBody => BAD_REQUEST, "INVALID_BODY", "The request body could not be read.";
    /// A webhook message id that was already accepted.
    Replayed => UNAUTHORIZED, "REPLAYED", "This webhook message was already received.";
    /// A webhook URL that is malformed or points somewhere forbidden.
    InvalidWebhookUrl => BAD_REQUEST, "INVALID_WEBHOOK_URL", "The webhook URL is not allowed.";
    /// The account already has its maximum number of active keys.
    KeyLimitReached => CONFLICT, "KEY_LIMIT_REACHED", "This account already has its maximum number of active API keys.";
    /// A retry of a key creation or rotation (same idempotency key) whose
    /// key was created: its value is not stored, so it is not replayed.
    KeyAlreadyCreated => CONFLICT, "KEY_ALREADY_CREATED", "A key was already created for this X-Request-ID; its value was shown once and is not shown again.";
    /// The key is revoked.
    KeyRevoked => CONFLICT, "KEY_REVOKED", "This API key is already revoked.";
    /// The key is retiring after a rotation (it still works until its grace
    /// period ends), so it is not rotated again.
    KeyRetiring => CONFLICT, "KEY_RETIRING", "This API key is already being replaced by a rotation; rotate its successor or revoke it.";
    /// The key has expired.
    KeyExpired => CONFLICT, "KEY_EXPIRED", "This API key has expired.";
    /// A key with this value or id already exists.
    KeyExists => CONFLICT, "KEY_EXISTS", "An API key with this value already exists.";
    /// A key to create or import is not acceptable.
    InvalidKey => BAD_REQUEST, "INVALID_KEY", "The API key is not acceptable.";
    /// No such resource (or not the caller's).
    NotFound => NOT_FOUND, "NOT_FOUND", "Not found.";
    /// The method is not allowed on this path.
    MethodNotAllowed => METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "Method not allowed.";
    /// The body is not `application/json`.
    UnsupportedMediaType => UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE", "Send the body as application/json.";
    /// The request is malformed (a JSON body that does not parse, a bad field).
    InvalidRequest => BAD_REQUEST, "INVALID_REQUEST", "The request is invalid.";
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn codes_are_unique_upper_snake_case() {
        let mut seen = HashSet::new();
        for code in Code::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} twice");
            assert!(text.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'), "{text}");
            assert!(
                code.status().is_client_error() || code.status().is_server_error(),
                "{text}"
            );
            assert!(!code.default_message().is_empty());
        }
    }
}
