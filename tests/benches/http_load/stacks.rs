//! The handler and tollgate's stack in front of it, shared by the
//! `http_load` bench (served over loopback) and the `stack_profile` bench
//! (called in process; it includes this file by path), so both measure the
//! same router.
//!
//! The handler answers `GET /v1/ping` with 200 `pong`. The benchmarks' own
//! plan has limits far above anything one core can send, so its keys
//! measure the cost of checking them; keys on the seed's Free plan (10/s,
//! burst 10, 1,000 a day) are driven past their limit to measure refusals.

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use tollgate_auth::BearerAuthLayer;
use tollgate_core::allowlist::{AllowlistStore, IpSet};
use tollgate_core::idempotency::IdempotencyStore;
use tollgate_core::keys::KeyStore;
use tollgate_core::rate_limit::{Plan, RateLimitStore};
use tollgate_idempotency::IdempotencyLayer;
use tollgate_ip::{ClientIpLayer, IpAllowlistLayer};
use tollgate_ratelimit::{Plans, RateLimitLayer};
use tower::ServiceBuilder;

/// Requests a second and burst of the rate-limit plan: never reached.
pub const NEVER_REACHED: u32 = 10_000_000;
/// The plan of the benchmarks' keys.
pub const PLAN: &str = "http-load";
/// How many distinct keys each configuration serves, used round-robin.
pub const KEYS: usize = 10_000;
/// The account of the benchmarks' keys.
pub const ACCOUNT: &str = "acct_http_load";
/// The path every configuration serves.
pub const PATH: &str = "/v1/ping";

pub async fn ping() -> &'static str {
    "pong"
}

pub fn handler() -> Router {
    Router::new().route(PATH, get(ping))
}

pub fn plans() -> Plans {
    Plans::empty()
        .with(Plan::new(PLAN, NEVER_REACHED).with_burst(NEVER_REACHED))
        .with(Plan::free())
}

/// The typical stack of DESIGN.md, outermost first. The global list admits
/// loopback (where the load comes from); the store holds no list, so the
/// per-account and per-key lookups miss, as they do for most callers. GET
/// requests pass the idempotency layer untouched (it deduplicates POST and
/// PATCH), so it costs its method check here.
pub fn full_stack<K: KeyStore>(
    keys: Arc<K>,
    allowlists: impl AllowlistStore,
    limits: impl RateLimitStore,
    idempotency: impl IdempotencyStore,
) -> Router {
    let loopback = IpSet::parse(["127.0.0.0/8", "::1/128"]).expect("valid networks");
    handler().layer(
        ServiceBuilder::new()
            .layer(ClientIpLayer::new())
            .layer(IpAllowlistLayer::new().global(loopback))
            .layer(BearerAuthLayer::from_shared(keys))
            .layer(IpAllowlistLayer::new().store(allowlists))
            .layer(RateLimitLayer::new(limits).plans(plans()))
            .layer(IdempotencyLayer::new(idempotency)),
    )
}
