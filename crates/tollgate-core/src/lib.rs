//! The small, stable core of tollgate: who is calling ([`Principal`]), how a
//! refusal is rendered ([`Rejection`], from the [`Code`] catalogue), time
//! ([`Clock`]), the [`gate`] every deciding layer is built on, and every
//! storage concept — [`keys`], [`rate_limit`], [`idempotency`],
//! [`allowlist`], [`replay`], [`usage`] — each with its types, its store trait, its
//! memory store and (behind the `conformance` feature) its conformance suite.
//!
//! Store methods return [`StoreFuture`]s: ready at once from a memory
//! store, boxed from a network store. [`changes`] carries other instances'
//! writes to local caches. Store crates (Redis, SQL) depend on
//! this crate only.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod alerts;
pub mod allowlist;
pub mod body;
pub mod changes;
mod client_ip;
mod clock;
mod code;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod error;
pub mod gate;
pub mod idempotency;
pub mod keys;
mod maybe_ready;
pub mod metrics;
mod principal;
pub mod rate_limit;
mod rejection;
pub mod replay;
pub mod usage;

pub use client_ip::ClientIp;
pub use clock::{unix_nanos, unix_secs, Clock, ManualClock, SharedClock, SystemClock};
pub use code::Code;
pub use error::{BoxError, StoreError};
pub use maybe_ready::{MaybeReady, StoreFuture};
pub use principal::{Environment, KeyKind, Principal, Scope};
pub use rejection::{is_grpc, ErrorFormat, GrpcCode, JsonRenderer, Rejection, RenderRejection, Renderer};

/// The response body of every tollgate layer: the inner service's body, or
/// a body the layer made itself (a rejection, a replayed response).
pub type ResponseBody<B> = http_body_util::Either<B, http_body_util::Full<bytes::Bytes>>;
