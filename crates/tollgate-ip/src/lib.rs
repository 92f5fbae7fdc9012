//! Proxy-aware client IPs and CIDR allowlists for Tower services, so an
//! API key can be restricted to its owner's known servers.
//!
//! - [`ClientIpLayer`] resolves the real client address once per request,
//!   behind the proxies you trust (`X-Forwarded-For` or RFC 7239
//!   `Forwarded`), and inserts it as [`ClientIp`] for every later layer.
//! - [`IpAllowlistLayer`] lets a request through only if that address is
//!   in every applicable list: a global one, the account's and the key's
//!   (from an [`AllowlistStore`](tollgate_core::allowlist::AllowlistStore)
//!   and the [`Principal`](tollgate_core::Principal)).
//!
//! Lists are [`IpSet`]s: sorted, merged ranges searched in `O(log n)`, so
//! 10,000 CIDRs cost no more per request than a handful.
//!
//! In a typical stack, outermost first:
//! `ClientIp → IpAllowlist(global) → BearerAuth → IpAllowlist(per key) → …`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod allowlist;
mod client_ip;
mod forwarded;

pub use allowlist::{ip_not_allowed, IpAllowlist, IpAllowlistLayer, RestrictIp};
pub use client_ip::{ClientIpLayer, ForwardedHeader, ResolveClientIp};
