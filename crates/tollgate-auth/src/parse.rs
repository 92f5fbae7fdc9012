//! Reading the token out of `Authorization: Bearer <token>` (RFC 6750 §2.1).
//!
//! The parser borrows from the request's headers and never allocates. It
//! accepts exactly one `Authorization` header, the scheme in any case, one
//! or more spaces, then a token of visible ASCII characters (the `token68`
//! alphabet widened to every visible character, since imported keys may use
//! any of them) no longer than a configured maximum.

use std::fmt;

use http::header::{HeaderMap, AUTHORIZATION};

/// The longest token accepted unless configured otherwise.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 256;

const SCHEME: &[u8] = b"bearer";

/// Why no bearer token could be read from a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// No `Authorization` header.
    Missing,
    /// More than one `Authorization` header: ambiguous, so refused.
    Multiple,
    /// A scheme other than `Bearer`, such as `Basic`.
    NotBearer,
    /// `Bearer` with nothing after it.
    MissingToken,
    /// A token with a space, a control character or a non-ASCII byte.
    InvalidToken,
    /// A token longer than the configured maximum.
    TooLong,
}

impl ParseError {
    /// Whether the client sent something meant as a bearer token. RFC 6750
    /// answers those with `error="invalid_token"` and the rest with a bare
    /// `Bearer` challenge.
    pub fn token_given(self) -> bool {
        matches!(self, ParseError::InvalidToken | ParseError::TooLong)
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::Missing => "no Authorization header",
            ParseError::Multiple => "more than one Authorization header",
            ParseError::NotBearer => "the Authorization scheme is not Bearer",
            ParseError::MissingToken => "the Bearer token is empty",
            ParseError::InvalidToken => "the Bearer token has characters outside visible ASCII",
            ParseError::TooLong => "the Bearer token is too long",
        })
    }
}

impl std::error::Error for ParseError {}

/// The bearer token of a request, borrowed from its headers.
///
/// ```
/// use http::{header::AUTHORIZATION, HeaderMap, HeaderValue};
/// use tollgate_auth::parse::{bearer_token, ParseError, DEFAULT_MAX_TOKEN_LEN};
///
/// let mut headers = HeaderMap::new();
/// assert_eq!(bearer_token(&headers, DEFAULT_MAX_TOKEN_LEN), Err(ParseError::Missing));
/// headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer tg_live_abc"));
/// assert_eq!(bearer_token(&headers, DEFAULT_MAX_TOKEN_LEN), Ok("tg_live_abc"));
/// ```
pub fn bearer_token(headers: &HeaderMap, max_len: usize) -> Result<&str, ParseError> {
    let token = bearer_token_bytes(headers, max_len)?;
    // Visible ASCII is valid UTF-8, so this never fails; no panic either way.
    std::str::from_utf8(token).map_err(|_| ParseError::InvalidToken)
}

/// [`bearer_token`] as bytes, all visible ASCII: the auth layer hashes
/// them as they are and skips the UTF-8 check.
pub(crate) fn bearer_token_bytes(headers: &HeaderMap, max_len: usize) -> Result<&[u8], ParseError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(ParseError::Missing)?;
    if values.next().is_some() {
        return Err(ParseError::Multiple);
    }
    let bytes = value.as_bytes();
    let Some(scheme) = bytes.get(..SCHEME.len()) else {
        return Err(ParseError::NotBearer);
    };
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return Err(ParseError::NotBearer);
    }
    let rest = &bytes[SCHEME.len()..];
    match rest.first() {
        None => return Err(ParseError::MissingToken),
        Some(b' ') => {}
        // `Bearerx …` is another scheme, not a malformed bearer token.
        Some(_) => return Err(ParseError::NotBearer),
    }
    let token = trim_end(trim_start(rest));
    if token.is_empty() {
        return Err(ParseError::MissingToken);
    }
    // Checked before the characters so an oversized header costs one comparison.
    if token.len() > max_len {
        return Err(ParseError::TooLong);
    }
    // No early exit, so the loop vectorises: tokens are short and usually valid.
    let visible = token
        .iter()
        .fold(true, |visible, byte| visible & (byte.wrapping_sub(0x21) < 0x5e));
    if !visible {
        return Err(ParseError::InvalidToken);
    }
    Ok(token)
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|byte| *byte != b' ').unwrap_or(bytes.len());
    &bytes[start..]
}

// Optional whitespace may end a header value (RFC 9110 §5.5); it is not part
// of the token.
fn trim_end(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|byte| *byte != b' ' && *byte != b'\t')
        .map_or(0, |last| last + 1);
    &bytes[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parse(values: &[&[u8]]) -> Result<String, ParseError> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
        }
        bearer_token(&headers, DEFAULT_MAX_TOKEN_LEN).map(str::to_owned)
    }

    #[test]
    fn a_plain_bearer_token_is_read() {
        assert_eq!(parse(&[b"Bearer tg_live_abc123"]), Ok("tg_live_abc123".into()));
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        assert_eq!(parse(&[b"bearer abc"]), Ok("abc".into()));
        assert_eq!(parse(&[b"BEARER abc"]), Ok("abc".into()));
        assert_eq!(parse(&[b"bEaReR abc"]), Ok("abc".into()));
    }

    #[test]
    fn several_spaces_after_the_scheme_and_trailing_whitespace_are_allowed() {
        assert_eq!(parse(&[b"Bearer    abc"]), Ok("abc".into()));
        assert_eq!(parse(&[b"Bearer abc \t"]), Ok("abc".into()));
    }

    #[test]
    fn a_missing_header_is_missing() {
        assert_eq!(parse(&[]), Err(ParseError::Missing));
    }

    #[test]
    fn an_empty_header_is_not_bearer() {
        assert_eq!(parse(&[b""]), Err(ParseError::NotBearer));
    }

    #[test]
    fn other_schemes_are_refused() {
        assert_eq!(parse(&[b"Basic dXNlcjpwYXNz"]), Err(ParseError::NotBearer));
        assert_eq!(parse(&[b"Token abc"]), Err(ParseError::NotBearer));
        assert_eq!(parse(&[b"Bearerabc"]), Err(ParseError::NotBearer));
        assert_eq!(parse(&[b"Bear"]), Err(ParseError::NotBearer));
        assert_eq!(parse(&[b"abc"]), Err(ParseError::NotBearer));
    }

    #[test]
    fn two_authorization_headers_are_refused() {
        assert_eq!(parse(&[b"Bearer abc", b"Bearer abc"]), Err(ParseError::Multiple));
        assert_eq!(parse(&[b"Bearer abc", b"Basic xyz"]), Err(ParseError::Multiple));
    }

    #[test]
    fn bearer_without_a_token_is_missing_token() {
        assert_eq!(parse(&[b"Bearer"]), Err(ParseError::MissingToken));
        assert_eq!(parse(&[b"bearer"]), Err(ParseError::MissingToken));
        assert_eq!(parse(&[b"Bearer "]), Err(ParseError::MissingToken));
        assert_eq!(parse(&[b"Bearer     "]), Err(ParseError::MissingToken));
    }

    #[test]
    fn inner_spaces_and_non_visible_bytes_are_invalid_tokens() {
        assert_eq!(parse(&[b"Bearer abc def"]), Err(ParseError::InvalidToken));
        assert_eq!(parse(&[b"Bearer abc\tdef"]), Err(ParseError::InvalidToken));
        assert_eq!(parse(&[b"Bearer abc\xc3\xa9"]), Err(ParseError::InvalidToken));
        assert_eq!(parse(&[b"Bearer \xff\xfe"]), Err(ParseError::InvalidToken));
        assert_eq!(parse(&[b"Bearer abc\x80"]), Err(ParseError::InvalidToken));
    }

    #[test]
    fn a_ten_kilobyte_header_is_too_long() {
        let mut value = b"Bearer ".to_vec();
        value.extend(std::iter::repeat_n(b'a', 10 * 1024));
        assert_eq!(parse(&[&value]), Err(ParseError::TooLong));
    }

    #[test]
    fn every_visible_ascii_character_is_allowed_and_nothing_else() {
        for byte in 0u8..=255 {
            let mut headers = HeaderMap::new();
            let Ok(value) = HeaderValue::from_bytes(&[b'B', b'e', b'a', b'r', b'e', b'r', b' ', b'a', byte]) else {
                continue;
            };
            headers.insert(AUTHORIZATION, value);
            let parsed = bearer_token(&headers, DEFAULT_MAX_TOKEN_LEN);
            match byte {
                0x21..=0x7e => assert_eq!(parsed.map(str::len), Ok(2), "{byte:#x}"),
                // Trailing whitespace is not part of the token.
                b' ' | b'\t' => assert_eq!(parsed, Ok("a"), "{byte:#x}"),
                _ => assert_eq!(parsed, Err(ParseError::InvalidToken), "{byte:#x}"),
            }
        }
    }

    #[test]
    fn the_length_limit_is_inclusive_and_configurable() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abcd"));
        assert_eq!(bearer_token(&headers, 4), Ok("abcd"));
        assert_eq!(bearer_token(&headers, 3), Err(ParseError::TooLong));
    }

    #[test]
    fn only_token_errors_count_as_a_given_token() {
        assert!(ParseError::InvalidToken.token_given());
        assert!(ParseError::TooLong.token_given());
        for error in [
            ParseError::Missing,
            ParseError::Multiple,
            ParseError::NotBearer,
            ParseError::MissingToken,
        ] {
            assert!(!error.token_given(), "{error}");
        }
    }
}
