//! The refusals of the auth layers, with their RFC 6750 challenges.
//!
//! Unknown, revoked, expired and checksum-failing keys all get the same
//! [`invalid_key`] rejection, so a response never tells whether a key exists.

use std::sync::LazyLock;

use http::header::{HeaderValue, WWW_AUTHENTICATE};
use tollgate_core::{Code, Rejection};

use crate::parse::ParseError;

/// The message for a request without credentials.
pub const MISSING_KEY_MESSAGE: &str = "Missing API key. Send it in the Authorization header: Bearer YOUR_API_KEY.";
/// The message for an `Authorization` header that is not one well-formed bearer token.
pub const MALFORMED_MESSAGE: &str = "Malformed Authorization header. Expected: Bearer YOUR_API_KEY.";
/// The message for a key that does not authenticate, whatever the reason.
pub const INVALID_KEY_MESSAGE: &str = "Invalid API key.";
/// The message for a read-only key on a method other than GET or HEAD.
pub const READ_ONLY_MESSAGE: &str = "This API key is read-only: only GET and HEAD requests are allowed.";
/// The message for a key that lacks the scope a route requires.
pub const INSUFFICIENT_SCOPE_MESSAGE: &str = "This API key does not have the permission this request requires.";

const INVALID_TOKEN_CHALLENGE: &str = r#"Bearer error="invalid_token""#;
const INSUFFICIENT_SCOPE_CHALLENGE: &str = r#"Bearer error="insufficient_scope""#;

// The fixed rejections are built once: refusing garbage stays cheap.
static MISSING_KEY: LazyLock<Rejection> = LazyLock::new(|| Rejection::unauthorized(MISSING_KEY_MESSAGE));
static MALFORMED: LazyLock<Rejection> = LazyLock::new(|| Rejection::unauthorized(MALFORMED_MESSAGE));
static MALFORMED_TOKEN: LazyLock<Rejection> = LazyLock::new(|| {
    Rejection::unauthorized(MALFORMED_MESSAGE)
        .with_header(WWW_AUTHENTICATE, HeaderValue::from_static(INVALID_TOKEN_CHALLENGE))
});
static INVALID_KEY: LazyLock<Rejection> = LazyLock::new(|| {
    Rejection::unauthorized(INVALID_KEY_MESSAGE)
        .with_header(WWW_AUTHENTICATE, HeaderValue::from_static(INVALID_TOKEN_CHALLENGE))
});
static READ_ONLY: LazyLock<Rejection> = LazyLock::new(|| forbidden(READ_ONLY_MESSAGE, None));
static STORE_UNAVAILABLE: LazyLock<Rejection> = LazyLock::new(Rejection::store_unavailable);

/// 401 for a request whose `Authorization` header could not be read.
pub fn unreadable(error: ParseError) -> &'static Rejection {
    match error {
        ParseError::Missing => missing_key(),
        _ if error.token_given() => &MALFORMED_TOKEN,
        _ => &MALFORMED,
    }
}

/// 401 with a bare `Bearer` challenge: no credentials at all.
pub fn missing_key() -> &'static Rejection {
    &MISSING_KEY
}

/// 401 `error="invalid_token"`: unknown, revoked, expired or malformed key.
pub fn invalid_key() -> &'static Rejection {
    &INVALID_KEY
}

/// 403 `error="insufficient_scope"` for a read-only key writing.
pub fn read_only() -> &'static Rejection {
    &READ_ONLY
}

/// 503: the key store failed.
pub fn store_unavailable() -> &'static Rejection {
    &STORE_UNAVAILABLE
}

/// 403 `error="insufficient_scope"`, naming the scope when one scope was
/// required (in the challenge's `scope` attribute and a `required_scope` field).
pub fn insufficient_scope(scope: Option<&str>) -> Rejection {
    forbidden(INSUFFICIENT_SCOPE_MESSAGE, scope)
}

fn forbidden(message: &'static str, scope: Option<&str>) -> Rejection {
    let rejection = Rejection::new(Code::Forbidden, message);
    // A scope with a quote or a backslash cannot go into a quoted-string
    // unescaped; such a scope is named in the body only.
    let challenge = scope
        .filter(|scope| !scope.contains(['"', '\\']))
        .and_then(|scope| HeaderValue::from_str(&format!(r#"{INSUFFICIENT_SCOPE_CHALLENGE}, scope="{scope}""#)).ok())
        .unwrap_or(HeaderValue::from_static(INSUFFICIENT_SCOPE_CHALLENGE));
    let rejection = rejection.with_header(WWW_AUTHENTICATE, challenge);
    match scope {
        Some(scope) => rejection.with_field("required_scope", scope),
        None => rejection,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn challenge(rejection: &Rejection) -> &str {
        rejection.headers()[WWW_AUTHENTICATE].to_str().unwrap()
    }

    #[test]
    fn missing_and_unreadable_credentials_get_a_bare_challenge() {
        for error in [
            ParseError::Missing,
            ParseError::Multiple,
            ParseError::NotBearer,
            ParseError::MissingToken,
        ] {
            let rejection = unreadable(error);
            assert_eq!(rejection.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(rejection.code(), "UNAUTHORIZED");
            assert_eq!(challenge(rejection), "Bearer");
        }
        assert_eq!(unreadable(ParseError::Missing).message(), MISSING_KEY_MESSAGE);
        assert_eq!(unreadable(ParseError::NotBearer).message(), MALFORMED_MESSAGE);
    }

    #[test]
    fn given_but_bad_tokens_are_invalid_token() {
        for error in [ParseError::InvalidToken, ParseError::TooLong] {
            assert_eq!(challenge(unreadable(error)), r#"Bearer error="invalid_token""#);
        }
        assert_eq!(challenge(invalid_key()), r#"Bearer error="invalid_token""#);
        assert_eq!(invalid_key().message(), INVALID_KEY_MESSAGE);
    }

    #[test]
    fn insufficient_scope_names_a_single_scope() {
        let rejection = insufficient_scope(Some("messages:write"));
        assert_eq!(rejection.status(), StatusCode::FORBIDDEN);
        assert_eq!(rejection.code(), "FORBIDDEN");
        assert_eq!(
            challenge(&rejection),
            r#"Bearer error="insufficient_scope", scope="messages:write""#
        );
        assert_eq!(
            rejection.to_json(),
            r#"{"error":{"code":"FORBIDDEN","message":"This API key does not have the permission this request requires.","required_scope":"messages:write"}}"#
        );
        assert_eq!(
            challenge(&insufficient_scope(None)),
            r#"Bearer error="insufficient_scope""#
        );
        assert_eq!(challenge(read_only()), r#"Bearer error="insufficient_scope""#);
        assert_eq!(read_only().status(), StatusCode::FORBIDDEN);
        assert_eq!(store_unavailable().status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn scopes_that_cannot_be_quoted_stay_out_of_the_header() {
        let rejection = insufficient_scope(Some(r#"a"b"#));
        assert_eq!(challenge(&rejection), r#"Bearer error="insufficient_scope""#);
        assert_eq!(rejection.fields()[0].1, r#"a"b"#);
    }
}
