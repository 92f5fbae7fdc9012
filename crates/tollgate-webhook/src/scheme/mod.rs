//! The signature schemes on the wire: which headers carry what, what is
//! signed, and how the HMAC key comes from the secret.
//!
//! Each scheme is one file implementing [`Wire`], with its known-answer
//! tests beside it; [`Scheme`] names them. A new scheme is a new file, a
//! variant and its line in [`Scheme::wire`].

mod github;
mod seed;
mod standard;
mod stripe;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::error::{SignError, VerifyError};
use crate::mac::{Keys, Tag};
use crate::secret::{SecretError, WebhookSecret};

pub use github::X_HUB_SIGNATURE_256;
pub use seed::X_WEBHOOK_SIGNATURE;
pub use standard::{WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};
pub use stripe::STRIPE_SIGNATURE;

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
        self.wire().is_timestamped()
    }

    /// The header whose absence means "not signed at all".
    pub fn signature_header(&self) -> HeaderName {
        self.wire().signature_header()
    }

    /// The HMAC key this scheme derives from `secret`.
    pub(crate) fn key(&self, secret: &WebhookSecret) -> Result<Vec<u8>, SecretError> {
        let key = self.wire().key(secret.expose())?;
        if key.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(key)
    }

    /// The keyed HMAC states of `secrets`, the first being the primary one.
    pub(crate) fn keys<I>(&self, secrets: I) -> Result<Keys, SecretError>
    where
        I: IntoIterator,
        I::Item: Into<WebhookSecret>,
    {
        let keys = secrets.into_iter().map(|secret| self.key(&secret.into()));
        Keys::new(keys.collect::<Result<Vec<_>, _>>()?)
    }

    /// The wire format of this scheme.
    pub(crate) fn wire(&self) -> &dyn Wire {
        match self {
            // The seed's format is fixed but for the header it travels in.
            Scheme::Hex { header } => header,
            Scheme::HubSignature256 => &github::HubSignature256,
            Scheme::Stripe => &stripe::Stripe,
            Scheme::StandardWebhooks => &standard::StandardWebhooks,
        }
    }
}

/// What every scheme defines: the headers it reads and writes, what it
/// signs, and how its key comes from the secret.
pub(crate) trait Wire {
    /// The header whose absence means "not signed at all".
    fn signature_header(&self) -> HeaderName;

    /// Whether messages carry a timestamp that must be within tolerance.
    fn is_timestamped(&self) -> bool {
        false
    }

    /// The HMAC key from the secret's text (emptiness is checked after):
    /// the text itself unless the scheme says otherwise.
    fn key(&self, secret: &str) -> Result<Vec<u8>, SecretError> {
        Ok(secret.as_bytes().to_vec())
    }

    /// Reads the signature headers, before the body arrives.
    fn parse(&self, headers: &HeaderMap) -> Result<Presented, VerifyError>;

    /// The tag of what the scheme signs of `message`, under each key: the
    /// body alone unless the scheme says otherwise.
    fn tags(&self, keys: &Keys, message: &Message<'_>) -> Vec<Tag> {
        keys.tags(&[message.body])
    }

    /// The headers that carry `message`'s signatures.
    fn sign(&self, keys: &Keys, message: &Message<'_>) -> Result<HeaderMap, SignError>;
}

/// What a signature may cover: the body, and for the schemes that sign
/// them, the timestamp (as sent) and the message id; `""` where absent.
pub(crate) struct Message<'a> {
    pub(crate) body: &'a [u8],
    pub(crate) timestamp: &'a str,
    pub(crate) id: &'a str,
}

/// The signature headers as read, before the body arrives.
#[derive(Debug)]
pub(crate) struct Presented {
    pub(crate) candidates: Vec<Tag>,
    pub(crate) timestamp: Option<Timestamp>,
    pub(crate) id: Option<String>,
}

impl Presented {
    fn signature(tag: Tag) -> Presented {
        Presented {
            candidates: vec![tag],
            timestamp: None,
            id: None,
        }
    }

    /// The signed message: `body` with what the headers say was signed with it.
    pub(crate) fn message<'a>(&'a self, body: &'a [u8]) -> Message<'a> {
        Message {
            body,
            timestamp: self.timestamp.as_ref().map_or("", |timestamp| &timestamp.text),
            id: self.id.as_deref().unwrap_or(""),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Timestamp {
    pub(crate) secs: u64,
    // Signed as sent, so leading zeros cannot break verification.
    text: String,
}

// More signatures than this in one header is not rotation but abuse.
const MAX_CANDIDATES: usize = 16;

fn check_candidates(header: &HeaderName, candidates: &[Tag], none: &'static str) -> Result<(), VerifyError> {
    if candidates.is_empty() {
        return Err(malformed(header, none));
    }
    if candidates.len() > MAX_CANDIDATES {
        return Err(malformed(header, "too many signatures"));
    }
    Ok(())
}

fn text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<&'a str, VerifyError> {
    let value: &HeaderValue = headers
        .get(name)
        .ok_or_else(|| VerifyError::MissingHeader(name.clone()))?;
    value
        .to_str()
        .map(str::trim)
        .map_err(|_| malformed(name, "not visible ASCII"))
}

fn malformed(header: &HeaderName, problem: &'static str) -> VerifyError {
    VerifyError::MalformedHeader {
        header: header.clone(),
        problem,
    }
}

// Upper or lower case; exactly 32 bytes.
fn decode_hex(text: &str) -> Option<Tag> {
    let mut tag = [0u8; 32];
    hex::decode_to_slice(text, &mut tag).ok()?;
    Some(tag)
}

// Unix seconds as plain digits ("+1", " 1" or "1e9" are not timestamps).
fn parse_timestamp(text: &str) -> Option<Timestamp> {
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Timestamp {
        secs: text.parse().ok()?,
        text: text.to_owned(),
    })
}

// Hex, base64, digits and checked ids are always valid header values.
fn header_value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).expect("visible ASCII is a valid header value")
}

// The headers of a scheme whose signature travels in one header.
fn one_header(name: HeaderName, value: String) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(name, header_value(value));
    headers
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::*;

    /// Headers from name and value pairs.
    pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                )
            })
            .collect()
    }

    /// `secs` after the Unix epoch.
    pub(crate) fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    // GitHub's published example: the signature of `b"Hello, World!"`.
    pub(crate) const GITHUB_SECRET: &str = "It's a Secret to Everybody";
    pub(crate) const GITHUB_SIGNATURE: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    /// GitHub's header carrying `signature`.
    pub(crate) fn github_headers(signature: &str) -> HeaderMap {
        headers(&[("x-hub-signature-256", signature)])
    }

    // The Standard Webhooks specification's published example.
    pub(crate) const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    pub(crate) const STANDARD_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    pub(crate) const STANDARD_TIMESTAMP: u64 = 1_614_265_330;
    pub(crate) const STANDARD_BODY: &[u8] = br#"{"test": 2432232314}"#;
    pub(crate) const STANDARD_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    /// The example's id and timestamp headers, with `signature`.
    pub(crate) fn standard_headers(signature: &str) -> HeaderMap {
        headers(&[
            ("webhook-id", STANDARD_ID),
            ("webhook-timestamp", &STANDARD_TIMESTAMP.to_string()),
            ("webhook-signature", signature),
        ])
    }

    #[test]
    fn keys_follow_each_scheme() {
        let secret = WebhookSecret::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert_eq!(Scheme::stripe().key(&secret).unwrap(), secret.expose().as_bytes());
        assert_eq!(Scheme::hex().key(&secret).unwrap(), secret.expose().as_bytes());
    }

    #[test]
    fn unusable_secrets_are_errors() {
        assert_eq!(Scheme::github().key(&"".into()), Err(SecretError::Empty));
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
