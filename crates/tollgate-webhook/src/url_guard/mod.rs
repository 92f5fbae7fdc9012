//! The `X-Webhook-URL` guard: the seed API lets a client override, per
//! request, the URL its webhooks are sent to. Unchecked, that makes the
//! server send requests wherever the client says — its own loopback, the
//! private network, the cloud metadata service (SSRF). [`WebhookUrlGuard`]
//! accepts only absolute `https` URLs to public hosts:
//!
//! - the URL: at most 2048 bytes of visible ASCII, `https://host[:port][/path][?query]`
//!   (`http` only with [`allow_http`](WebhookUrlGuard::allow_http)); no
//!   user information (`https://good.com@127.0.0.1/`), fragment
//!   (`https://127.0.0.1#@good.com` is judged on its real host), backslash,
//!   percent-encoded host, or whitespace;
//! - literal addresses in every form URL parsers accept — `2130706433`,
//!   `0x7f.1`, `0177.0.0.1`, `127.1`, `[::ffff:127.0.0.1]`, `[::1]` — read
//!   as the WHATWG URL standard reads them, then refused when loopback,
//!   private, link-local, unique-local, CGNAT, multicast, broadcast,
//!   unspecified, reserved, documentation (optional) or a cloud metadata
//!   address ([`BlockedRange`]); public addresses must be written as four
//!   plain decimals, since clients disagree on the other forms;
//! - names: `localhost`, `*.localhost`, private-use suffixes (`.internal`,
//!   `.local`, `.localdomain`, `.home.arpa`), cloud metadata names, and
//!   single-label names are refused; an optional allowlist (`hooks.example.com`,
//!   `*.example.com`) restricts the rest;
//! - with a [resolver](WebhookUrlGuard::resolver), every address the name
//!   resolves to must pass as well. Connect to
//!   [`ValidatedUrl::resolved_addrs`] rather than resolving again, or a
//!   DNS answer that changes in between (rebinding) defeats the check.
//!
//! Refusals are [`UrlRejected`], which renders as 400 `INVALID_WEBHOOK_URL`.
//!
//! ```
//! use tollgate_webhook::url_guard::{UrlRejected, WebhookUrlGuard};
//!
//! let guard = WebhookUrlGuard::new();
//! let url = guard.check("https://Hooks.Example.com/in?x=1").unwrap();
//! assert_eq!(url.as_str(), "https://hooks.example.com/in?x=1");
//! assert_eq!(url.port(), 443);
//!
//! for hostile in ["http://hooks.example.com/", "https://0x7f.1/", "https://[::ffff:169.254.169.254]/",
//!                 "https://good.com@10.0.0.1/", "https://metadata.google.internal/"] {
//!     let rejected = guard.check(hostile).unwrap_err();
//!     assert_eq!(rejected.to_rejection().code(), "INVALID_WEBHOOK_URL");
//!     assert_eq!(rejected.to_rejection().status(), 400);
//! }
//! assert!(matches!(guard.check("https://2130706433/"), Err(UrlRejected::BlockedAddress { .. })));
//! ```

mod error;
#[cfg(feature = "axum")]
mod extract;
mod host;
mod ip;
mod parse;
mod resolve;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{HeaderMap, HeaderName};

pub use error::UrlRejected;
#[cfg(feature = "axum")]
pub use extract::WebhookUrlOverride;
pub use ip::{blocked_range, BlockedRange};
#[cfg(feature = "tokio")]
pub use resolve::TokioResolver;
pub use resolve::{resolve_fn, Resolve, ResolveFn};

use host::Host;
use resolve::DynResolve;

/// The header a client overrides the webhook URL with: `X-Webhook-URL`.
pub const X_WEBHOOK_URL: HeaderName = HeaderName::from_static("x-webhook-url");

/// The longest URL accepted by default, in bytes.
pub const DEFAULT_MAX_URL_LENGTH: usize = 2048;

const LOCAL_SUFFIXES: [&str; 5] = [".localhost", ".internal", ".local", ".localdomain", ".home.arpa"];
const METADATA_NAMES: [&str; 3] = [
    "metadata.google.internal",
    "metadata.goog",
    "instance-data.ec2.internal",
];

/// Validates webhook URLs given by clients; see the [module docs](self).
/// Cheap to clone.
#[derive(Clone)]
pub struct WebhookUrlGuard {
    allow_http: bool,
    max_length: usize,
    block_documentation: bool,
    allow_private: bool,
    allowed_hosts: Arc<[HostPattern]>,
    resolver: Option<Arc<dyn DynResolve>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    // ".example.com" for "*.example.com": subdomains only.
    Suffix(String),
}

impl WebhookUrlGuard {
    /// A guard with the defaults: https only, 2048 bytes, documentation
    /// ranges blocked, any public host, no resolver.
    pub fn new() -> WebhookUrlGuard {
        WebhookUrlGuard {
            allow_http: false,
            max_length: DEFAULT_MAX_URL_LENGTH,
            block_documentation: true,
            allow_private: false,
            allowed_hosts: Arc::from([]),
            resolver: None,
        }
    }

    /// Also accepts plain `http` URLs (still to public hosts only).
    pub fn allow_http(mut self, allow: bool) -> WebhookUrlGuard {
        self.allow_http = allow;
        self
    }

    /// The longest URL accepted, in bytes.
    pub fn max_length(mut self, bytes: usize) -> WebhookUrlGuard {
        self.max_length = bytes;
        self
    }

    /// Whether the documentation ranges (192.0.2/24, 198.51.100/24,
    /// 203.0.113/24, 2001:db8::/32, 3fff::/20) are refused (default `true`).
    pub fn block_documentation_ranges(mut self, block: bool) -> WebhookUrlGuard {
        self.block_documentation = block;
        self
    }

    /// Accepts literal and resolved addresses in every blocked range —
    /// loopback, private networks, metadata services. For local testing
    /// only: it switches the SSRF defence off. Names such as `localhost`
    /// stay refused; use `127.0.0.1`.
    pub fn allow_private_addresses(mut self, allow: bool) -> WebhookUrlGuard {
        self.allow_private = allow;
        self
    }

    /// Adds a host to the allowlist: an exact host (`hooks.example.com`,
    /// `203.0.113.7`) or all subdomains of one (`*.example.com`, which does
    /// not match `example.com` itself). With an allowlist, other hosts are
    /// refused; the address checks still apply to allowed hosts.
    pub fn allow_host(mut self, pattern: &str) -> WebhookUrlGuard {
        let pattern = pattern.trim().to_ascii_lowercase();
        let pattern = pattern.trim_end_matches('.');
        let pattern = match pattern.strip_prefix("*.") {
            Some(suffix) => HostPattern::Suffix(format!(".{suffix}")),
            None => HostPattern::Exact(pattern.trim_start_matches('[').trim_end_matches(']').to_owned()),
        };
        let mut patterns = self.allowed_hosts.to_vec();
        patterns.push(pattern);
        self.allowed_hosts = patterns.into();
        self
    }

    /// Resolves names in [`check_resolved`](Self::check_resolved), which
    /// then refuses names with any non-public address.
    pub fn resolver(mut self, resolver: impl Resolve) -> WebhookUrlGuard {
        self.resolver = Some(Arc::new(Arc::new(resolver)));
        self
    }

    /// Checks `url` without resolving names: syntax, literal addresses,
    /// host names, allowlist.
    pub fn check(&self, url: &str) -> Result<ValidatedUrl, UrlRejected> {
        if url.len() > self.max_length {
            return Err(UrlRejected::TooLong {
                len: url.len(),
                max: self.max_length,
            });
        }
        let parsed = parse::parse_url(url)?;
        if !parsed.https && !self.allow_http {
            return Err(UrlRejected::HttpNotAllowed);
        }
        let (host, ip) = match parsed.host {
            Host::V4 { addr, canonical } => {
                self.check_ip(addr.into())?;
                if !canonical {
                    return Err(UrlRejected::NonCanonicalIpv4(addr));
                }
                (addr.to_string(), Some(IpAddr::V4(addr)))
            }
            Host::V6(addr) => {
                self.check_ip(addr.into())?;
                (addr.to_string(), Some(IpAddr::V6(addr)))
            }
            Host::Domain(name) => {
                check_name(&name)?;
                (name, None)
            }
        };
        if !self.allowed_hosts.is_empty() && !self.allowed_hosts.iter().any(|pattern| pattern.matches(&host)) {
            return Err(UrlRejected::HostNotAllowed(host));
        }
        parse::check_path_and_query(parsed.rest)?;

        let scheme = if parsed.https { "https" } else { "http" };
        let port = parsed.port.unwrap_or(if parsed.https { 443 } else { 80 });
        let authority = match (ip, parsed.port) {
            (Some(IpAddr::V6(_)), Some(port)) => format!("[{host}]:{port}"),
            (Some(IpAddr::V6(_)), None) => format!("[{host}]"),
            (_, Some(port)) => format!("{host}:{port}"),
            (_, None) => host.clone(),
        };
        Ok(ValidatedUrl {
            url: format!("{scheme}://{authority}{}", parsed.rest),
            https: parsed.https,
            path_start: scheme.len() + 3 + authority.len(),
            host,
            ip,
            port,
            addrs: ip.map(|ip| vec![SocketAddr::new(ip, port)]).unwrap_or_default(),
        })
    }

    /// [`check`](Self::check), then, for a name and with a resolver, checks
    /// every address it resolves to and records them in
    /// [`ValidatedUrl::resolved_addrs`]. Without a resolver it is `check`.
    pub async fn check_resolved(&self, url: &str) -> Result<ValidatedUrl, UrlRejected> {
        let mut validated = self.check(url)?;
        let Some(resolver) = &self.resolver else {
            return Ok(validated);
        };
        if validated.ip.is_some() {
            return Ok(validated);
        }
        let host = validated.host.clone();
        let ips =
            resolver
                .resolve(host.clone(), validated.port)
                .await
                .map_err(|error| UrlRejected::ResolutionFailed {
                    host: host.clone(),
                    reason: error.to_string(),
                })?;
        if ips.is_empty() {
            return Err(UrlRejected::NoAddresses(host));
        }
        for ip in &ips {
            self.check_ip(*ip)?;
        }
        validated.addrs = ips.into_iter().map(|ip| SocketAddr::new(ip, validated.port)).collect();
        Ok(validated)
    }

    /// Reads and checks the `X-Webhook-URL` header: `Ok(None)` when absent.
    /// Resolves names when the guard has a resolver.
    pub async fn check_header(&self, headers: &HeaderMap) -> Result<Option<ValidatedUrl>, UrlRejected> {
        let mut values = headers.get_all(X_WEBHOOK_URL).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(UrlRejected::DuplicateHeader);
        }
        let url = value.to_str().map_err(|_| UrlRejected::InvalidCharacter)?;
        self.check_resolved(url).await.map(Some)
    }

    fn check_ip(&self, addr: IpAddr) -> Result<(), UrlRejected> {
        match blocked_range(addr, self.block_documentation) {
            Some(range) if !self.allow_private => Err(UrlRejected::BlockedAddress { addr, range }),
            _ => Ok(()),
        }
    }
}

fn check_name(name: &str) -> Result<(), UrlRejected> {
    if METADATA_NAMES.contains(&name) || name == "metadata" {
        return Err(UrlRejected::CloudMetadataHost(name.to_owned()));
    }
    if name == "localhost" || LOCAL_SUFFIXES.iter().any(|suffix| name.ends_with(suffix)) {
        return Err(UrlRejected::LocalHostname(name.to_owned()));
    }
    if !name.contains('.') {
        return Err(UrlRejected::SingleLabelHost(name.to_owned()));
    }
    Ok(())
}

impl HostPattern {
    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(exact) => host == exact,
            HostPattern::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        }
    }
}

impl Default for WebhookUrlGuard {
    fn default() -> WebhookUrlGuard {
        WebhookUrlGuard::new()
    }
}

impl fmt::Debug for WebhookUrlGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookUrlGuard")
            .field("allow_http", &self.allow_http)
            .field("max_length", &self.max_length)
            .field("block_documentation", &self.block_documentation)
            .field("allow_private", &self.allow_private)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("resolver", &self.resolver.is_some())
            .finish()
    }
}

/// A webhook URL that passed the guard, normalised: lower-case scheme and
/// host, no trailing dot, IP addresses in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedUrl {
    url: String,
    https: bool,
    path_start: usize,
    host: String,
    ip: Option<IpAddr>,
    port: u16,
    addrs: Vec<SocketAddr>,
}

impl ValidatedUrl {
    /// The normalised URL.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// Whether the scheme is `https`.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The host: a lower-case name, or an IP address without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The address, when the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    /// The port, explicit or the scheme's default.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path and query (`""` when the URL ends after the host).
    pub fn path_and_query(&self) -> &str {
        &self.url[self.path_start..]
    }

    /// The checked addresses to connect to: the literal address, or what
    /// the name resolved to in [`WebhookUrlGuard::check_resolved`] (empty
    /// for a name checked without a resolver).
    pub fn resolved_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The URL as an [`http::Uri`], for an HTTP client (which refuses
    /// URIs of 64 KiB and more, should the guard's limit allow them).
    pub fn to_uri(&self) -> Result<http::Uri, http::uri::InvalidUri> {
        self.url.parse()
    }
}

impl fmt::Display for ValidatedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

#[cfg(test)]
mod tests;
