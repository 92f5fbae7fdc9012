//! [`Verifier`]: checks a message's signature headers against its raw body,
//! usable on its own (in a handler) or through the
//! [`WebhookSignatureLayer`](crate::WebhookSignatureLayer).
//!
//! ```
//! use std::time::SystemTime;
//! use http::HeaderMap;
//! use tollgate_webhook::{Scheme, Verifier};
//!
//! // GitHub's published example.
//! let verifier = Verifier::new(Scheme::github(), "It's a Secret to Everybody").unwrap();
//! let mut headers = HeaderMap::new();
//! headers.insert(
//!     "x-hub-signature-256",
//!     "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17".parse().unwrap(),
//! );
//! assert!(verifier.verify(&headers, b"Hello, World!", SystemTime::now()).is_ok());
//! assert!(verifier.verify(&headers, b"Hello, World?", SystemTime::now()).is_err());
//! ```

use std::fmt;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};
use tollgate_core::clock::unix_secs;
use tollgate_core::Rejection;

use crate::mac::{Keys, Tag};
use crate::rejections;
use crate::scheme::{
    Scheme, BASE64, STRIPE_SIGNATURE, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP, X_HUB_SIGNATURE_256,
};
use crate::secret::{SecretError, WebhookSecret};

/// How far a timestamp may be from the clock, in either direction, by default.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

// More signatures than this in one header is not rotation but abuse.
const MAX_CANDIDATES: usize = 16;

/// Verifies signatures of one [`Scheme`] under one or several secrets.
/// Comparisons are constant-time; secrets never appear in `Debug`.
///
/// Checks run in this order, and the first failure is the answer:
/// headers present, headers well-formed, timestamp within tolerance
/// (timestamped schemes), a signature matching under any secret.
#[derive(Debug, Clone)]
pub struct Verifier {
    scheme: Scheme,
    keys: Keys,
    tolerance: Duration,
}

impl Verifier {
    /// A verifier with one secret.
    pub fn new(scheme: Scheme, secret: impl Into<WebhookSecret>) -> Result<Verifier, SecretError> {
        Verifier::with_secrets(scheme, [secret])
    }

    /// A verifier accepting a signature under any of `secrets`: during a
    /// rotation, list the new secret first and the old one after it.
    pub fn with_secrets<I>(scheme: Scheme, secrets: I) -> Result<Verifier, SecretError>
    where
        I: IntoIterator,
        I::Item: Into<WebhookSecret>,
    {
        let keys = Keys::new(&scheme, secrets)?;
        Ok(Verifier {
            scheme,
            keys,
            tolerance: DEFAULT_TOLERANCE,
        })
    }

    /// How far a message's timestamp may be from the clock, in either
    /// direction (default five minutes). For schemes without a timestamp
    /// it is how long replay protection remembers a signature.
    pub fn tolerance(mut self, tolerance: Duration) -> Verifier {
        self.tolerance = tolerance;
        self
    }

    /// The scheme.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// Verifies a message: its headers and exact raw body, at `now`.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now: SystemTime) -> Result<VerifiedWebhook, VerifyError> {
        let presented = self.parse(headers)?;
        self.check_timestamp(&presented, now)?;
        self.check_signature(&presented, body)
    }

    pub(crate) fn tolerance_window(&self) -> Duration {
        self.tolerance
    }

    /// Reads the signature headers, before the body is needed.
    pub(crate) fn parse(&self, headers: &HeaderMap) -> Result<Presented, VerifyError> {
        match &self.scheme {
            Scheme::Hex { header } => {
                let value = text(headers, header)?;
                let tag = decode_hex(value).ok_or(malformed(header, "expected 64 hex digits"))?;
                Ok(Presented::signature(tag))
            }
            Scheme::HubSignature256 => {
                let value = text(headers, &X_HUB_SIGNATURE_256)?;
                let tag = value
                    .strip_prefix("sha256=")
                    .and_then(decode_hex)
                    .ok_or(malformed(&X_HUB_SIGNATURE_256, "expected sha256=<64 hex digits>"))?;
                Ok(Presented::signature(tag))
            }
            Scheme::Stripe => parse_stripe(text(headers, &STRIPE_SIGNATURE)?),
            Scheme::StandardWebhooks => parse_standard(headers),
        }
    }

    pub(crate) fn check_timestamp(&self, presented: &Presented, now: SystemTime) -> Result<(), VerifyError> {
        let Some(timestamp) = &presented.timestamp else {
            return Ok(());
        };
        let skew_secs = unix_secs(now).abs_diff(timestamp.secs);
        let tolerance_secs = self.tolerance.as_secs();
        if skew_secs > tolerance_secs {
            return Err(VerifyError::TimestampOutOfTolerance {
                timestamp: timestamp.secs,
                skew_secs,
                tolerance_secs,
            });
        }
        Ok(())
    }

    pub(crate) fn check_signature(&self, presented: &Presented, body: &[u8]) -> Result<VerifiedWebhook, VerifyError> {
        let timestamp = presented.timestamp.as_ref();
        let tags = match (&self.scheme, timestamp, &presented.id) {
            (Scheme::Stripe, Some(t), _) => self.keys.tags(&[t.text.as_bytes(), b".", body]),
            (Scheme::StandardWebhooks, Some(t), Some(id)) => {
                self.keys.tags(&[id.as_bytes(), b".", t.text.as_bytes(), b".", body])
            }
            _ => self.keys.tags(&[body]),
        };
        let mut matched = None;
        for (index, tag) in tags.iter().enumerate() {
            // Every candidate is compared, in constant time; only the
            // (public) outcome decides the branch.
            let hit = presented
                .candidates
                .iter()
                .fold(Choice::from(0), |hit, candidate| hit | tag.ct_eq(candidate));
            if bool::from(hit) && matched.is_none() {
                matched = Some(index);
            }
        }
        let secret_index = matched.ok_or(VerifyError::NoMatch)?;
        Ok(VerifiedWebhook {
            timestamp: timestamp.map(|t| t.secs),
            message_id: presented.id.clone(),
            secret_index,
            primary_tag: tags[0],
        })
    }
}

/// A message whose signature verified. The layer puts it in the request's
/// extensions for the handler.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedWebhook {
    timestamp: Option<u64>,
    message_id: Option<String>,
    secret_index: usize,
    // The tag under the primary secret: a canonical replay id whatever
    // secret or header spelling the sender used. Not shown in `Debug`.
    primary_tag: Tag,
}

impl VerifiedWebhook {
    /// The signed timestamp (Unix seconds), for timestamped schemes.
    pub fn timestamp(&self) -> Option<u64> {
        self.timestamp
    }

    /// The signed message id (`webhook-id`), for Standard Webhooks.
    pub fn message_id(&self) -> Option<&str> {
        self.message_id.as_deref()
    }

    /// Which secret matched: 0 for the first (primary) secret, 1 for the
    /// next… Watch for non-zero values to know when an old secret can go.
    pub fn secret_index(&self) -> usize {
        self.secret_index
    }

    /// The id a replay store remembers: `id:<webhook-id>` for Standard
    /// Webhooks, otherwise `mac:` and the hex of a hash of the primary
    /// secret's tag (never the tag itself: it is a valid signature).
    pub fn replay_id(&self) -> String {
        match &self.message_id {
            Some(id) => format!("id:{id}"),
            None => {
                let digest = Sha256::digest(self.primary_tag);
                format!("mac:{}", hex::encode(&digest[..16]))
            }
        }
    }
}

impl fmt::Debug for VerifiedWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedWebhook")
            .field("timestamp", &self.timestamp)
            .field("message_id", &self.message_id)
            .field("secret_index", &self.secret_index)
            .finish_non_exhaustive()
    }
}

/// Why a message failed verification (for logs; the client gets a
/// [`Rejection`] through [`VerifyError::to_rejection`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A header the scheme needs is absent.
    #[error("the {0} header is missing")]
    MissingHeader(HeaderName),
    /// A header is present but cannot be read.
    #[error("the {header} header is malformed: {problem}")]
    MalformedHeader {
        /// The header.
        header: HeaderName,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The timestamp is too old or too far in the future.
    #[error("timestamp {timestamp} is {skew_secs} s from the clock, beyond the {tolerance_secs} s tolerance")]
    TimestampOutOfTolerance {
        /// The message's timestamp (Unix seconds).
        timestamp: u64,
        /// How far it is from the clock.
        skew_secs: u64,
        /// The tolerance.
        tolerance_secs: u64,
    },
    /// No signature matches the body under any secret.
    #[error("no signature matches the message under any secret")]
    NoMatch,
}

impl VerifyError {
    /// The code of the rejection: `MISSING_SIGNATURE`, `INVALID_SIGNATURE`
    /// or `TIMESTAMP_OUT_OF_TOLERANCE`.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::MissingHeader(_) => rejections::MISSING_SIGNATURE,
            VerifyError::MalformedHeader { .. } | VerifyError::NoMatch => rejections::INVALID_SIGNATURE,
            VerifyError::TimestampOutOfTolerance { .. } => rejections::TIMESTAMP_OUT_OF_TOLERANCE,
        }
    }

    /// The 401 answer to the sender.
    pub fn to_rejection(&self) -> Rejection {
        match self {
            VerifyError::MissingHeader(header) => rejections::missing_signature(header),
            VerifyError::MalformedHeader { .. } | VerifyError::NoMatch => rejections::invalid_signature(),
            VerifyError::TimestampOutOfTolerance { tolerance_secs, .. } => {
                rejections::timestamp_out_of_tolerance(*tolerance_secs)
            }
        }
    }
}

/// The signature headers as read, before the body arrives.
#[derive(Debug)]
pub(crate) struct Presented {
    candidates: Vec<Tag>,
    timestamp: Option<Timestamp>,
    id: Option<String>,
}

#[derive(Debug)]
struct Timestamp {
    secs: u64,
    // Signed as sent, so leading zeros cannot break verification.
    text: String,
}

impl Presented {
    fn signature(tag: Tag) -> Presented {
        Presented {
            candidates: vec![tag],
            timestamp: None,
            id: None,
        }
    }
}

fn parse_stripe(value: &str) -> Result<Presented, VerifyError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for item in value.split(',') {
        let Some((key, value)) = item.trim().split_once('=') else {
            return Err(malformed(&STRIPE_SIGNATURE, "expected key=value items"));
        };
        match key {
            "t" if timestamp.is_some() => return Err(malformed(&STRIPE_SIGNATURE, "more than one t=")),
            "t" => {
                timestamp = Some(parse_timestamp(value).ok_or(malformed(&STRIPE_SIGNATURE, "t= is not Unix seconds"))?)
            }
            // A malformed v1 can never match; other schemes (v0 …) are ignored.
            "v1" => candidates.extend(decode_hex(value)),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(malformed(&STRIPE_SIGNATURE, "no t= timestamp"))?;
    check_candidates(&STRIPE_SIGNATURE, &candidates, "no v1= signature")?;
    Ok(Presented {
        candidates,
        timestamp: Some(timestamp),
        id: None,
    })
}

fn parse_standard(headers: &HeaderMap) -> Result<Presented, VerifyError> {
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

fn decode_base64(text: &str) -> Option<Tag> {
    use base64::Engine;
    if text.len() > 44 {
        return None;
    }
    let mut buffer = [0u8; 33];
    let len = BASE64.decode_slice(text, &mut buffer).ok()?;
    buffer[..len].try_into().ok()
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

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    const GITHUB_SECRET: &str = "It's a Secret to Everybody";
    const GITHUB_SIGNATURE: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const STANDARD_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const STANDARD_TIMESTAMP: u64 = 1_614_265_330;
    const STANDARD_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const STANDARD_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
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

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn standard_headers(signature: &str) -> HeaderMap {
        headers(&[
            ("webhook-id", STANDARD_ID),
            ("webhook-timestamp", &STANDARD_TIMESTAMP.to_string()),
            ("webhook-signature", signature),
        ])
    }

    #[test]
    fn github_known_answer() {
        let verifier = Verifier::new(Scheme::github(), GITHUB_SECRET).unwrap();
        let found = verifier
            .verify(
                &headers(&[("x-hub-signature-256", GITHUB_SIGNATURE)]),
                b"Hello, World!",
                at(0),
            )
            .unwrap();
        assert_eq!(found.secret_index(), 0);
        assert_eq!(found.timestamp(), None);
        let upper = GITHUB_SIGNATURE.replace("757107ea0eb", "757107EA0EB");
        assert!(verifier
            .verify(&headers(&[("x-hub-signature-256", &upper)]), b"Hello, World!", at(0))
            .is_ok());
    }

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
    fn seed_hex_scheme_signs_the_body_in_a_configurable_header() {
        let secret = "seed-secret";
        let body = b"{\"event\":\"message.delivered\"}";
        let tag = Keys::new(&Scheme::hex(), [secret]).unwrap().tags(&[body])[0];
        let verifier = Verifier::new(Scheme::hex(), secret).unwrap();
        let signed = headers(&[("x-webhook-signature", &hex::encode(tag))]);
        assert!(verifier.verify(&signed, body, at(0)).is_ok());
        let upper = headers(&[("x-webhook-signature", &hex::encode_upper(tag))]);
        assert!(verifier.verify(&upper, body, at(0)).is_ok());

        let custom = Verifier::new(Scheme::hex_in(HeaderName::from_static("x-signature")), secret).unwrap();
        assert_eq!(
            custom.verify(&signed, body, at(0)).unwrap_err(),
            VerifyError::MissingHeader(HeaderName::from_static("x-signature"))
        );
    }

    #[test]
    fn malformed_headers_are_invalid_signatures() {
        let github = Verifier::new(Scheme::github(), GITHUB_SECRET).unwrap();
        for value in ["757107ea", "sha1=757107ea", "sha256=zz", "sha256="] {
            let error = github
                .verify(&headers(&[("x-hub-signature-256", value)]), b"Hello, World!", at(0))
                .unwrap_err();
            assert!(matches!(error, VerifyError::MalformedHeader { .. }), "{value}: {error}");
            assert_eq!(error.code(), "INVALID_SIGNATURE");
        }
        let stripe = Verifier::new(Scheme::stripe(), "whsec_x").unwrap();
        let v1 = format!("v1={}", "ab".repeat(32));
        for value in [
            v1.clone(),
            "t=1614265330".to_owned(),
            format!("t=+1614265330,{v1}"),
            format!("t=1,t=2,{v1}"),
            "t=1614265330,v1=abc".to_owned(),
            "garbage".to_owned(),
        ] {
            let error = stripe
                .verify(&headers(&[("stripe-signature", &value)]), b"{}", at(1_614_265_330))
                .unwrap_err();
            assert!(matches!(error, VerifyError::MalformedHeader { .. }), "{value}: {error}");
        }
    }

    #[test]
    fn timestamps_are_checked_in_both_directions() {
        let verifier = Verifier::new(Scheme::standard_webhooks(), STANDARD_SECRET)
            .unwrap()
            .tolerance(Duration::from_secs(300));
        let signed = standard_headers(STANDARD_SIGNATURE);
        for skew in [-300i64, 0, 300] {
            let now = at(STANDARD_TIMESTAMP.checked_add_signed(skew).unwrap());
            assert!(verifier.verify(&signed, STANDARD_BODY, now).is_ok(), "skew {skew}");
        }
        for skew in [-301i64, 301, 86_400] {
            let now = at(STANDARD_TIMESTAMP.checked_add_signed(skew).unwrap());
            let error = verifier.verify(&signed, STANDARD_BODY, now).unwrap_err();
            assert_eq!(
                error,
                VerifyError::TimestampOutOfTolerance {
                    timestamp: STANDARD_TIMESTAMP,
                    skew_secs: skew.unsigned_abs(),
                    tolerance_secs: 300
                }
            );
            assert_eq!(error.code(), "TIMESTAMP_OUT_OF_TOLERANCE");
        }
    }

    #[test]
    fn rotation_accepts_every_listed_secret_and_reports_which() {
        let verifier = Verifier::with_secrets(Scheme::github(), ["new secret", GITHUB_SECRET]).unwrap();
        let signed = headers(&[("x-hub-signature-256", GITHUB_SIGNATURE)]);
        let found = verifier.verify(&signed, b"Hello, World!", at(0)).unwrap();
        assert_eq!(found.secret_index(), 1, "matched the old secret");
        let only_new = Verifier::new(Scheme::github(), "new secret").unwrap();
        assert_eq!(
            only_new.verify(&signed, b"Hello, World!", at(0)).unwrap_err(),
            VerifyError::NoMatch
        );
    }

    #[test]
    fn the_replay_id_does_not_depend_on_secret_or_spelling() {
        let verifier = Verifier::with_secrets(Scheme::github(), ["new secret", GITHUB_SECRET]).unwrap();
        let old = headers(&[("x-hub-signature-256", GITHUB_SIGNATURE)]);
        let upper = headers(&[(
            "x-hub-signature-256",
            &GITHUB_SIGNATURE.to_uppercase().replace("SHA256=", "sha256="),
        )]);
        let new_tag = Keys::new(&Scheme::github(), ["new secret"])
            .unwrap()
            .tags(&[b"Hello, World!"])[0];
        let new = headers(&[("x-hub-signature-256", &format!("sha256={}", hex::encode(new_tag)))]);
        let ids: Vec<String> = [old, upper, new]
            .iter()
            .map(|signed| verifier.verify(signed, b"Hello, World!", at(0)).unwrap().replay_id())
            .collect();
        assert_eq!(ids[0], ids[1]);
        assert_eq!(ids[0], ids[2]);
        assert!(ids[0].starts_with("mac:") && ids[0].len() == 36, "{}", ids[0]);
        assert!(
            !ids[0].contains(&hex::encode(new_tag)[..16]),
            "the tag itself is never the id"
        );
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
    fn verified_webhook_debug_hides_the_tag() {
        let verifier = Verifier::new(Scheme::github(), GITHUB_SECRET).unwrap();
        let found = verifier
            .verify(
                &headers(&[("x-hub-signature-256", GITHUB_SIGNATURE)]),
                b"Hello, World!",
                at(0),
            )
            .unwrap();
        let shown = format!("{found:?} {verifier:?}");
        assert!(!shown.contains("757107"), "{shown}");
        assert!(!shown.contains("Secret to"), "{shown}");
    }
}
