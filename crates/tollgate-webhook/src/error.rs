//! The errors of verifying and signing: [`VerifyError`] (for logs; the
//! sender gets its [`Rejection`]) and [`SignError`].

use http::HeaderName;
use tollgate_core::{Code, Rejection};

use crate::rejections;

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
        let code = match self {
            VerifyError::MissingHeader(_) => Code::MissingSignature,
            VerifyError::MalformedHeader { .. } | VerifyError::NoMatch => Code::InvalidSignature,
            VerifyError::TimestampOutOfTolerance { .. } => Code::TimestampOutOfTolerance,
        };
        code.as_str()
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

/// Why a message cannot be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// A Standard Webhooks message id must be non-empty visible ASCII.
    #[error("a webhook-id must be non-empty visible ASCII without spaces")]
    InvalidMessageId,
}
