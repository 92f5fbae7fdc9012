//! The signature schemes on the wire: which headers carry what, what is
//! signed, and how the HMAC key comes from the secret.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use http::HeaderName;

use crate::secret::{SecretError, WebhookSecret, SECRET_PREFIX};

/// The seed's signature header: `X-Webhook-Signature`.
pub const X_WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("x-webhook-signature");
/// GitHub's and Meta's signature header: `X-Hub-Signature-256`.
pub const X_HUB_SIGNATURE_256: HeaderName = HeaderName::from_static("x-hub-signature-256");
/// Stripe's signature header: `Stripe-Signature`.
pub const STRIPE_SIGNATURE: HeaderName = HeaderName::from_static("stripe-signature");
/// Standard Webhooks' message id header: `webhook-id`.
pub const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
/// Standard Webhooks' timestamp header: `webhook-timestamp`.
pub const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
/// Standard Webhooks' signature header: `webhook-signature`.
pub const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// A webhook signature scheme. Every scheme is HMAC-SHA256; they differ in
/// headers, encoding, what is signed and how the key comes from the secret.
///
/// | scheme | headers | signed bytes | key |
/// |---|---|---|---|
/// | [`Hex`](Scheme::Hex) (the seed's) | `X-Webhook-Signature: <hex>` | body | the secret string |
/// | [`HubSignature256`](Scheme::HubSignature256) (GitHub, Meta) | `X-Hub-Signature-256: sha256=<hex>` | body | the secret string |
/// | [`Stripe`](Scheme::Stripe) | `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]` | `<t>.<body>` | the whole secret string, `whsec_` included |
/// | [`StandardWebhooks`](Scheme::StandardWebhooks) | `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64> [v1,<base64>…]` | `<id>.<timestamp>.<body>` | base64-decoded part after `whsec_` |
///
/// Hex is accepted in upper or lower case and produced in lower case;
/// base64 is the standard alphabet, with or without padding.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scheme {
    /// The seed's scheme: the bare hex HMAC-SHA256 of the raw body in
    /// `header` (`X-Webhook-Signature` by default, see [`Scheme::hex`]).
    Hex {
        /// The header carrying the signature.
        header: HeaderName,
    },
    /// GitHub's and Meta's (WhatsApp Cloud API) scheme:
    /// `X-Hub-Signature-256: sha256=<hex>` of the raw body.
    HubSignature256,
    /// Stripe's scheme: `Stripe-Signature: t=<unix>,v1=<hex>`, signing
    /// `<t>.<body>`, with a timestamp tolerance.
    Stripe,
    /// The Standard Webhooks specification (Svix and others): signing
    /// `<webhook-id>.<webhook-timestamp>.<body>`, with a timestamp tolerance.
    StandardWebhooks,
}

impl Scheme {
    /// The seed's scheme in its default header, `X-Webhook-Signature`.
    pub fn hex() -> Scheme {
        Scheme::Hex {
            header: X_WEBHOOK_SIGNATURE,
        }
    }

    /// The seed's scheme in another header.
    pub fn hex_in(header: HeaderName) -> Scheme {
        Scheme::Hex { header }
    }

    /// GitHub's scheme, `X-Hub-Signature-256: sha256=<hex>`.
    pub fn github() -> Scheme {
        Scheme::HubSignature256
    }

    /// Meta's (WhatsApp Cloud API, Messenger) scheme: the same as GitHub's,
    /// keyed with the app secret.
    pub fn meta() -> Scheme {
        Scheme::HubSignature256
    }

    /// Stripe's scheme.
    pub fn stripe() -> Scheme {
        Scheme::Stripe
    }

    /// The Standard Webhooks scheme.
    pub fn standard_webhooks() -> Scheme {
        Scheme::StandardWebhooks
    }

    /// Whether messages carry a timestamp that must be within tolerance.
    pub fn is_timestamped(&self) -> bool {
        matches!(self, Scheme::Stripe | Scheme::StandardWebhooks)
    }

    /// The header whose absence means "not signed at all".
    pub fn signature_header(&self) -> HeaderName {
        match self {
            Scheme::Hex { header } => header.clone(),
            Scheme::HubSignature256 => X_HUB_SIGNATURE_256,
            Scheme::Stripe => STRIPE_SIGNATURE,
            Scheme::StandardWebhooks => WEBHOOK_SIGNATURE,
        }
    }

    /// The HMAC key this scheme derives from `secret`.
    pub(crate) fn key(&self, secret: &WebhookSecret) -> Result<Vec<u8>, SecretError> {
        let text = secret.expose();
        let key = match self {
            Scheme::Hex { .. } | Scheme::HubSignature256 | Scheme::Stripe => text.as_bytes().to_vec(),
            Scheme::StandardWebhooks => {
                let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
                BASE64.decode(encoded).map_err(|_| SecretError::NotBase64)?
            }
        };
        if key.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(key)
    }
}

/// Standard base64, padding optional on input, present on output.
pub(crate) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_each_scheme() {
        let secret = WebhookSecret::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert_eq!(Scheme::stripe().key(&secret).unwrap(), secret.expose().as_bytes());
        assert_eq!(Scheme::hex().key(&secret).unwrap(), secret.expose().as_bytes());
        let standard = Scheme::standard_webhooks().key(&secret).unwrap();
        assert_eq!(standard.len(), 24);
        let unprefixed = WebhookSecret::from("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert_eq!(Scheme::standard_webhooks().key(&unprefixed).unwrap(), standard);
    }

    #[test]
    fn unusable_secrets_are_errors() {
        assert_eq!(Scheme::github().key(&"".into()), Err(SecretError::Empty));
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
    fn only_stripe_and_standard_webhooks_are_timestamped() {
        assert!(Scheme::stripe().is_timestamped());
        assert!(Scheme::standard_webhooks().is_timestamped());
        assert!(!Scheme::hex().is_timestamped());
        assert!(!Scheme::meta().is_timestamped());
        assert_eq!(Scheme::meta(), Scheme::github());
        assert_eq!(Scheme::hex().signature_header(), "x-webhook-signature");
    }
}
