//! What a limit is counted against: the [`KeyExtractor`].

use std::fmt;
use std::sync::Arc;

use http::request::Parts;
use tollgate_core::client_ip::ClientIp;
use tollgate_core::Principal;

type KeyFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;

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
    name: &'static str,
    key_for: Arc<KeyFn>,
}

impl KeyExtractor {
    /// Per API key: the [`Principal`]'s key id (the seed's rule; the default).
    pub fn api_key() -> KeyExtractor {
        KeyExtractor::named("api_key", |parts| {
            let principal = parts.extensions.get::<Principal>()?;
            Some(format!("key:{}", principal.key_id()))
        })
    }

    /// Per account: every key of an account shares one limit.
    pub fn account() -> KeyExtractor {
        KeyExtractor::named("account", |parts| {
            let principal = parts.extensions.get::<Principal>()?;
            Some(format!("account:{}", principal.account_id()))
        })
    }

    /// Per client address, as resolved by `ClientIpLayer` (tollgate-ip) into
    /// a [`ClientIp`] extension; for unauthenticated routes.
    pub fn client_ip() -> KeyExtractor {
        KeyExtractor::named("client_ip", |parts| {
            let ClientIp(ip) = parts.extensions.get::<ClientIp>()?;
            Some(format!("ip:{ip}"))
        })
    }

    /// Per method, path and API key: each key has a separate limit on each
    /// endpoint. Paths are taken literally; for routes with ids in the path
    /// use [`from_fn`](KeyExtractor::from_fn) with the route's template.
    pub fn route_and_api_key() -> KeyExtractor {
        KeyExtractor::named("route_and_api_key", |parts| {
            let principal = parts.extensions.get::<Principal>()?;
            Some(format!(
                "route:{} {}:key:{}",
                parts.method,
                parts.uri.path(),
                principal.key_id()
            ))
        })
    }

    /// Any closure over the request's head.
    pub fn from_fn(key_for: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> KeyExtractor {
        KeyExtractor::named("custom", key_for)
    }

    fn named(name: &'static str, key_for: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> KeyExtractor {
        KeyExtractor {
            name,
            key_for: Arc::new(key_for),
        }
    }

    /// The key for this request.
    pub fn extract(&self, parts: &Parts) -> Option<String> {
        (self.key_for)(parts)
    }
}

impl Default for KeyExtractor {
    fn default() -> KeyExtractor {
        KeyExtractor::api_key()
    }
}

impl fmt::Debug for KeyExtractor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyExtractor::{}", self.name)
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
