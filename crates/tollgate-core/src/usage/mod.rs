//! Usage per key and UTC day: how many requests a key made and how many of
//! them were rate limited, counted fleet-wide so "usage today" and "the
//! last 30 days" are reads. Requests are counted in process and added to
//! the [`UsageStore`] in batches ([`UsageDelta`]), so counting costs no
//! round trip per request.

#[cfg(any(test, feature = "conformance"))]
pub(crate) mod conformance;
mod memory;

pub use memory::{MemoryUsageStore, DEFAULT_USAGE_RETENTION_DAYS};

use crate::maybe_ready::StoreFuture;

/// A UTC calendar day, as the number of days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub u32);

impl Day {
    /// The UTC day `unix_secs` falls on.
    pub fn from_unix_secs(unix_secs: u64) -> Day {
        Day((unix_secs / 86_400) as u32)
    }
}

/// Counts to add to one key's usage on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDelta {
    /// The key's public id.
    pub key_id: String,
    /// The UTC day the requests were made on.
    pub day: Day,
    /// Requests made (admitted or not).
    pub requests: u64,
    /// Of those, requests refused by a rate limit or daily quota.
    pub rate_limited: u64,
}

/// One key's usage on one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayUsage {
    /// The UTC day.
    pub day: Day,
    /// Requests made.
    pub requests: u64,
    /// Of those, requests refused by a rate limit or daily quota.
    pub rate_limited: u64,
}

/// Where usage counts live, shared by every instance of a fleet.
pub trait UsageStore: Send + Sync + 'static {
    /// Adds each delta to its key's counts for its day; deltas for the same
    /// key and day add up. A delta of zeros adds no day. Days older than the
    /// store's retention may be dropped.
    fn add(&self, deltas: Vec<UsageDelta>) -> StoreFuture<()>;

    /// The key's usage on each day from `from` to `to` inclusive that has
    /// any, oldest first.
    fn days(&self, key_id: &str, from: Day, to: Day) -> StoreFuture<Vec<DayUsage>>;
}
