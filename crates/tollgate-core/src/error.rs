//! The error every storage trait returns.

/// A boxed error from a storage backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a store operation failed.
///
/// Layers turn [`StoreError::Backend`] and [`StoreError::Timeout`] into their
/// fail-open or fail-closed policy; the other variants are answers, not faults.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed (connection refused, protocol error, …).
    #[error("storage backend failed: {0}")]
    Backend(#[source] BoxError),
    /// The backend did not answer in time.
    #[error("storage backend timed out")]
    Timeout,
    /// The account already has its maximum number of active keys.
    #[error("the account already has {limit} active keys")]
    KeyLimitReached {
        /// The configured maximum.
        limit: usize,
    },
    /// A record with the same identity already exists.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A bounded store is full of state it may not drop (keys in debt), so
    /// it refuses to track another: the request is refused (fail closed),
    /// never admitted untracked.
    #[error("the store already tracks its maximum of {capacity} entries")]
    CapacityReached {
        /// The configured maximum.
        capacity: usize,
    },
    /// The backend holds data this version cannot read.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Wraps any backend error.
    pub fn backend(error: impl Into<BoxError>) -> StoreError {
        StoreError::Backend(error.into())
    }

    /// Whether this is a fault of the backend (as opposed to an answer such as
    /// "limit reached"), the case a fail-open/fail-closed policy acts on.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Backend(_) | StoreError::Timeout)
    }
}
