//! [`Signer`]: the sending side. Produces the signature headers of a
//! scheme for a body, so a service that sends webhooks signs them exactly
//! the way receivers verify them.
//!
//! ```
//! use tollgate_webhook::{Scheme, Signer};
//!
//! // The Standard Webhooks specification's published example.
//! let signer = Signer::new(Scheme::standard_webhooks(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
//! let headers = signer
//!     .sign(br#"{"test": 2432232314}"#, 1614265330, "msg_p5jXN8AQM9LWM0D4loKWxJek")
//!     .unwrap();
//! assert_eq!(headers["webhook-id"], "msg_p5jXN8AQM9LWM0D4loKWxJek");
//! assert_eq!(headers["webhook-timestamp"], "1614265330");
//! assert_eq!(headers["webhook-signature"], "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
//! ```

use base64::Engine;
use http::{HeaderMap, HeaderValue};

use crate::mac::Keys;
use crate::scheme::{
    Scheme, BASE64, STRIPE_SIGNATURE, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP, X_HUB_SIGNATURE_256,
};
use crate::secret::{SecretError, WebhookSecret};

/// Signs webhook bodies with one scheme and one or several secrets.
/// Secrets never appear in `Debug`.
#[derive(Debug, Clone)]
pub struct Signer {
    scheme: Scheme,
    keys: Keys,
}

impl Signer {
    /// A signer with one secret.
    pub fn new(scheme: Scheme, secret: impl Into<WebhookSecret>) -> Result<Signer, SecretError> {
        Signer::with_secrets(scheme, [secret])
    }

    /// A signer that, during a rotation, signs with every secret: Stripe
    /// and Standard Webhooks carry one signature per secret, so receivers
    /// holding either the old or the new secret accept the message. The
    /// seed's and GitHub's schemes carry one signature: the first secret's.
    pub fn with_secrets<I>(scheme: Scheme, secrets: I) -> Result<Signer, SecretError>
    where
        I: IntoIterator,
        I::Item: Into<WebhookSecret>,
    {
        let keys = Keys::new(&scheme, secrets)?;
        Ok(Signer { scheme, keys })
    }

    /// The scheme.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// The headers to send with `body`. `timestamp` (Unix seconds) is used
    /// by Stripe and Standard Webhooks, `id` (a unique message id, reused
    /// for retries of one message) by Standard Webhooks; the other schemes
    /// ignore them.
    pub fn sign(&self, body: &[u8], timestamp: u64, id: &str) -> Result<HeaderMap, SignError> {
        let mut headers = HeaderMap::new();
        match &self.scheme {
            Scheme::Hex { header } => {
                let tag = self.keys.tags(&[body])[0];
                headers.insert(header.clone(), header_value(hex::encode(tag)));
            }
            Scheme::HubSignature256 => {
                let tag = self.keys.tags(&[body])[0];
                headers.insert(
                    X_HUB_SIGNATURE_256,
                    header_value(format!("sha256={}", hex::encode(tag))),
                );
            }
            Scheme::Stripe => {
                let t = timestamp.to_string();
                let mut value = format!("t={t}");
                for tag in self.keys.tags(&[t.as_bytes(), b".", body]) {
                    value.push_str(",v1=");
                    value.push_str(&hex::encode(tag));
                }
                headers.insert(STRIPE_SIGNATURE, header_value(value));
            }
            Scheme::StandardWebhooks => {
                if id.is_empty() || !id.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(SignError::InvalidMessageId);
                }
                let t = timestamp.to_string();
                let signatures: Vec<String> = self
                    .keys
                    .tags(&[id.as_bytes(), b".", t.as_bytes(), b".", body])
                    .iter()
                    .map(|tag| format!("v1,{}", BASE64.encode(tag)))
                    .collect();
                headers.insert(WEBHOOK_ID, header_value(id.to_owned()));
                headers.insert(WEBHOOK_TIMESTAMP, header_value(t));
                headers.insert(WEBHOOK_SIGNATURE, header_value(signatures.join(" ")));
            }
        }
        Ok(headers)
    }
}

// Hex, base64, digits and checked ids are always valid header values.
fn header_value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).expect("visible ASCII is a valid header value")
}

/// Why a message cannot be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// A Standard Webhooks message id must be non-empty visible ASCII.
    #[error("a webhook-id must be non-empty visible ASCII without spaces")]
    InvalidMessageId,
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use proptest::prelude::*;

    use super::*;
    use crate::verify::Verifier;

    fn schemes() -> Vec<Scheme> {
        vec![
            Scheme::hex(),
            Scheme::github(),
            Scheme::stripe(),
            Scheme::standard_webhooks(),
        ]
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn github_known_answer() {
        let signer = Signer::new(Scheme::github(), "It's a Secret to Everybody").unwrap();
        let headers = signer.sign(b"Hello, World!", 0, "").unwrap();
        assert_eq!(
            headers["x-hub-signature-256"],
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        assert_eq!(headers.len(), 1);
    }

    #[test]
    fn stripe_wire_format() {
        let signer = Signer::with_secrets(Scheme::stripe(), ["whsec_new", "whsec_old"]).unwrap();
        let headers = signer.sign(b"{}", 1_700_000_000, "ignored").unwrap();
        let value = headers["stripe-signature"].to_str().unwrap();
        let items: Vec<&str> = value.split(',').collect();
        assert_eq!(items.len(), 3, "{value}");
        assert_eq!(items[0], "t=1700000000");
        assert!(items[1..]
            .iter()
            .all(|item| item.starts_with("v1=") && item.len() == 67));
        // The key is the whole secret string, whsec_ included.
        let tag = Keys::new(&Scheme::github(), ["whsec_new"])
            .unwrap()
            .tags(&[b"1700000000.{}"])[0];
        assert_eq!(items[1], format!("v1={}", hex::encode(tag)));
    }

    #[test]
    fn seed_wire_format_is_bare_lowercase_hex() {
        let signer = Signer::new(Scheme::hex(), "s3cret").unwrap();
        let headers = signer.sign(b"payload", 0, "").unwrap();
        let value = headers["x-webhook-signature"].to_str().unwrap();
        assert_eq!(value.len(), 64);
        assert!(value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    #[test]
    fn rotation_signs_with_every_secret_where_the_scheme_allows() {
        let signer = Signer::with_secrets(
            Scheme::standard_webhooks(),
            [
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ],
        )
        .unwrap();
        let headers = signer.sign(b"{}", 1_700_000_000, "msg_1").unwrap();
        let signatures = headers["webhook-signature"].to_str().unwrap();
        assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
        for secret in [
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            let verifier = Verifier::new(Scheme::standard_webhooks(), secret).unwrap();
            assert!(verifier.verify(&headers, b"{}", at(1_700_000_000)).is_ok());
        }
    }

    #[test]
    fn bad_message_ids_are_refused() {
        let signer = Signer::new(Scheme::standard_webhooks(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        for id in ["", "msg 1", "msg\n1", "msg_é"] {
            assert_eq!(signer.sign(b"{}", 1, id), Err(SignError::InvalidMessageId), "{id:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn signing_then_verifying_round_trips(
            body in proptest::collection::vec(any::<u8>(), 0..2048),
            timestamp in 0u64..4_000_000_000,
            id in "[A-Za-z0-9_.-]{1,40}",
            scheme_index in 0usize..4,
            tamper_at in any::<prop::sample::Index>(),
        ) {
            let scheme = schemes().swap_remove(scheme_index);
            let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
            let headers = Signer::new(scheme.clone(), secret).unwrap().sign(&body, timestamp, &id).unwrap();
            let verifier = Verifier::new(scheme, secret).unwrap();
            prop_assert!(verifier.verify(&headers, &body, at(timestamp)).is_ok());
            if !body.is_empty() {
                let mut tampered = body.clone();
                tampered[tamper_at.index(body.len())] ^= 0x01;
                prop_assert_eq!(
                    verifier.verify(&headers, &tampered, at(timestamp)).unwrap_err(),
                    crate::VerifyError::NoMatch
                );
            }
        }
    }
}
