//! What a limit is counted against: the [`KeyExtractor`].

use std::fmt::{self, Write};
use std::sync::Arc;

use http::request::Parts;
use tollgate_core::{ClientIp, Principal};

use crate::head::Head;
use crate::text::Text;

type KeyFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;

/// A store key as the layer builds it: on the stack unless it is long (or a
/// closure made it).
pub(crate) type StoreKey = Text<96>;

/// Derives the rate-limit key from a request; `None` means the request has
/// no key (see [`MissingKey`](crate::MissingKey)).
///
/// The built-in extractors prefix their keys (`key:`, `account:`, `ip:`,
/// `route:`), so limits of different kinds can share one store without
/// meeting. A closure's keys are used as they are.
///
/// ```
/// use tollgate_ratelimit::KeyExtractor;
///
/// // One limit per tenant header, for internal callers.
/// let by_tenant = KeyExtractor::from_fn(|parts| {
///     let tenant = parts.headers.get("x-tenant")?.to_str().ok()?;
///     Some(format!("tenant:{tenant}"))
/// });
/// # let _ = by_tenant;
/// ```
#[derive(Clone)]
pub struct KeyExtractor {
    source: KeySource,
}

// The built-in keys are written into a `StoreKey` by the layer itself, so
// the default path allocates nothing; closures return their own `String`.
#[derive(Clone)]
enum KeySource {
    ApiKey,
    Account,
    ClientIp,
    RouteAndApiKey,
    Custom(Arc<KeyFn>),
}

impl KeyExtractor {
    /// Per API key: the [`Principal`]'s key id (the seed's rule; the default).
    pub fn api_key() -> KeyExtractor {
        KeyExtractor {
            source: KeySource::ApiKey,
        }
    }

    /// Per account: every key of an account shares one limit.
    pub fn account() -> KeyExtractor {
        KeyExtractor {
            source: KeySource::Account,
        }
    }

    /// Per client address, as resolved by `ClientIpLayer` (tollgate-ip) into
    /// a [`ClientIp`] extension; for unauthenticated routes.
    pub fn client_ip() -> KeyExtractor {
        KeyExtractor {
            source: KeySource::ClientIp,
        }
    }

    /// Per method, path and API key: each key has a separate limit on each
    /// endpoint. Paths are taken literally; for routes with ids in the path
    /// use [`from_fn`](KeyExtractor::from_fn) with the route's template.
    pub fn route_and_api_key() -> KeyExtractor {
        KeyExtractor {
            source: KeySource::RouteAndApiKey,
        }
    }

    /// Any closure over the request's head.
    pub fn from_fn(key_for: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> KeyExtractor {
        KeyExtractor {
            source: KeySource::Custom(Arc::new(key_for)),
        }
    }

    /// The key for this request.
    pub fn extract(&self, parts: &Parts) -> Option<String> {
        self.store_key(parts, parts.extensions.get::<Principal>())
            .map(StoreKey::into_string)
    }

    /// The key for this request, built without allocating when it is short;
    /// `principal` is the request's.
    pub(crate) fn store_key(&self, head: &impl Head, principal: Option<&Principal>) -> Option<StoreKey> {
        let mut key = StoreKey::new();
        match &self.source {
            KeySource::ApiKey => {
                key.push_str("key:");
                key.push_str(principal?.key_id());
            }
            KeySource::Account => {
                key.push_str("account:");
                key.push_str(principal?.account_id());
            }
            KeySource::ClientIp => {
                let ClientIp(ip) = head.extensions().get::<ClientIp>()?;
                // Writing into a `Text` cannot fail.
                let _ = write!(key, "ip:{ip}");
            }
            KeySource::RouteAndApiKey => {
                let principal = principal?;
                key.push_str("route:");
                key.push_str(head.method().as_str());
                key.push_str(" ");
                key.push_str(head.uri().path());
                key.push_str(":key:");
                key.push_str(principal.key_id());
            }
            // The layer splits the request whenever a closure is configured.
            KeySource::Custom(key_for) => return key_for(head.parts()?).map(StoreKey::from_string),
        }
        Some(key)
    }

    /// Whether this is a closure, which reads the request's `Parts`.
    pub(crate) fn reads_parts(&self) -> bool {
        matches!(self.source, KeySource::Custom(_))
    }

    fn name(&self) -> &'static str {
        match self.source {
            KeySource::ApiKey => "api_key",
            KeySource::Account => "account",
            KeySource::ClientIp => "client_ip",
            KeySource::RouteAndApiKey => "route_and_api_key",
            KeySource::Custom(_) => "custom",
        }
    }
}

impl Default for KeyExtractor {
    fn default() -> KeyExtractor {
        KeyExtractor::api_key()
    }
}

impl fmt::Debug for KeyExtractor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyExtractor::{}", self.name())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use tollgate_core::KeyKind;

    fn parts() -> Parts {
        let mut request = http::Request::post("/v1/messages?x=1").body(()).unwrap();
        request
            .extensions_mut()
            .insert(Principal::new("acct_1", "key_1", KeyKind::Production));
        request
            .extensions_mut()
            .insert(ClientIp::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))));
        request.into_parts().0
    }

    #[test]
    fn built_in_keys_are_prefixed() {
        let parts = parts();
        assert_eq!(KeyExtractor::api_key().extract(&parts).unwrap(), "key:key_1");
        assert_eq!(KeyExtractor::account().extract(&parts).unwrap(), "account:acct_1");
        assert_eq!(KeyExtractor::client_ip().extract(&parts).unwrap(), "ip:192.0.2.7");
        assert_eq!(
            KeyExtractor::route_and_api_key().extract(&parts).unwrap(),
            "route:POST /v1/messages:key:key_1"
        );
        assert_eq!(format!("{:?}", KeyExtractor::default()), "KeyExtractor::api_key");
    }

    #[test]
    fn long_keys_are_whole() {
        let long_path = format!("/v1/{}", "segment/".repeat(40));
        let mut request = http::Request::get(long_path.as_str()).body(()).unwrap();
        let long_id = "k".repeat(200);
        request
            .extensions_mut()
            .insert(Principal::new("acct_1", long_id.as_str(), KeyKind::Production));
        let parts = request.into_parts().0;
        assert_eq!(
            KeyExtractor::route_and_api_key().extract(&parts).unwrap(),
            format!("route:GET {long_path}:key:{long_id}")
        );
        assert_eq!(
            KeyExtractor::api_key().extract(&parts).unwrap(),
            format!("key:{long_id}")
        );
        let custom = KeyExtractor::from_fn(|parts| Some(parts.uri.path().to_owned()));
        assert_eq!(custom.extract(&parts).unwrap(), long_path);
        assert_eq!(format!("{custom:?}"), "KeyExtractor::custom");
    }

    #[test]
    fn requests_without_the_extension_have_no_key() {
        let bare = http::Request::new(()).into_parts().0;
        for extractor in [
            KeyExtractor::api_key(),
            KeyExtractor::account(),
            KeyExtractor::client_ip(),
            KeyExtractor::route_and_api_key(),
        ] {
            assert_eq!(extractor.extract(&bare), None, "{extractor:?}");
        }
    }
}
