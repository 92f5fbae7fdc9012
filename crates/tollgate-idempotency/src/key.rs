//! Reading the client's idempotency key from a request header.

use http::header::{HeaderMap, HeaderName};

/// The longest key accepted, in characters (Stripe's limit).
pub const MAX_KEY_LEN: usize = 255;

/// Why a request's key header could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyError {
    /// Empty, too long, or not visible ASCII (in this header).
    Invalid(HeaderName),
    /// The header was sent more than once, or several key headers disagree.
    Ambiguous,
}

/// The key from the first of `names` the request carries, `Ok(None)` when it
/// carries none.
///
/// A value in the structured-field string form of the `Idempotency-Key`
/// draft (`"abc"`, RFC 8941 §3.3.3) is unquoted, so `"abc"` and `abc` name the
/// same key. The key must then be 1 to 255 visible ASCII characters
/// (`!` to `~`): no spaces, no control characters, nothing beyond ASCII.
pub(crate) fn read_key(headers: &HeaderMap, names: &[HeaderName]) -> Result<Option<String>, KeyError> {
    let mut found: Option<String> = None;
    for name in names {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else { continue };
        if values.next().is_some() {
            return Err(KeyError::Ambiguous);
        }
        let key = parse_key(value.as_bytes()).ok_or_else(|| KeyError::Invalid(name.clone()))?;
        match &found {
            Some(earlier) if *earlier != key => return Err(KeyError::Ambiguous),
            Some(_) => {}
            None => found = Some(key),
        }
    }
    Ok(found)
}

fn parse_key(raw: &[u8]) -> Option<String> {
    let key = match raw {
        [b'"', inner @ .., b'"'] => unquote(inner)?,
        _ => raw.to_vec(),
    };
    let visible = |byte: &u8| (0x21..=0x7e).contains(byte);
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.iter().all(visible) {
        return None;
    }
    // All visible ASCII, so this cannot fail.
    String::from_utf8(key).ok()
}

// The inside of an sf-string: `\"` and `\\` are the only escapes, and a bare
// `"` cannot appear.
fn unquote(inner: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(inner.len());
    let mut bytes = inner.iter();
    while let Some(&byte) = bytes.next() {
        match byte {
            b'\\' => match bytes.next() {
                Some(&escaped @ (b'"' | b'\\')) => out.push(escaped),
                _ => return None,
            },
            b'"' => return None,
            _ => out.push(byte),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
    const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

    fn read(pairs: &[(&HeaderName, &[u8])]) -> Result<Option<String>, KeyError> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_bytes(value).unwrap());
        }
        read_key(&headers, &[IDEMPOTENCY_KEY, X_REQUEST_ID])
    }

    #[test]
    fn plain_and_quoted_keys_are_read() {
        assert_eq!(read(&[]), Ok(None));
        let uuid = "8e03978e-40d5-43e8-bc93-6894a57f9324";
        assert_eq!(read(&[(&X_REQUEST_ID, uuid.as_bytes())]), Ok(Some(uuid.into())));
        assert_eq!(
            read(&[(&IDEMPOTENCY_KEY, format!("\"{uuid}\"").as_bytes())]),
            Ok(Some(uuid.into()))
        );
        assert_eq!(
            read(&[(&IDEMPOTENCY_KEY, br#""a\"b\\c""#)]),
            Ok(Some(r#"a"b\c"#.into()))
        );
        assert_eq!(read(&[(&X_REQUEST_ID, b"a")]), Ok(Some("a".into())));
        let longest = "k".repeat(255);
        assert_eq!(read(&[(&X_REQUEST_ID, longest.as_bytes())]), Ok(Some(longest)));
    }

    #[test]
    fn bad_keys_are_invalid() {
        let too_long = "k".repeat(256);
        let cases: [&[u8]; 11] = [
            b"",
            b"\"\"",
            too_long.as_bytes(),
            "cl\u{e9}".as_bytes(),
            b"tab\there",
            b"with space",
            b"\"with space\"",
            br#""bad\escape""#,
            br#""in"side""#,
            br#""trailing\""#,
            b"\"",
        ];
        for raw in cases {
            // `"` alone is one visible character: a valid (if odd) key.
            if raw == b"\"" {
                assert_eq!(read(&[(&X_REQUEST_ID, raw)]), Ok(Some("\"".into())));
                continue;
            }
            assert_eq!(
                read(&[(&X_REQUEST_ID, raw)]),
                Err(KeyError::Invalid(X_REQUEST_ID)),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn repeated_or_conflicting_headers_are_ambiguous() {
        assert_eq!(
            read(&[(&X_REQUEST_ID, b"a"), (&X_REQUEST_ID, b"b")]),
            Err(KeyError::Ambiguous)
        );
        assert_eq!(
            read(&[(&X_REQUEST_ID, b"a"), (&IDEMPOTENCY_KEY, b"b")]),
            Err(KeyError::Ambiguous)
        );
        assert_eq!(
            read(&[(&X_REQUEST_ID, b"a"), (&IDEMPOTENCY_KEY, b"\"a\"")]),
            Ok(Some("a".into())),
            "the same key under both names is fine"
        );
    }
}
