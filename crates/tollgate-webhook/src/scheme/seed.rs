//! The seed API's scheme: the bare hex HMAC-SHA256 of the raw body
//! (`crypto.createHmac('sha256', secret).update(payload).digest('hex')`),
//! in `X-Webhook-Signature` or another header.

use http::{HeaderMap, HeaderName};

use super::{decode_hex, malformed, one_header, text, Message, Presented, Wire};
use crate::error::{SignError, VerifyError};
use crate::mac::Keys;

/// The seed's signature header: `X-Webhook-Signature`.
pub const X_WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("x-webhook-signature");

/// The seed's scheme is the header it travels in: the format is fixed.
impl Wire for HeaderName {
    fn signature_header(&self) -> HeaderName {
        self.clone()
    }

    fn parse(&self, headers: &HeaderMap) -> Result<Presented, VerifyError> {
        let tag = decode_hex(text(headers, self)?).ok_or(malformed(self, "expected 64 hex digits"))?;
        Ok(Presented::signature(tag))
    }

    fn sign(&self, keys: &Keys, message: &Message<'_>) -> Result<HeaderMap, SignError> {
        let tag = self.tags(keys, message)[0];
        Ok(one_header(self.clone(), hex::encode(tag)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheme::tests::{at, headers};
    use crate::{Scheme, Signer, Verifier};

    #[test]
    fn seed_hex_scheme_signs_the_body_in_a_configurable_header() {
        let secret = "seed-secret";
        let body = b"{\"event\":\"message.delivered\"}";
        let tag = Scheme::hex().keys([secret]).unwrap().tags(&[body])[0];
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
    fn seed_wire_format_is_bare_lowercase_hex() {
        let signer = Signer::new(Scheme::hex(), "s3cret").unwrap();
        let headers = signer.sign(b"payload", 0, "").unwrap();
        let value = headers["x-webhook-signature"].to_str().unwrap();
        assert_eq!(value.len(), 64);
        assert!(value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
}
