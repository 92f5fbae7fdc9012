//! The [Standard Webhooks](https://www.standardwebhooks.com/) scheme (Svix
//! and others): `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64> [v1,<base64>…]`, signing
//! `<id>.<timestamp>.<body>` with the base64-decoded part of the secret
//! after `whsec_`.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use http::{HeaderMap, HeaderName};

use super::{check_candidates, header_value, malformed, parse_timestamp, text, Message, Presented, Wire};
use crate::error::{SignError, VerifyError};
use crate::mac::{Keys, Tag};
use crate::secret::{SecretError, SECRET_PREFIX};

/// Standard Webhooks' message id header: `webhook-id`.
pub const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
/// Standard Webhooks' timestamp header: `webhook-timestamp`.
pub const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
/// Standard Webhooks' signature header: `webhook-signature`.
pub const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// Standard base64, padding optional on input, present on output.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// [`Scheme::StandardWebhooks`](crate::Scheme::StandardWebhooks).
pub(crate) struct StandardWebhooks;

impl Wire for StandardWebhooks {
    fn signature_header(&self) -> HeaderName {
        WEBHOOK_SIGNATURE
    }

    fn is_timestamped(&self) -> bool {
        true
    }

    fn key(&self, secret: &str) -> Result<Vec<u8>, SecretError> {
        let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
        BASE64.decode(encoded).map_err(|_| SecretError::NotBase64)
    }

    fn parse(&self, headers: &HeaderMap) -> Result<Presented, VerifyError> {
        // The signature first: its absence means "not signed at all".
        let signatures = text(headers, &WEBHOOK_SIGNATURE)?;
        let id = text(headers, &WEBHOOK_ID)?;
        let timestamp = text(headers, &WEBHOOK_TIMESTAMP)?;
        if id.is_empty() {
            return Err(malformed(&WEBHOOK_ID, "empty"));
        }
        let timestamp = parse_timestamp(timestamp).ok_or(malformed(&WEBHOOK_TIMESTAMP, "not Unix seconds"))?;
        let candidates: Vec<Tag> = signatures
            .split_ascii_whitespace()
            .filter_map(|signature| signature.strip_prefix("v1,"))
            .filter_map(decode_base64)
            .collect();
        check_candidates(&WEBHOOK_SIGNATURE, &candidates, "no v1,<base64> signature")?;
        Ok(Presented {
            candidates,
            timestamp: Some(timestamp),
            id: Some(id.to_owned()),
        })
    }

    fn tags(&self, keys: &Keys, message: &Message<'_>) -> Vec<Tag> {
        keys.tags(&[
            message.id.as_bytes(),
            b".",
            message.timestamp.as_bytes(),
            b".",
            message.body,
        ])
    }

    fn sign(&self, keys: &Keys, message: &Message<'_>) -> Result<HeaderMap, SignError> {
        let id = message.id;
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SignError::InvalidMessageId);
        }
        let signatures: Vec<String> = self
            .tags(keys, message)
            .iter()
            .map(|tag| format!("v1,{}", BASE64.encode(tag)))
            .collect();
        let mut headers = HeaderMap::new();
        headers.insert(WEBHOOK_ID, header_value(id.to_owned()));
        headers.insert(WEBHOOK_TIMESTAMP, header_value(message.timestamp.to_owned()));
        headers.insert(WEBHOOK_SIGNATURE, header_value(signatures.join(" ")));
        Ok(headers)
    }
}

fn decode_base64(text: &str) -> Option<Tag> {
    if text.len() > 44 {
        return None;
    }
    let mut buffer = [0u8; 33];
    let len = BASE64.decode_slice(text, &mut buffer).ok()?;
    buffer[..len].try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheme::tests::{
        at, standard_headers, STANDARD_BODY, STANDARD_ID, STANDARD_SECRET, STANDARD_SIGNATURE, STANDARD_TIMESTAMP,
    };
    use crate::{Scheme, Signer, Verifier, WebhookSecret};

    #[test]
    fn standard_webhooks_known_answer() {
        let verifier = Verifier::new(Scheme::standard_webhooks(), STANDARD_SECRET).unwrap();
        let found = verifier
            .verify(
                &standard_headers(STANDARD_SIGNATURE),
                STANDARD_BODY,
                at(STANDARD_TIMESTAMP),
            )
            .unwrap();
        assert_eq!(found.message_id(), Some(STANDARD_ID));
        assert_eq!(found.timestamp(), Some(STANDARD_TIMESTAMP));
        assert_eq!(found.replay_id(), format!("id:{STANDARD_ID}"));
        // Unpadded base64 and extra signatures around the right one are fine.
        let several = format!("v1,AAAA v1a,xyz {}", STANDARD_SIGNATURE.trim_end_matches('='));
        assert!(verifier
            .verify(&standard_headers(&several), STANDARD_BODY, at(STANDARD_TIMESTAMP))
            .is_ok());
    }

    #[test]
    fn standard_webhooks_known_answer_signed() {
        let signer = Signer::new(Scheme::standard_webhooks(), STANDARD_SECRET).unwrap();
        let headers = signer.sign(STANDARD_BODY, STANDARD_TIMESTAMP, STANDARD_ID).unwrap();
        assert_eq!(headers["webhook-id"], STANDARD_ID);
        assert_eq!(headers["webhook-timestamp"], "1614265330");
        assert_eq!(headers["webhook-signature"], STANDARD_SIGNATURE);
    }

    #[test]
    fn missing_headers_name_the_header() {
        let verifier = Verifier::new(Scheme::standard_webhooks(), STANDARD_SECRET).unwrap();
        let mut partial = standard_headers(STANDARD_SIGNATURE);
        partial.remove("webhook-id");
        let error = verifier
            .verify(&partial, STANDARD_BODY, at(STANDARD_TIMESTAMP))
            .unwrap_err();
        assert_eq!(error, VerifyError::MissingHeader(WEBHOOK_ID));
        assert_eq!(error.code(), "MISSING_SIGNATURE");
        assert_eq!(error.to_string(), "the webhook-id header is missing");
    }

    #[test]
    fn keys_are_the_base64_after_the_prefix() {
        let secret = WebhookSecret::from(STANDARD_SECRET);
        let standard = Scheme::standard_webhooks().key(&secret).unwrap();
        assert_eq!(standard.len(), 24);
        let unprefixed = WebhookSecret::from("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert_eq!(Scheme::standard_webhooks().key(&unprefixed).unwrap(), standard);
    }

    #[test]
    fn unusable_secrets_are_errors() {
        assert_eq!(
            Scheme::standard_webhooks().key(&"whsec_".into()),
            Err(SecretError::Empty)
        );
        assert_eq!(
            Scheme::standard_webhooks().key(&"whsec_not base64!".into()),
            Err(SecretError::NotBase64)
        );
    }

    #[test]
    fn bad_message_ids_are_refused() {
        let signer = Signer::new(Scheme::standard_webhooks(), STANDARD_SECRET).unwrap();
        for id in ["", "msg 1", "msg\n1", "msg_é"] {
            assert_eq!(signer.sign(b"{}", 1, id), Err(SignError::InvalidMessageId), "{id:?}");
        }
    }
}
