//! Stripe's scheme: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`,
//! signing `<t>.<body>` with the whole secret string, `whsec_` included.

use http::{HeaderMap, HeaderName};

use super::{check_candidates, decode_hex, malformed, one_header, parse_timestamp, text, Message, Presented, Wire};
use crate::error::{SignError, VerifyError};
use crate::mac::{Keys, Tag};

/// Stripe's signature header: `Stripe-Signature`.
pub const STRIPE_SIGNATURE: HeaderName = HeaderName::from_static("stripe-signature");

/// [`Scheme::Stripe`](crate::Scheme::Stripe).
pub(crate) struct Stripe;

impl Wire for Stripe {
    fn signature_header(&self) -> HeaderName {
        STRIPE_SIGNATURE
    }

    fn is_timestamped(&self) -> bool {
        true
    }

    fn parse(&self, headers: &HeaderMap) -> Result<Presented, VerifyError> {
        let value = text(headers, &STRIPE_SIGNATURE)?;
        let mut timestamp = None;
        let mut candidates = Vec::new();
        for item in value.split(',') {
            let Some((key, value)) = item.trim().split_once('=') else {
                return Err(malformed(&STRIPE_SIGNATURE, "expected key=value items"));
            };
            match key {
                "t" if timestamp.is_some() => return Err(malformed(&STRIPE_SIGNATURE, "more than one t=")),
                "t" => {
                    let parsed =
                        parse_timestamp(value).ok_or(malformed(&STRIPE_SIGNATURE, "t= is not Unix seconds"))?;
                    timestamp = Some(parsed);
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

    fn tags(&self, keys: &Keys, message: &Message<'_>) -> Vec<Tag> {
        keys.tags(&[message.timestamp.as_bytes(), b".", message.body])
    }

    fn sign(&self, keys: &Keys, message: &Message<'_>) -> Result<HeaderMap, SignError> {
        let mut value = format!("t={}", message.timestamp);
        for tag in self.tags(keys, message) {
            value.push_str(",v1=");
            value.push_str(&hex::encode(tag));
        }
        Ok(one_header(STRIPE_SIGNATURE, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheme::tests::{at, headers};
    use crate::{Scheme, Signer, Verifier};

    #[test]
    fn stripe_wire_format() {
        let signer = Signer::with_secrets(Scheme::stripe(), ["whsec_new", "whsec_old"]).unwrap();
        let headers = signer.sign(b"{}", 1_700_000_000, "ignored").unwrap();
        let value = headers["stripe-signature"].to_str().unwrap();
        let items: Vec<&str> = value.split(',').collect();
        assert_eq!(items.len(), 3, "{value}");
        assert_eq!(items[0], "t=1700000000");
        assert!(items[1..]
            .iter()
            .all(|item| item.starts_with("v1=") && item.len() == 67));
        // The key is the whole secret string, whsec_ included.
        let tag = Scheme::github().keys(["whsec_new"]).unwrap().tags(&[b"1700000000.{}"])[0];
        assert_eq!(items[1], format!("v1={}", hex::encode(tag)));
    }

    #[test]
    fn malformed_headers_are_invalid_signatures() {
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
}
