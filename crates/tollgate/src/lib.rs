//! tollgate: composable Tower layers that turn any hyper, axum or tonic
//! service into an API platform — bearer API keys with scopes, per-key rate
//! limits and daily quotas by plan, idempotent requests, IP allowlists and
//! signed webhooks, each with in-memory or Redis storage.
//!
//! This crate re-exports the layer crates behind cargo features (all but
//! `redis` and `axum` on by default). A typical stack, outermost first:
//! `ClientIp → IpAllowlist(global) → BearerAuth → IpAllowlist(per key) →
//! RateLimit → Idempotency → handler`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use tollgate_core as core;
pub use tollgate_core::{Environment, KeyKind, Principal, Rejection, Scope};

#[cfg(feature = "auth")]
pub use tollgate_auth as auth;
#[cfg(feature = "idempotency")]
pub use tollgate_idempotency as idempotency;
#[cfg(feature = "ip")]
pub use tollgate_ip as ip;
#[cfg(feature = "ratelimit")]
pub use tollgate_ratelimit as ratelimit;
#[cfg(feature = "redis")]
pub use tollgate_redis as redis;
#[cfg(feature = "webhook")]
pub use tollgate_webhook as webhook;

// The README's Rust examples, compiled and run as doctests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
