//! Every webhook signature scheme: a message signed by `Signer` always
//! verifies under the same secret, and any one-byte change of the body or
//! of a signature header value never does (except the changes the scheme
//! defines as equal: the case of a hex digit, a dropped base64 pad).
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use arbitrary::Arbitrary;
use base64::Engine;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tollgate_webhook::{Scheme, Signer, Verifier};

#[derive(Arbitrary, Debug)]
struct Input {
    scheme: u8,
    secret: Vec<u8>,
    old_secret: Option<Vec<u8>>,
    body: Vec<u8>,
    timestamp: u32,
    id: String,
    change: Change,
}

#[derive(Arbitrary, Debug)]
enum Change {
    Body { position: usize, byte: u8 },
    Header { which: usize, position: usize, byte: u8 },
}

fn secret_for(scheme: &Scheme, bytes: &[u8]) -> String {
    match scheme {
        Scheme::StandardWebhooks => format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes)),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fuzz_target!(|input: Input| {
    let scheme = match input.scheme % 4 {
        0 => Scheme::hex(),
        1 => Scheme::github(),
        2 => Scheme::stripe(),
        _ => Scheme::standard_webhooks(),
    };
    let secret = secret_for(&scheme, &input.secret);
    let mut secrets = vec![secret.clone()];
    if let Some(old) = &input.old_secret {
        secrets.push(secret_for(&scheme, old));
    }
    let Ok(signer) = Signer::with_secrets(scheme.clone(), secrets.clone()) else {
        // Secrets the scheme cannot use are refused for signing and verifying alike.
        assert!(Verifier::with_secrets(scheme, secrets).is_err());
        return;
    };
    let verifier = Verifier::new(scheme.clone(), secret.clone()).unwrap();
    let timestamp = u64::from(input.timestamp);
    let now = UNIX_EPOCH + Duration::from_secs(timestamp);
    let Ok(headers) = signer.sign(&input.body, timestamp, &input.id) else {
        assert!(matches!(scheme, Scheme::StandardWebhooks));
        assert!(input.id.is_empty() || !input.id.bytes().all(|b| b.is_ascii_graphic()));
        return;
    };
    let verified = verifier
        .verify(&headers, &input.body, now)
        .expect("a signed message verifies");
    assert_eq!(verified.secret_index(), 0);
    // During a rotation a receiver holding only the old secret still accepts
    // the schemes that carry one signature per secret.
    if secrets.len() == 2 && matches!(scheme, Scheme::Stripe | Scheme::StandardWebhooks) {
        let old = Verifier::new(scheme.clone(), secrets[1].clone()).unwrap();
        old.verify(&headers, &input.body, now)
            .expect("the old secret verifies during a rotation");
    }

    match input.change {
        Change::Body { position, byte } => {
            let mut body = input.body.clone();
            if body.is_empty() {
                body.push(byte);
            } else {
                let position = position % body.len();
                if body[position] == byte {
                    return;
                }
                body[position] = byte;
            }
            assert!(
                verifier.verify(&headers, &body, now).is_err(),
                "a changed body verified"
            );
        }
        Change::Header { which, position, byte } => {
            // With two secrets a message carries two signatures and either
            // verifies it: a change to one of them is the other's to catch.
            // One signature, then.
            let single = Signer::new(scheme.clone(), secret.clone()).unwrap();
            let headers = single.sign(&input.body, timestamp, &input.id).unwrap();
            let names: Vec<_> = headers.keys().cloned().collect();
            let name = &names[which % names.len()];
            let mut value = headers[name].as_bytes().to_vec();
            let position = position % value.len();
            let old = value[position];
            if old == byte {
                return;
            }
            let hex_case = old.is_ascii_hexdigit() && old.is_ascii_alphabetic() && old.eq_ignore_ascii_case(&byte);
            let is_hex_scheme = matches!(scheme, Scheme::Hex { .. } | Scheme::HubSignature256 | Scheme::Stripe);
            if hex_case && is_hex_scheme && name == scheme.signature_header() {
                return;
            }
            if old == b'=' && (byte == b' ' || byte == b'\t') && matches!(scheme, Scheme::StandardWebhooks) {
                return;
            }
            value[position] = byte;
            let Ok(value) = HeaderValue::from_bytes(&value) else {
                return;
            };
            let mut changed = HeaderMap::new();
            for (other, original) in &headers {
                changed.insert(
                    other.clone(),
                    if other == name { value.clone() } else { original.clone() },
                );
            }
            assert!(
                verifier.verify(&changed, &input.body, now).is_err(),
                "a one-byte change of {name} verified: {:?}",
                changed[name]
            );
        }
    }
});
