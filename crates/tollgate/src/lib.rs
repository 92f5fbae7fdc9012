//! tollgate: composable Tower layers that turn any hyper, axum or tonic
//! service into an API platform — bearer API keys with scopes, per-key rate
//! limits and daily quotas by plan, idempotent requests, IP allowlists and
//! signed webhooks, each with in-memory, Redis or SQL storage.
//!
//! This crate re-exports the layer crates behind cargo features (all but
//! `redis`, `sql` and `axum` on by default). A typical stack, outermost first:
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
#[cfg(feature = "sql")]
pub use tollgate_sql as sql;
#[cfg(feature = "webhook")]
pub use tollgate_webhook as webhook;

// The README's Rust examples, compiled and run as doctests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    use tollgate_core::Code;

    #[test]
    fn the_readme_lists_every_code_with_its_status() {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split("## Error codes")
            .nth(1)
            .expect("README.md has an error code section");
        let section = section.split("\n## ").next().unwrap_or(section);
        for code in Code::ALL {
            let row = format!("| `{}` | {} |", code.as_str(), code.status().as_u16());
            assert!(section.contains(&row), "README.md's error code table lacks {row}");
        }
        let rows = section.lines().filter(|line| line.starts_with("| `")).count();
        assert_eq!(
            rows,
            Code::ALL.len(),
            "README.md lists a code the catalogue does not have"
        );
    }
}
