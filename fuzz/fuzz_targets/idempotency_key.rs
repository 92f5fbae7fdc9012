//! `X-Request-ID` / `Idempotency-Key` parsing: an accepted key is 1 to 255
//! visible ASCII characters, equal to the raw value or to its unquoted
//! structured-field string; quoting an accepted key reads back the same
//! key; two headers that disagree are refused.
#![no_main]

use arbitrary::Arbitrary;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tollgate_idempotency::fuzzing::read_key;
use tollgate_idempotency::{IDEMPOTENCY_KEY, MAX_KEY_LEN, X_REQUEST_ID};

#[derive(Arbitrary, Debug)]
struct Input {
    request_ids: Vec<Vec<u8>>,
    idempotency_keys: Vec<Vec<u8>>,
    both_names: bool,
}

fn quote(key: &str) -> String {
    let mut quoted = String::from("\"");
    for c in key.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

fn unquote(raw: &[u8]) -> Option<Vec<u8>> {
    let inner = raw.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let mut out = Vec::new();
    let mut bytes = inner.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'\\' => out.push(*bytes.next().filter(|e| **e == b'"' || **e == b'\\')?),
            b'"' => return None,
            _ => out.push(b),
        }
    }
    Some(out)
}

fuzz_target!(|input: Input| {
    let mut headers = HeaderMap::new();
    for (name, values) in [
        (X_REQUEST_ID, &input.request_ids),
        (IDEMPOTENCY_KEY, &input.idempotency_keys),
    ] {
        for value in values.iter().take(3) {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.append(name.clone(), value);
            }
        }
    }
    let names: Vec<HeaderName> = if input.both_names {
        vec![X_REQUEST_ID, IDEMPOTENCY_KEY]
    } else {
        vec![X_REQUEST_ID]
    };
    let result = read_key(&headers, &names);
    let present: Vec<&HeaderName> = names.iter().filter(|n| headers.contains_key(*n)).collect();
    match result {
        Ok(None) => assert!(present.is_empty()),
        Ok(Some(key)) => {
            assert!(!key.is_empty() && key.len() <= MAX_KEY_LEN);
            assert!(key.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{key:?}");
            for name in &present {
                let values: Vec<&HeaderValue> = headers.get_all(*name).iter().collect();
                assert_eq!(values.len(), 1, "a key from a repeated header");
                let raw = values[0].as_bytes();
                let read = unquote(raw).unwrap_or_else(|| raw.to_vec());
                assert_eq!(read, key.as_bytes(), "every present header names the key");
            }
            // The quoted form reads back as the same key.
            let mut quoted = HeaderMap::new();
            quoted.insert(X_REQUEST_ID, HeaderValue::from_str(&quote(&key)).unwrap());
            assert_eq!(read_key(&quoted, &[X_REQUEST_ID]), Ok(Some(key.clone())));
        }
        Err(()) => assert!(!present.is_empty()),
    }
});
