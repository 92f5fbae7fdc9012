//! Where a request comes from: the [`ClientIp`] that `ClientIpLayer`
//! (tollgate-ip) resolves once per request and puts in request extensions,
//! so IP allowlists, rate limiting by IP and logs all see the same address.
//!
//! ```
//! use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
//! use tollgate_core::ClientIp;
//!
//! // An IPv4 client seen through a dual-stack socket is still an IPv4 client.
//! let mapped = Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped();
//! assert_eq!(ClientIp::new(IpAddr::V6(mapped)).ip(), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
//! assert_eq!(ClientIp::new(IpAddr::V6(Ipv6Addr::LOCALHOST)).to_string(), "::1");
//! ```

use std::fmt;
use std::net::IpAddr;

/// The resolved address of the client that made the request.
///
/// Build it with [`ClientIp::new`] (or `From<IpAddr>`), which turns an
/// IPv4-mapped IPv6 address (`::ffff:192.0.2.7`) into the IPv4 address it
/// stands for, so one client never has two identities. The field is public
/// for pattern matching; code that builds the tuple directly bypasses that
/// normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// The client address, IPv4-mapped IPv6 normalised to IPv4.
    pub fn new(ip: IpAddr) -> ClientIp {
        ClientIp(ip.to_canonical())
    }

    /// The address.
    pub fn ip(self) -> IpAddr {
        self.0
    }
}

impl From<IpAddr> for ClientIp {
    fn from(ip: IpAddr) -> ClientIp {
        ClientIp::new(ip)
    }
}

impl From<ClientIp> for IpAddr {
    fn from(client: ClientIp) -> IpAddr {
        client.0
    }
}

impl fmt::Display for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(feature = "axum")]
mod extract {
    use super::ClientIp;
    use crate::code::Code;
    use crate::rejection::Rejection;
    use axum::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum::response::{IntoResponse, Response};
    use http::request::Parts;

    /// Extracts the address that `ClientIpLayer` resolved. Without one (the
    /// layer is missing, or the server gave it no peer address) the handler
    /// cannot be served: 500 `INTERNAL_ERROR`, never a panic. Use
    /// `Option<ClientIp>` in handlers that can do without.
    impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
        type Rejection = Response;

        async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
            parts.extensions.get::<ClientIp>().copied().ok_or_else(|| {
                Rejection::new(Code::InternalError, "The client address could not be determined.")
                    .render_default(&parts.headers)
                    .into_response()
            })
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for ClientIp {
        type Rejection = std::convert::Infallible;

        async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
            Ok(parts.extensions.get::<ClientIp>().copied())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn mapped_addresses_become_ipv4_and_others_are_kept() {
        let v4 = Ipv4Addr::new(203, 0, 113, 9);
        assert_eq!(ClientIp::new(IpAddr::V6(v4.to_ipv6_mapped())).ip(), IpAddr::V4(v4));
        assert_eq!(ClientIp::from(IpAddr::V4(v4)).ip(), IpAddr::V4(v4));
        // IPv4-compatible (deprecated, `::a.b.c.d`) is a real IPv6 address, not a mapped one.
        let compatible = IpAddr::V6(v4.to_ipv6_compatible());
        assert_eq!(ClientIp::new(compatible).ip(), compatible);
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(ClientIp::new(v6).ip(), v6);
        assert_eq!(IpAddr::from(ClientIp::new(v6)), v6);
        assert_eq!(ClientIp::new(IpAddr::V6(Ipv6Addr::LOCALHOST)).to_string(), "::1");
        assert_eq!(ClientIp::new(IpAddr::V4(v4)).to_string(), "203.0.113.9");
    }
}
