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

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};
use tollgate_core::unix_secs;

pub use crate::error::VerifyError;
use crate::mac::{Keys, Tag};
use crate::scheme::{Presented, Scheme};
use crate::secret::{SecretError, WebhookSecret};

/// How far a timestamp may be from the clock, in either direction, by default.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

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
        let keys = scheme.keys(secrets)?;
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
        self.scheme.wire().parse(headers)
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
        let tags = self.scheme.wire().tags(&self.keys, &presented.message(body));
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
            timestamp: presented.timestamp.as_ref().map(|t| t.secs),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheme::tests::{
        at, github_headers, standard_headers, GITHUB_SECRET, GITHUB_SIGNATURE, STANDARD_BODY, STANDARD_SECRET,
        STANDARD_SIGNATURE, STANDARD_TIMESTAMP,
    };

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
        let signed = github_headers(GITHUB_SIGNATURE);
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
        let old = github_headers(GITHUB_SIGNATURE);
        let upper = github_headers(&GITHUB_SIGNATURE.to_uppercase().replace("SHA256=", "sha256="));
        let new_tag = Scheme::github().keys(["new secret"]).unwrap().tags(&[b"Hello, World!"])[0];
        let new = github_headers(&format!("sha256={}", hex::encode(new_tag)));
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
    fn verified_webhook_debug_hides_the_tag() {
        let verifier = Verifier::new(Scheme::github(), GITHUB_SECRET).unwrap();
        let found = verifier
            .verify(&github_headers(GITHUB_SIGNATURE), b"Hello, World!", at(0))
            .unwrap();
        let shown = format!("{found:?} {verifier:?}");
        assert!(!shown.contains("757107"), "{shown}");
        assert!(!shown.contains("Secret to"), "{shown}");
    }
}
