//! In-memory implementations of the storage traits, for one instance.

mod allowlist;
mod idempotency;
mod key_store;
mod rate_limit;
mod replay;

pub use allowlist::*;
pub use idempotency::*;
pub use key_store::MemoryKeyStore;
pub use rate_limit::*;
pub use replay::*;
