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

use http::HeaderMap;

pub use crate::error::SignError;
use crate::mac::Keys;
use crate::scheme::{Message, Scheme};
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
        let keys = scheme.keys(secrets)?;
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
        let timestamp = timestamp.to_string();
        let message = Message {
            body,
            timestamp: &timestamp,
            id,
        };
        self.scheme.wire().sign(&self.keys, &message)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::scheme::tests::at;
    use crate::verify::Verifier;

    fn schemes() -> Vec<Scheme> {
        vec![
            Scheme::hex(),
            Scheme::github(),
            Scheme::stripe(),
            Scheme::standard_webhooks(),
        ]
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
