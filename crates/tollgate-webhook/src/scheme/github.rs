//! GitHub's and Meta's scheme: `X-Hub-Signature-256: sha256=<hex>`, the
//! HMAC-SHA256 of the raw body.

use http::{HeaderMap, HeaderName};

use super::{decode_hex, malformed, one_header, text, Message, Presented, Wire};
use crate::error::{SignError, VerifyError};
use crate::mac::Keys;

/// GitHub's and Meta's signature header: `X-Hub-Signature-256`.
pub const X_HUB_SIGNATURE_256: HeaderName = HeaderName::from_static("x-hub-signature-256");

/// [`Scheme::HubSignature256`](crate::Scheme::HubSignature256).
pub(crate) struct HubSignature256;

impl Wire for HubSignature256 {
    fn signature_header(&self) -> HeaderName {
        X_HUB_SIGNATURE_256
    }

    fn parse(&self, headers: &HeaderMap) -> Result<Presented, VerifyError> {
        let tag = text(headers, &X_HUB_SIGNATURE_256)?
            .strip_prefix("sha256=")
            .and_then(decode_hex)
            .ok_or(malformed(&X_HUB_SIGNATURE_256, "expected sha256=<64 hex digits>"))?;
        Ok(Presented::signature(tag))
    }

    fn sign(&self, keys: &Keys, message: &Message<'_>) -> Result<HeaderMap, SignError> {
        let tag = self.tags(keys, message)[0];
        Ok(one_header(X_HUB_SIGNATURE_256, format!("sha256={}", hex::encode(tag))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheme::tests::{at, github_headers, GITHUB_SECRET, GITHUB_SIGNATURE};
    use crate::{Scheme, Signer, Verifier};

    #[test]
    fn github_known_answer() {
        let verifier = Verifier::new(Scheme::github(), GITHUB_SECRET).unwrap();
        let found = verifier
            .verify(&github_headers(GITHUB_SIGNATURE), b"Hello, World!", at(0))
            .unwrap();
        assert_eq!(found.secret_index(), 0);
        assert_eq!(found.timestamp(), None);
        let upper = GITHUB_SIGNATURE.replace("757107ea0eb", "757107EA0EB");
        assert!(verifier
            .verify(&github_headers(&upper), b"Hello, World!", at(0))
            .is_ok());
    }

    #[test]
    fn github_known_answer_signed() {
        let signer = Signer::new(Scheme::github(), GITHUB_SECRET).unwrap();
        let headers = signer.sign(b"Hello, World!", 0, "").unwrap();
        assert_eq!(headers["x-hub-signature-256"], GITHUB_SIGNATURE);
        assert_eq!(headers.len(), 1);
    }

    #[test]
    fn malformed_headers_are_invalid_signatures() {
        let github = Verifier::new(Scheme::github(), GITHUB_SECRET).unwrap();
        for value in ["757107ea", "sha1=757107ea", "sha256=zz", "sha256="] {
            let error = github
                .verify(&github_headers(value), b"Hello, World!", at(0))
                .unwrap_err();
            assert!(matches!(error, VerifyError::MalformedHeader { .. }), "{value}: {error}");
            assert_eq!(error.code(), "INVALID_SIGNATURE");
        }
    }
}
