//! Verifying arbitrary signature headers: never a panic, and whatever the
//! headers say, a message verifies only if it carries the signature the
//! signer would have made for that body (for the timestamped schemes, at
//! the timestamp and id it names).
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tollgate_webhook::{Scheme, Signer, Verifier, WEBHOOK_ID, WEBHOOK_TIMESTAMP};

#[derive(Arbitrary, Debug)]
struct Input {
    scheme: u8,
    body: Vec<u8>,
    values: Vec<(u8, Vec<u8>)>,
    now: u32,
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fuzz_target!(|input: Input| {
    let scheme = match input.scheme % 4 {
        0 => Scheme::hex(),
        1 => Scheme::github(),
        2 => Scheme::stripe(),
        _ => Scheme::standard_webhooks(),
    };
    let names: [HeaderName; 3] = [scheme.signature_header(), WEBHOOK_ID, WEBHOOK_TIMESTAMP];
    let mut headers = HeaderMap::new();
    for (which, value) in input.values.iter().take(6) {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(names[usize::from(*which) % 3].clone(), value);
        }
    }
    let verifier = Verifier::new(scheme.clone(), SECRET).unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(u64::from(input.now));
    let Ok(verified) = verifier.verify(&headers, &input.body, now) else {
        return;
    };

    // It verified: the signer's own signature for what the headers name
    // must be among what they carry.
    let timestamp = verified.timestamp().unwrap_or(0);
    let id = verified.message_id().unwrap_or("unused");
    let signer = Signer::new(scheme.clone(), SECRET).unwrap();
    let expected = signer.sign(&input.body, timestamp, id).unwrap();
    let header = scheme.signature_header();
    let expected = expected[&header].to_str().unwrap().to_ascii_lowercase();
    let signature = expected.rsplit([',', '=']).next().unwrap().to_owned();
    let carried = headers[&header].to_str().unwrap();
    let carried_lower = carried.to_ascii_lowercase();
    let signature_is_carried = match scheme {
        // Base64 is case-sensitive; the pad is optional.
        Scheme::StandardWebhooks => {
            let exact = signer.sign(&input.body, timestamp, id).unwrap()[&header]
                .to_str()
                .unwrap()
                .to_owned();
            let base64 = exact.strip_prefix("v1,").unwrap().trim_end_matches('=');
            carried.contains(base64)
        }
        _ => carried_lower.contains(&signature),
    };
    assert!(
        signature_is_carried,
        "{carried:?} verified without carrying {expected:?}"
    );
    if let Some(timestamp) = verified.timestamp() {
        assert!(timestamp.abs_diff(u64::from(input.now)) <= 300);
    }
});
