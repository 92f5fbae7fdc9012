//! Per-key rate limits and daily quotas by plan, for any Tower service.
//!
//! [`RateLimitLayer`] gives each API key the limits of its plan, as the seed
//! API sells them:
//!
//! | plan | per second (burst) | per day |
//! |---|---|---|
//! | `free` | 10 | 1,000 |
//! | `premium` | 100 | 100,000 |
//! | `enterprise` | custom, up to 1,000 | unlimited |
//!
//! The per-second rate is a GCRA (one theoretical arrival time per key, as
//! `governor` and `redis-cell` keep); the daily quota resets at 00:00 UTC.
//! Both are checked and consumed in one atomic store call
//! ([`RateLimitStore`](tollgate_core::rate_limit::RateLimitStore)), and a
//! refused request consumes neither. State lives in a
//! [`MemoryRateLimitStore`](tollgate_core::rate_limit::MemoryRateLimitStore) for one
//! instance, or in Redis for a fleet.
//!
//! A refused request gets the seed's 429 —
//! `{"error":{"code":"RATE_LIMITED","message":"Rate limit exceeded. Retry after 1 second.","retry_after":1}}`
//! — with `Retry-After`; a daily refusal says so and adds `"limit":"daily"`.
//! Every response carries `RateLimit-Policy` and `RateLimit` headers
//! (draft-ietf-httpapi-ratelimit-headers-10, see [`headers`]), and the
//! legacy `X-RateLimit-*` ones on request.
//!
//! The layer reads the [`Principal`](tollgate_core::Principal) that
//! `BearerAuthLayer` puts in request extensions, so it goes after
//! authentication. What a limit counts against ([`KeyExtractor`]: API key,
//! account, client IP, route, any closure), which plan applies ([`Plans`],
//! or a closure), what a request costs, what happens without a key
//! ([`MissingKey`]) and when the store fails ([`FailurePolicy`]) are all
//! configurable.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use tollgate_core::rate_limit::MemoryRateLimitStore;
//! use tollgate_core::{KeyKind, ManualClock, Principal};
//! use tollgate_ratelimit::RateLimitLayer;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let clock = ManualClock::at_unix_secs(1_700_000_000);
//! let store = MemoryRateLimitStore::new().with_clock(clock.clone());
//! let service = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new(store))
//!     .service(service_fn(|_request: Request<Full<Bytes>>| async {
//!         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"sent"))))
//!     }));
//!
//! // BearerAuthLayer puts the caller here; this one is on the Free plan.
//! let request = || {
//!     let mut request = Request::new(Full::default());
//!     request
//!         .extensions_mut()
//!         .insert(Principal::new("acct_1", "key_1", KeyKind::Production).with_plan("free"));
//!     request
//! };
//!
//! let first = service.clone().oneshot(request()).await.unwrap();
//! assert_eq!(first.status(), StatusCode::OK);
//! assert_eq!(first.headers()["ratelimit"], r#""per-second";r=9;t=1"#);
//! assert_eq!(
//!     first.headers()["ratelimit-policy"],
//!     r#""per-second";q=10;w=1, "daily";q=1000;w=86400"#
//! );
//! for _ in 0..9 {
//!     assert_eq!(service.clone().oneshot(request()).await.unwrap().status(), StatusCode::OK);
//! }
//!
//! // The burst is spent: the 11th request in the same instant is refused.
//! let refused = service.clone().oneshot(request()).await.unwrap();
//! assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(refused.headers()["retry-after"], "1");
//! let body = refused.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(
//!     body,
//!     r#"{"error":{"code":"RATE_LIMITED","message":"Rate limit exceeded. Retry after 1 second.","retry_after":1}}"#
//! );
//!
//! // One unit comes back every 100 ms.
//! clock.advance(Duration::from_millis(100));
//! assert_eq!(service.clone().oneshot(request()).await.unwrap().status(), StatusCode::OK);
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod head;
pub mod headers;
mod key;
mod layer;
mod plans;
mod policy;
pub mod rejections;
mod static_values;
mod text;

pub use key::KeyExtractor;
pub use layer::{RateLimit, RateLimitLayer};
pub use plans::Plans;
pub use policy::{AddHeaders, FailurePolicy, MissingKey, Throttle};

/// The header rendering, for the fuzz targets in `fuzz/` (feature `fuzzing`). Not a stable API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use http::HeaderMap;
    use tollgate_core::rate_limit::{Decision, Plan};

    /// The headers the layer writes for `decision` under `plan`.
    pub fn render(plan: &Plan, decision: &Decision, legacy: bool) -> HeaderMap {
        let mut headers = HeaderMap::new();
        crate::headers::RateLimitHeaders::new(crate::headers::policy(plan), plan, decision, legacy)
            .write_to(&mut headers);
        headers
    }
}
