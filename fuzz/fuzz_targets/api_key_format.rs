//! The API key format and checksum: arbitrary strings never panic and are
//! only accepted with a known prefix, 36 base62 characters and the right
//! CRC; a generated key always checks, and any one-byte change of it never
//! does.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tollgate_auth::KeyFormat;
use tollgate_core::KeyKind;

#[derive(Arbitrary, Debug)]
struct Input {
    prefixes: Option<[String; 3]>,
    candidate: String,
    kind: u8,
    position: usize,
    replacement: u8,
}

fuzz_target!(|input: Input| {
    let mut format = KeyFormat::new();
    if let Some(prefixes) = input.prefixes {
        for (kind, prefix) in KeyKind::ALL.into_iter().zip(prefixes) {
            match format.clone().with_prefix(kind, prefix) {
                Ok(next) => format = next,
                Err(_) => return,
            }
        }
    }

    // Arbitrary text.
    let candidate = &input.candidate;
    if let Ok(kind) = format.check(candidate) {
        let rest = &candidate[format.prefix(kind).len()..];
        assert_eq!(rest.len(), 36);
        assert!(rest.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(format.is_well_formed(candidate));
    }
    let shown = format.display_prefix(candidate);
    assert!(candidate.starts_with(&shown));
    if format.check(candidate).is_err() {
        assert!(shown.len() <= 4 && shown.len() <= candidate.len() / 4);
    }

    // A generated key, then one byte of it changed.
    let kind = KeyKind::ALL[usize::from(input.kind) % 3];
    let key = format.generate(kind);
    let plaintext = key.expose_secret();
    // Overlapping prefixes may name the key by another kind; it still checks.
    assert!(format.check(plaintext).is_ok(), "a generated key must check");
    let mut bytes = plaintext.as_bytes().to_vec();
    let position = input.position % bytes.len();
    if bytes[position] == input.replacement {
        return;
    }
    bytes[position] = input.replacement;
    if let Ok(changed) = String::from_utf8(bytes) {
        assert!(format.check(&changed).is_err(), "a one-byte change must not check");
    }
});
