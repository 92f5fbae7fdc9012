//! `Authorization: Bearer` parsing: any set of header values either yields
//! a token that is exactly what the one header carried after `Bearer` and
//! its spaces, or an error; never a panic.
#![no_main]

use arbitrary::Arbitrary;
use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use libfuzzer_sys::fuzz_target;
use tollgate_auth::parse::{bearer_token, ParseError};

#[derive(Arbitrary, Debug)]
struct Input {
    values: Vec<Vec<u8>>,
    max_len: u16,
}

fuzz_target!(|input: Input| {
    let mut headers = HeaderMap::new();
    for value in input.values.iter().take(4) {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(AUTHORIZATION, value);
        }
    }
    let max_len = usize::from(input.max_len);
    let count = headers.get_all(AUTHORIZATION).iter().count();
    match bearer_token(&headers, max_len) {
        Ok(token) => {
            assert_eq!(count, 1, "a token from several headers");
            let raw = headers[AUTHORIZATION].as_bytes();
            assert!(raw[..6].eq_ignore_ascii_case(b"bearer"));
            assert_eq!(raw[6], b' ');
            // The rest is spaces, the token, then optional whitespace.
            let rest = &raw[6..];
            let start = rest.iter().position(|b| *b != b' ').unwrap();
            assert_eq!(&rest[start..start + token.len()], token.as_bytes());
            assert!(rest[start + token.len()..].iter().all(|b| *b == b' ' || *b == b'\t'));
            assert!(!token.is_empty() && token.len() <= max_len);
            assert!(token.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{token:?}");
        }
        Err(ParseError::Missing) => assert_eq!(count, 0),
        Err(ParseError::Multiple) => assert!(count > 1),
        Err(error) => {
            assert_eq!(count, 1);
            let raw = headers[AUTHORIZATION].as_bytes();
            if error.token_given() {
                assert!(raw.len() > 7 && raw[..6].eq_ignore_ascii_case(b"bearer"));
            }
        }
    }
});
