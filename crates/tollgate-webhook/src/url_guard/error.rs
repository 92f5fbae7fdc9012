//! [`UrlRejected`]: why a webhook URL was refused.

use std::net::IpAddr;

use tollgate_core::{Code, Rejection};

use super::ip::BlockedRange;

/// Why a webhook URL was refused. The `Display` text is for logs; the
/// client gets [`UrlRejected::to_rejection`], which does not reveal what a
/// name resolved to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlRejected {
    /// Longer than the guard's limit.
    #[error("the URL is {len} bytes long, over the {max} byte limit")]
    TooLong {
        /// The URL's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A space, control, non-ASCII, backslash or other character URLs must
    /// not carry unencoded, or a `%` not followed by two hex digits.
    #[error("the URL contains a character that is not allowed")]
    InvalidCharacter,
    /// Not `scheme://…`.
    #[error("the URL is not absolute")]
    NotAbsolute,
    /// A scheme other than `https` (or `http` where allowed).
    #[error("the URL's scheme is not https")]
    UnsupportedScheme,
    /// Plain `http`, not allowed by this guard.
    #[error("plain http URLs are not allowed")]
    HttpNotAllowed,
    /// No host after `://`.
    #[error("the URL has no host")]
    MissingHost,
    /// Credentials before the host (`user@host`): a classic way to make a
    /// URL look like it goes elsewhere.
    #[error("the URL carries user information (user@host)")]
    UserInfo,
    /// A `%`-encoded host.
    #[error("the URL's host is percent-encoded")]
    PercentEncodedHost,
    /// Not a valid domain name, IPv4 or bracketed IPv6 address.
    #[error("the URL's host is not a valid domain name or IP address")]
    InvalidHost,
    /// Not a number from 1 to 65535.
    #[error("the URL's port is not a number from 1 to 65535")]
    InvalidPort,
    /// A `#fragment`, which is never sent and only hides what follows it.
    #[error("the URL has a fragment")]
    Fragment,
    /// A public IPv4 address in a form other than four plain decimals
    /// (`0x08.8.8.8`, `134744072`): clients disagree on such forms.
    #[error("the IPv4 address {0} is not written as four plain decimal numbers")]
    NonCanonicalIpv4(std::net::Ipv4Addr),
    /// An address that is not a public destination.
    #[error("{addr} is a {range} address")]
    BlockedAddress {
        /// The address (literal or resolved).
        addr: IpAddr,
        /// Why it is blocked.
        range: BlockedRange,
    },
    /// `localhost`, `*.localhost` or a private-use suffix (`.internal`,
    /// `.local`, `.localdomain`, `.home.arpa`).
    #[error("{0} is a local host name")]
    LocalHostname(String),
    /// A cloud metadata service's name (`metadata.google.internal`…).
    #[error("{0} is a cloud metadata host name")]
    CloudMetadataHost(String),
    /// A name without a dot, which resolvers complete with local search domains.
    #[error("{0} is a single-label host name")]
    SingleLabelHost(String),
    /// Not in the guard's host allowlist.
    #[error("{0} is not in the webhook host allowlist")]
    HostNotAllowed(String),
    /// The resolver failed.
    #[error("{host} could not be resolved: {reason}")]
    ResolutionFailed {
        /// The host.
        host: String,
        /// The resolver's error.
        reason: String,
    },
    /// The resolver found no address.
    #[error("{0} resolved to no address")]
    NoAddresses(String),
    /// More than one `X-Webhook-URL` header.
    #[error("more than one X-Webhook-URL header")]
    DuplicateHeader,
}

impl UrlRejected {
    /// Whether the URL is well-formed but its destination is refused.
    pub fn is_destination(&self) -> bool {
        matches!(
            self,
            UrlRejected::NonCanonicalIpv4(_)
                | UrlRejected::BlockedAddress { .. }
                | UrlRejected::LocalHostname(_)
                | UrlRejected::CloudMetadataHost(_)
                | UrlRejected::SingleLabelHost(_)
                | UrlRejected::HostNotAllowed(_)
                | UrlRejected::ResolutionFailed { .. }
                | UrlRejected::NoAddresses(_)
        )
    }

    /// 400 `INVALID_WEBHOOK_URL`. Syntax problems are described; refused
    /// destinations get one generic message, so the endpoint cannot be
    /// used to probe internal names and addresses.
    pub fn to_rejection(&self) -> Rejection {
        let message = if self.is_destination() {
            "X-Webhook-URL must point to a public host that webhooks may be sent to.".to_owned()
        } else {
            format!("X-Webhook-URL is not a valid webhook URL: {self}.")
        };
        Rejection::new(Code::InvalidWebhookUrl, message)
    }
}

impl From<UrlRejected> for Rejection {
    fn from(rejected: UrlRejected) -> Rejection {
        rejected.to_rejection()
    }
}
