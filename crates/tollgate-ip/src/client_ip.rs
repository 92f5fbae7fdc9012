//! [`ClientIpLayer`]: resolves the client's address once per request, behind
//! any trusted proxies, and puts it in request extensions as
//! [`ClientIp`] for every later layer (allowlists, rate limiting by IP,
//! logs) and for handlers.
//!
//! # Where the peer address comes from
//!
//! The peer is the address at the other end of the TCP connection. Servers
//! put it in request extensions in different ways; the layer looks, in order:
//!
//! - **A peer extractor you supply** ([`ClientIpLayer::peer_extractor`]):
//!   when set, it is the only source. tonic, for example, stores a
//!   `TcpConnectInfo` in each request's extensions (tollgate does not depend
//!   on tonic, so you name it yourself):
//!
//!   ```ignore
//!   use tonic::transport::server::TcpConnectInfo;
//!   let layer = ClientIpLayer::new().peer_extractor(|extensions| {
//!       extensions.get::<TcpConnectInfo>()?.remote_addr().map(|addr| addr.ip())
//!   });
//!   ```
//!
//! - **axum's `ConnectInfo<SocketAddr>`** (with this crate's `axum`
//!   feature), present when the router is served with
//!   `router.into_make_service_with_connect_info::<SocketAddr>()`.
//! - **A plain [`SocketAddr`] extension**. With hyper (or hyper-util)
//!   directly, insert the address that `accept()` returned into each
//!   request of that connection, for example with
//!   `tower_http::add_extension::AddExtensionLayer::new(peer)` in the
//!   per-connection service, or `request.extensions_mut().insert(peer)` in
//!   a `service_fn`.
//!
//! Without a peer address no [`ClientIp`] is inserted (and any one already
//! there is removed), so an IP allowlist behind this layer refuses the
//! request: the layer fails closed.
//!
//! # Proxies
//!
//! With no trusted proxies (the default) the peer address is the client and
//! forwarding headers are ignored: anyone can write them.
//!
//! Behind proxies, trust them explicitly and pick the header they write
//! ([`ForwardedHeader`]; the other header is ignored). The layer walks that
//! header's hops from the right (every header line, in order, as if joined
//! with commas), because each proxy *appends* the address it saw: the
//! rightmost entries come from our own proxies, the leftmost from whoever
//! sent the request and can say anything.
//!
//! - [`ClientIpLayer::trusted_proxies`] (CIDRs): if the peer is not a
//!   trusted proxy, it is the client. Otherwise each hop from the right that
//!   is a trusted proxy is skipped; the first one that is not is the
//!   client. If every hop is a trusted proxy, the leftmost is the client (a
//!   host inside the trusted network).
//! - [`ClientIpLayer::trusted_hops`] (a count `n`, when every request is
//!   known to cross exactly `n` proxies): the `n`-th hop from the right is
//!   the client, or the leftmost when there are fewer. The peer is not
//!   checked, so a client that can reach the server directly could claim any
//!   address: prefer CIDRs whenever the proxies' addresses are known.
//!
//! **When a hop has no usable address** (`unknown`, an obfuscated `_name`,
//! an entry that does not parse, a `Forwarded` element without `for=`, or a
//! syntax error that makes the rest of a line unreadable), the walk stops
//! there and the client is the *nearest hop*: the last address the walk
//! accepted, which is the peer when the break is the rightmost hop. That
//! address was either seen on our own socket or written by a proxy we
//! trust, so nothing the client wrote can be chosen; the request is
//! attributed to the proxy that could not name its client, which no
//! customer allowlist should contain.
//!
//! Addresses are normalised: IPv4-mapped IPv6 (`::ffff:192.0.2.1`) becomes
//! IPv4.
//!
//! # Example
//!
//! ```
//! use std::net::SocketAddr;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use bytes::Bytes;
//! use tollgate_core::ClientIp;
//! use tollgate_ip::ClientIpLayer;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # tokio_test::block_on(async {
//! // Our load balancers live in 10.0.0.0/8 and append to X-Forwarded-For.
//! let service = ServiceBuilder::new()
//!     .layer(ClientIpLayer::new().trusted_proxies(["10.0.0.0/8".parse().unwrap()]))
//!     .service(service_fn(|request: Request<Full<Bytes>>| async move {
//!         let client = request.extensions().get::<ClientIp>().copied();
//!         Ok::<_, std::convert::Infallible>(Response::new(format!("{client:?}")))
//!     }));
//!
//! let mut request = Request::builder()
//!     // The client claims 192.0.2.66; the balancer appended what it saw.
//!     .header("x-forwarded-for", "192.0.2.66, 198.51.100.23")
//!     .body(Full::new(Bytes::new()))
//!     .unwrap();
//! request.extensions_mut().insert("10.1.2.3:41000".parse::<SocketAddr>().unwrap());
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.body(), "Some(ClientIp(198.51.100.23))");
//! # });
//! ```

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Extensions, HeaderMap, Request};
use ipnet::IpNet;
use tollgate_core::allowlist::IpSet;
use tollgate_core::ClientIp;
use tower_layer::Layer;
use tower_service::Service;

use crate::forwarded::{forwarded_hops, x_forwarded_for_from_right};

/// The header trusted proxies report the chain of addresses in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the default).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:4711"`.
    Forwarded,
}

type PeerExtractor = dyn Fn(&Extensions) -> Option<IpAddr> + Send + Sync;

#[derive(Clone)]
enum Trust {
    Nobody,
    Networks(Arc<IpSet>),
    Hops(usize),
}

#[derive(Clone)]
struct Resolver {
    trust: Trust,
    header: ForwardedHeader,
    peer_extractor: Option<Arc<PeerExtractor>>,
}

/// Resolves the client address and inserts it as [`ClientIp`]; see the
/// [module docs](self) for the rules.
#[derive(Clone)]
pub struct ClientIpLayer {
    resolver: Arc<Resolver>,
}

impl ClientIpLayer {
    /// The peer address is the client; forwarding headers are ignored.
    pub fn new() -> ClientIpLayer {
        ClientIpLayer {
            resolver: Arc::new(Resolver {
                trust: Trust::Nobody,
                header: ForwardedHeader::default(),
                peer_extractor: None,
            }),
        }
    }

    fn resolver_mut(&mut self) -> &mut Resolver {
        Arc::make_mut(&mut self.resolver)
    }

    /// Trusts proxies in these networks: the forwarding header is read when
    /// the peer is one of them, skipping every hop that is one of them.
    /// Replaces [`trusted_hops`](Self::trusted_hops).
    pub fn trusted_proxies(mut self, networks: impl IntoIterator<Item = IpNet>) -> ClientIpLayer {
        self.resolver_mut().trust = Trust::Networks(Arc::new(IpSet::new(networks)));
        self
    }

    /// Trusts exactly `hops` proxies in front of the server, whatever their
    /// addresses (`0` trusts none). Replaces
    /// [`trusted_proxies`](Self::trusted_proxies).
    pub fn trusted_hops(mut self, hops: usize) -> ClientIpLayer {
        self.resolver_mut().trust = if hops == 0 { Trust::Nobody } else { Trust::Hops(hops) };
        self
    }

    /// The header the trusted proxies write (default `X-Forwarded-For`).
    pub fn header(mut self, header: ForwardedHeader) -> ClientIpLayer {
        self.resolver_mut().header = header;
        self
    }

    /// Reads the peer address with `extractor` instead of the built-in
    /// sources (see the [module docs](self)).
    pub fn peer_extractor<F>(mut self, extractor: F) -> ClientIpLayer
    where
        F: Fn(&Extensions) -> Option<IpAddr> + Send + Sync + 'static,
    {
        self.resolver_mut().peer_extractor = Some(Arc::new(extractor));
        self
    }

    /// The client address of `request`, as the layer would insert it.
    pub fn resolve<B>(&self, request: &Request<B>) -> Option<ClientIp> {
        let peer = self.peer_address(request.extensions())?;
        Some(self.resolve_from(peer, request.headers()))
    }

    /// The peer address found in `extensions`, if any.
    pub fn peer_address(&self, extensions: &Extensions) -> Option<IpAddr> {
        self.resolver.peer_address(extensions)
    }

    /// The client address of a request from `peer` with these headers.
    pub fn resolve_from(&self, peer: IpAddr, headers: &HeaderMap) -> ClientIp {
        ClientIp::new(self.resolver.resolve(peer.to_canonical(), headers))
    }
}

impl Default for ClientIpLayer {
    fn default() -> ClientIpLayer {
        ClientIpLayer::new()
    }
}

impl fmt::Debug for ClientIpLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let trust = match &self.resolver.trust {
            Trust::Nobody => "nobody".to_owned(),
            Trust::Networks(set) => format!("{set:?}"),
            Trust::Hops(hops) => format!("{hops} hops"),
        };
        f.debug_struct("ClientIpLayer")
            .field("trust", &trust)
            .field("header", &self.resolver.header)
            .field("peer_extractor", &self.resolver.peer_extractor.is_some())
            .finish()
    }
}

impl Resolver {
    fn peer_address(&self, extensions: &Extensions) -> Option<IpAddr> {
        if let Some(extractor) = &self.peer_extractor {
            return extractor(extensions);
        }
        #[cfg(feature = "axum")]
        if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
            return Some(info.0.ip());
        }
        extensions.get::<SocketAddr>().map(SocketAddr::ip)
    }

    fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if let Trust::Networks(set) = &self.trust {
            if !set.contains(peer) {
                return peer;
            }
        }
        match self.header {
            ForwardedHeader::XForwardedFor => self.walk(peer, x_forwarded_for_from_right(headers)),
            ForwardedHeader::Forwarded => self.walk(peer, forwarded_hops(headers).into_iter().rev()),
        }
    }

    // `hops` runs from the right (our side). `nearest` is the last address
    // the walk accepted: the peer, then each trusted hop.
    fn walk(&self, peer: IpAddr, hops: impl Iterator<Item = Option<IpAddr>>) -> IpAddr {
        let mut nearest = peer;
        let (trusted, limit) = match &self.trust {
            Trust::Nobody => return peer,
            Trust::Networks(set) => (Some(set), usize::MAX),
            Trust::Hops(count) => (None, *count),
        };
        for hop in hops.take(limit) {
            let Some(address) = hop.map(|address| address.to_canonical()) else {
                tracing::debug!(%nearest, "a forwarding hop names no address; using the nearest hop");
                return nearest;
            };
            nearest = address;
            if trusted.is_some_and(|set| !set.contains(address)) {
                return address;
            }
        }
        nearest
    }
}

impl<S> Layer<S> for ClientIpLayer {
    type Service = ResolveClientIp<S>;

    fn layer(&self, inner: S) -> ResolveClientIp<S> {
        ResolveClientIp {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`ClientIpLayer`]: inserts [`ClientIp`], then calls the
/// inner service with the request. It never refuses a request itself.
#[derive(Clone, Debug)]
pub struct ResolveClientIp<S> {
    inner: S,
    layer: ClientIpLayer,
}

impl<S> ResolveClientIp<S> {
    /// Wraps `inner` with the rules of `layer`.
    pub fn new(inner: S, layer: ClientIpLayer) -> ResolveClientIp<S> {
        ResolveClientIp { inner, layer }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for ResolveClientIp<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> S::Future {
        match self.layer.resolve(&request) {
            Some(client) => {
                request.extensions_mut().insert(client);
            }
            None => {
                // This layer is the authority on the client address: a value
                // it cannot vouch for must not reach the allowlist.
                request.extensions_mut().remove::<ClientIp>();
                tracing::debug!("no peer address in the request; no client IP");
            }
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderName, FORWARDED};
    use http::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    fn xff() -> HeaderName {
        HeaderName::from_static("x-forwarded-for")
    }

    fn headers(name: &HeaderName, lines: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for line in lines {
            map.append(name.clone(), HeaderValue::from_str(line).unwrap());
        }
        map
    }

    fn cidrs() -> ClientIpLayer {
        ClientIpLayer::new().trusted_proxies([net("10.0.0.0/8"), net("fd00::/8")])
    }

    struct Case {
        name: &'static str,
        layer: ClientIpLayer,
        peer: &'static str,
        header: HeaderName,
        lines: &'static [&'static str],
        client: &'static str,
    }

    fn case(
        name: &'static str,
        layer: ClientIpLayer,
        peer: &'static str,
        lines: &'static [&'static str],
        client: &'static str,
    ) -> Case {
        Case {
            name,
            layer,
            peer,
            header: xff(),
            lines,
            client,
        }
    }

    fn forwarded(mut case: Case) -> Case {
        case.layer = case.layer.header(ForwardedHeader::Forwarded);
        case.header = FORWARDED;
        case
    }

    #[test]
    fn resolution_table() {
        let peer = "10.0.0.1";
        let cases = [
            // No trusted proxies: the peer, whatever the headers say.
            case(
                "no proxies ignore XFF",
                ClientIpLayer::new(),
                "203.0.113.5",
                &["1.1.1.1"],
                "203.0.113.5",
            ),
            forwarded(case(
                "no proxies ignore Forwarded",
                ClientIpLayer::new(),
                "203.0.113.5",
                &["for=1.1.1.1"],
                "203.0.113.5",
            )),
            case(
                "no proxies, mapped peer",
                ClientIpLayer::new(),
                "::ffff:203.0.113.5",
                &[],
                "203.0.113.5",
            ),
            case(
                "zero hops trusts nobody",
                ClientIpLayer::new().trusted_hops(0),
                "203.0.113.5",
                &["1.1.1.1"],
                "203.0.113.5",
            ),
            // Trusted CIDRs.
            case(
                "untrusted peer: headers ignored",
                cidrs(),
                "198.51.100.9",
                &["1.1.1.1"],
                "198.51.100.9",
            ),
            case("trusted peer without header", cidrs(), peer, &[], peer),
            case("one trusted hop", cidrs(), peer, &["198.51.100.23"], "198.51.100.23"),
            case(
                "two trusted hops",
                cidrs(),
                peer,
                &["198.51.100.23, 10.0.0.2"],
                "198.51.100.23",
            ),
            case(
                "spoofed leftmost entries",
                cidrs(),
                peer,
                &["6.6.6.6, 10.9.9.9, 198.51.100.23, 10.0.0.2"],
                "198.51.100.23",
            ),
            case(
                "spoofed trusted-looking leftmost",
                cidrs(),
                peer,
                &["10.0.0.99, 198.51.100.23"],
                "198.51.100.23",
            ),
            case(
                "lines joined in order (a)",
                cidrs(),
                peer,
                &["6.6.6.6", "198.51.100.23, 10.0.0.2"],
                "198.51.100.23",
            ),
            case(
                "lines joined in order (b)",
                cidrs(),
                peer,
                &["6.6.6.6, 198.51.100.23", "10.0.0.2"],
                "198.51.100.23",
            ),
            case(
                "lines joined in order (c)",
                cidrs(),
                peer,
                &["198.51.100.23", "10.0.0.2", "10.0.0.3"],
                "198.51.100.23",
            ),
            case(
                "every hop trusted: leftmost",
                cidrs(),
                peer,
                &["10.5.5.5, 10.0.0.2"],
                "10.5.5.5",
            ),
            case(
                "mapped hops are normalised",
                cidrs(),
                "::ffff:10.0.0.1",
                &["::ffff:198.51.100.23, ::ffff:10.0.0.2"],
                "198.51.100.23",
            ),
            case(
                "entry with a port",
                cidrs(),
                peer,
                &["198.51.100.23:5555"],
                "198.51.100.23",
            ),
            case(
                "bracketed IPv6 with a port",
                cidrs(),
                peer,
                &["[2001:db8::7]:5555"],
                "2001:db8::7",
            ),
            case(
                "IPv6 proxies",
                cidrs(),
                "fd00::1",
                &["2001:db8::7, fd00::2"],
                "2001:db8::7",
            ),
            case(
                "unknown rightmost: the peer",
                cidrs(),
                peer,
                &["6.6.6.6, unknown"],
                peer,
            ),
            case(
                "garbage mid-chain: nearest hop",
                cidrs(),
                peer,
                &["6.6.6.6, garbage, 10.0.0.2"],
                "10.0.0.2",
            ),
            case(
                "empty entries are no hops",
                cidrs(),
                peer,
                &["198.51.100.23,, ,10.0.0.2,"],
                "198.51.100.23",
            ),
            case("commas only: the peer", cidrs(), peer, &[",,,"], peer),
            case("empty header: the peer", cidrs(), peer, &[""], peer),
            case("Forwarded is not read for XFF", cidrs(), peer, &[], peer),
            forwarded(case("XFF is not read for Forwarded", cidrs(), peer, &[], peer)),
            // RFC 7239 Forwarded.
            forwarded(case(
                "Forwarded two hops",
                cidrs(),
                peer,
                &["for=198.51.100.23;proto=https, for=10.0.0.2;by=10.0.0.1"],
                "198.51.100.23",
            )),
            forwarded(case(
                "Forwarded quoted IPv6 with port",
                cidrs(),
                peer,
                &["for=\"[2001:db8:cafe::17]:4711\""],
                "2001:db8:cafe::17",
            )),
            forwarded(case(
                "Forwarded quoted IPv4 with port",
                cidrs(),
                peer,
                &["for=\"198.51.100.23:4711\""],
                "198.51.100.23",
            )),
            forwarded(case(
                "Forwarded unknown: the peer",
                cidrs(),
                peer,
                &["for=6.6.6.6, for=unknown"],
                peer,
            )),
            forwarded(case(
                "Forwarded obfuscated: nearest hop",
                cidrs(),
                peer,
                &["for=6.6.6.6, for=_hidden, for=10.0.0.2"],
                "10.0.0.2",
            )),
            forwarded(case(
                "Forwarded quoted obfuscated",
                cidrs(),
                peer,
                &["for=\"_SEVKISEK:_port\""],
                peer,
            )),
            forwarded(case(
                "Forwarded without for: the peer",
                cidrs(),
                peer,
                &["for=6.6.6.6, by=10.0.0.9;proto=http"],
                peer,
            )),
            forwarded(case(
                "Forwarded spoofed leftmost",
                cidrs(),
                peer,
                &["for=6.6.6.6, for=198.51.100.23"],
                "198.51.100.23",
            )),
            forwarded(case(
                "Forwarded lines joined in order",
                cidrs(),
                peer,
                &["for=6.6.6.6", "for=198.51.100.23", "for=10.0.0.2"],
                "198.51.100.23",
            )),
            forwarded(case(
                "Forwarded stray quote cannot win",
                cidrs(),
                peer,
                &["for=\"6.6.6.6, for=198.51.100.23"],
                peer,
            )),
            forwarded(case(
                "Forwarded stray quote in its own line",
                cidrs(),
                peer,
                &["for=\"6.6.6.6", "for=198.51.100.23"],
                "198.51.100.23",
            )),
            forwarded(case(
                "Forwarded IPv6 proxies",
                cidrs(),
                "fd00::1",
                &["for=\"[2001:db8::7]:1\", for=\"[fd00::2]\""],
                "2001:db8::7",
            )),
            // A hop count.
            case(
                "one hop",
                ClientIpLayer::new().trusted_hops(1),
                "203.0.113.1",
                &["6.6.6.6, 198.51.100.23"],
                "198.51.100.23",
            ),
            case(
                "two hops",
                ClientIpLayer::new().trusted_hops(2),
                "203.0.113.1",
                &["6.6.6.6, 198.51.100.23, 192.0.2.200"],
                "198.51.100.23",
            ),
            case(
                "two hops over two lines",
                ClientIpLayer::new().trusted_hops(2),
                "203.0.113.1",
                &["6.6.6.6, 198.51.100.23", "192.0.2.200"],
                "198.51.100.23",
            ),
            case(
                "fewer entries than hops: leftmost",
                ClientIpLayer::new().trusted_hops(3),
                "203.0.113.1",
                &["198.51.100.23, 192.0.2.200"],
                "198.51.100.23",
            ),
            case(
                "hops without a header: the peer",
                ClientIpLayer::new().trusted_hops(2),
                "203.0.113.1",
                &[],
                "203.0.113.1",
            ),
            case(
                "hops stop at garbage",
                ClientIpLayer::new().trusted_hops(2),
                "203.0.113.1",
                &["198.51.100.23, garbage"],
                "203.0.113.1",
            ),
            forwarded(case(
                "Forwarded with hops",
                ClientIpLayer::new().trusted_hops(1),
                "203.0.113.1",
                &["for=6.6.6.6, for=\"[2001:db8::9]\""],
                "2001:db8::9",
            )),
        ];
        for case in cases {
            let headers = headers(&case.header, case.lines);
            let resolved = case.layer.resolve_from(ip(case.peer), &headers);
            assert_eq!(resolved, ClientIp(ip(case.client)), "{}", case.name);
        }
    }

    // A small deterministic generator, so failures reproduce.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        // Bytes a header value may hold (visible ASCII, tab, obs-text),
        // biased toward the characters the parsers care about.
        fn header_bytes(&mut self, len: usize) -> Vec<u8> {
            const INTERESTING: &[u8] = b",;=\"\\[]:_ \t.0123456789abcdef:forFORunknown";
            (0..len)
                .map(|_| {
                    let roll = self.next();
                    if roll % 3 == 0 {
                        INTERESTING[(roll >> 8) as usize % INTERESTING.len()]
                    } else {
                        let byte = (roll >> 16) as u8;
                        if byte < 0x20 || byte == 0x7f {
                            b'\t'
                        } else {
                            byte
                        }
                    }
                })
                .collect()
        }
    }

    fn garbage() -> Vec<Vec<u8>> {
        let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut inputs: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b",,,,,,".to_vec(),
            b" , , ".to_vec(),
            b"\"".to_vec(),
            b"\\".to_vec(),
            b"for=".to_vec(),
            b"for=\"".to_vec(),
            b"for=\"\\".to_vec(),
            b"for=\"[".to_vec(),
            b"[".to_vec(),
            b"]:".to_vec(),
            b"_".to_vec(),
            b"unknown".to_vec(),
            b"\xff\xfe\x80".to_vec(),
            b"6.6.6.6;for=\"6.6.6.6\"".to_vec(),
            "1.2.3.4, ".repeat(20_000).into_bytes(),
            "for=\"".repeat(20_000).into_bytes(),
            vec![b','; 100_000],
        ];
        for len in [1, 2, 3, 5, 8, 13, 40, 200, 5_000] {
            for _ in 0..40 {
                inputs.push(random.header_bytes(len));
            }
        }
        inputs
    }

    #[test]
    fn garbage_never_panics_and_never_wins() {
        let peer = ip("10.0.0.1");
        let client = ip("198.51.100.23");
        let xff_layer = cidrs();
        let forwarded_layer = cidrs().header(ForwardedHeader::Forwarded);
        let hops_layer = ClientIpLayer::new().trusted_hops(1);
        for garbage in garbage() {
            let shown = String::from_utf8_lossy(&garbage[..garbage.len().min(60)]).into_owned();
            let value = |suffix: &[u8]| HeaderValue::from_bytes(&[garbage.as_slice(), suffix].concat()).unwrap();
            let mut map = HeaderMap::new();

            // The client wrote garbage; our proxy appended what it saw.
            map.insert(xff(), value(b", 198.51.100.23"));
            assert_eq!(xff_layer.resolve_from(peer, &map).ip(), client, "XFF after {shown:?}");
            assert_eq!(hops_layer.resolve_from(peer, &map).ip(), client, "hops after {shown:?}");

            // In the same Forwarded line a stray quote may hide the proxy's
            // element: then the proxy itself, never a client-written address.
            map.insert(FORWARDED, value(b", for=198.51.100.23"));
            let got = forwarded_layer.resolve_from(peer, &map).ip();
            assert!(got == client || got == peer, "Forwarded after {shown:?}: {got}");
            map.insert(FORWARDED, value(b""));
            map.append(FORWARDED, HeaderValue::from_static("for=198.51.100.23"));
            assert_eq!(
                forwarded_layer.resolve_from(peer, &map).ip(),
                client,
                "Forwarded line after {shown:?}"
            );

            // Garbage alone: no trusted proxy means the peer, always.
            map.clear();
            map.insert(xff(), value(b""));
            map.insert(FORWARDED, value(b""));
            let untrusting = ClientIpLayer::new();
            assert_eq!(untrusting.resolve_from(ip("203.0.113.9"), &map).ip(), ip("203.0.113.9"));
            let _ = xff_layer.resolve_from(peer, &map);
            let _ = forwarded_layer.resolve_from(peer, &map);
        }
    }

    #[test]
    fn the_peer_comes_from_the_extractor_or_a_socket_address() {
        let mut request = Request::new(());
        assert_eq!(ClientIpLayer::new().resolve(&request), None, "no peer, no client");
        request
            .extensions_mut()
            .insert("[::ffff:192.0.2.8]:443".parse::<SocketAddr>().unwrap());
        assert_eq!(ClientIpLayer::new().resolve(&request), Some(ClientIp(ip("192.0.2.8"))));
        // A supplied extractor is the only source.
        let from_marker = ClientIpLayer::new().peer_extractor(|extensions| extensions.get::<IpAddr>().copied());
        assert_eq!(from_marker.resolve(&request), None);
        request.extensions_mut().insert(ip("2001:db8::5"));
        assert_eq!(from_marker.resolve(&request), Some(ClientIp(ip("2001:db8::5"))));
    }

    #[cfg(feature = "axum")]
    #[test]
    fn axum_connect_info_is_a_peer_source() {
        let mut request = Request::new(());
        request.extensions_mut().insert(axum::extract::ConnectInfo(
            "203.0.113.4:9000".parse::<SocketAddr>().unwrap(),
        ));
        assert_eq!(
            ClientIpLayer::new().resolve(&request),
            Some(ClientIp(ip("203.0.113.4")))
        );
    }

    #[tokio::test]
    async fn the_service_inserts_the_client_ip_and_removes_one_it_cannot_vouch_for() {
        use tower::{service_fn, ServiceExt};
        let seen = |request: Request<()>| async move {
            Ok::<_, std::convert::Infallible>(request.extensions().get::<ClientIp>().copied())
        };
        let service = cidrs().layer(service_fn(seen));

        let mut request = Request::builder()
            .header("x-forwarded-for", "6.6.6.6, 198.51.100.23")
            .body(())
            .unwrap();
        request
            .extensions_mut()
            .insert("10.0.0.1:5000".parse::<SocketAddr>().unwrap());
        let got = service.clone().oneshot(request).await.unwrap();
        assert_eq!(got, Some(ClientIp(ip("198.51.100.23"))));

        let mut unresolvable = Request::new(());
        unresolvable.extensions_mut().insert(ClientIp(ip("6.6.6.6")));
        assert_eq!(service.oneshot(unresolvable).await.unwrap(), None);
    }

    #[test]
    fn debug_shows_the_configuration() {
        assert_eq!(
            format!("{:?}", ClientIpLayer::new().trusted_hops(2)),
            "ClientIpLayer { trust: \"2 hops\", header: XForwardedFor, peer_extractor: false }"
        );
    }
}
