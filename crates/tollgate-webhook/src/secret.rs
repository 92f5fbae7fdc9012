//! [`WebhookSecret`]: the shared secret a sender signs with and a receiver
//! verifies with. It never appears in `Debug` output.

use std::fmt;

use base64::Engine;

/// Random bytes in a [`WebhookSecret::generate`]d secret (256 bits).
const GENERATED_SECRET_BYTES: usize = 32;

/// The prefix of generated secrets, the convention of Standard Webhooks
/// and Stripe.
pub const SECRET_PREFIX: &str = "whsec_";

/// A webhook signing secret, kept as the text the user configured.
///
/// How the HMAC key is derived from the text depends on the
/// [`Scheme`](crate::Scheme): the seed's, GitHub's and Stripe's schemes use
/// the whole string; Standard Webhooks base64-decodes the part after
/// `whsec_`. A [generated](WebhookSecret::generate) secret works with every
/// scheme.
///
/// ```
/// use tollgate_webhook::WebhookSecret;
///
/// let secret = WebhookSecret::generate().unwrap();
/// assert!(secret.expose().starts_with("whsec_"));
/// assert_eq!(format!("{secret:?}"), "WebhookSecret(<redacted>)");
/// ```
#[derive(Clone)]
pub struct WebhookSecret(Box<str>);

impl WebhookSecret {
    /// Wraps a secret as configured (for example read from an environment variable).
    pub fn new(secret: impl Into<String>) -> WebhookSecret {
        WebhookSecret(secret.into().into_boxed_str())
    }

    /// A new random secret: `whsec_` followed by the base64 of 32 bytes
    /// from the operating system's random source.
    pub fn generate() -> Result<WebhookSecret, SecretError> {
        let mut bytes = [0u8; GENERATED_SECRET_BYTES];
        getrandom::getrandom(&mut bytes).map_err(|_| SecretError::RandomSourceFailed)?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        Ok(WebhookSecret::new(format!("{SECRET_PREFIX}{encoded}")))
    }

    /// The secret's text, to store it or show it once to its owner.
    /// Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl From<&str> for WebhookSecret {
    fn from(secret: &str) -> WebhookSecret {
        WebhookSecret::new(secret)
    }
}

impl From<String> for WebhookSecret {
    fn from(secret: String) -> WebhookSecret {
        WebhookSecret::new(secret)
    }
}

/// Why a secret cannot be used. The messages never contain the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// No secret was given.
    #[error("at least one webhook secret is required")]
    NoSecret,
    /// The secret (or the key it decodes to) is empty.
    #[error("a webhook secret must not be empty")]
    Empty,
    /// A Standard Webhooks secret is not `whsec_` followed by base64.
    #[error("a Standard Webhooks secret must be base64, optionally prefixed with `whsec_`")]
    NotBase64,
    /// The operating system's random source failed.
    #[error("the operating system's random source failed")]
    RandomSourceFailed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_prefixed_random_and_decode_to_32_bytes() {
        let first = WebhookSecret::generate().unwrap();
        let second = WebhookSecret::generate().unwrap();
        assert_ne!(first.expose(), second.expose());
        let encoded = first.expose().strip_prefix(SECRET_PREFIX).expect("prefixed");
        let key = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
        assert_eq!(key.len(), 32);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let secret = WebhookSecret::from("It's a Secret to Everybody");
        let shown = format!("{secret:?} {:?}", Some(secret.clone()));
        assert!(!shown.contains("Secret to"), "{shown}");
        assert_eq!(secret.expose(), "It's a Secret to Everybody");
    }
}
