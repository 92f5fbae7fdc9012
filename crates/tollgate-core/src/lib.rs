//! The small, stable core of tollgate: who is calling ([`Principal`]), how a
//! refusal is rendered ([`Rejection`]), time ([`Clock`]), and every storage
//! trait with its in-memory implementation and conformance suite.
//!
//! Store crates (Redis, SQL) depend on this crate only.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod allowlist;
pub mod cached_key_store;
pub mod client_ip;
pub mod clock;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod either;
pub mod error;
pub mod idempotency;
pub mod key_store;
pub mod memory;
pub mod principal;
pub mod rate_limit;
pub mod rejection;
pub mod replay;

pub use cached_key_store::CachedKeyStore;
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use either::EitherStore;
pub use error::{BoxError, StoreError};
pub use key_store::{KeyHash, KeyRecord, KeyStore};
pub use memory::*;
pub use principal::{Environment, KeyKind, Principal, Scope};
pub use rejection::{ErrorFormat, GrpcCode, JsonRenderer, Rejection, RenderRejection, Renderer};

/// The response body of every tollgate layer: the inner service's body, or
/// a body the layer made itself (a rejection, a replayed response).
pub type ResponseBody<B> = http_body_util::Either<B, http_body_util::Full<bytes::Bytes>>;
