//! Alerts on unusual activity: typed [`Alert`]s for an application's
//! [`AlertSink`] (a webhook, a log, a pager), raised by the layers through
//! [`Alerts`] and de-duplicated through an [`AlertStore`].
//!
//! Four conditions, each reported once per window rather than per request:
//!
//! | alert | raised by | once per |
//! |---|---|---|
//! | [`Alert::Quota`] 80% and 100% | the rate-limit layer, from the daily quota's remaining count | key, threshold and quota day |
//! | [`Alert::AuthFailures`] | the auth layer, counting 401s per client address | address and burst window |
//! | [`Alert::NewNetwork`] | the auth layer: a key used from a network (an IPv4 address, an IPv6 /64) it has not used in the last 30 days; never on a key's first use | key and network, until it is again unused for 30 days |
//! | [`Alert::RotationDue`] | the auth layer: a key older than the rotation age (90 days by default) still in use | key and day |
//!
//! The request path only checks a condition and, the first time this
//! instance sees it in its window, puts the alert in a bounded queue (a
//! full queue drops it and counts [`crate::metrics::ALERTS_DROPPED`]). The
//! [`AlertWorker`] — a future the application spawns — asks the store
//! whether the alert is the fleet's first, then awaits the sink. With a
//! shared store (Redis) instances sharing it send each alert once.

#[cfg(any(test, feature = "conformance"))]
pub(crate) mod conformance;
mod dispatch;
mod memory;
#[cfg(test)]
mod tests;

pub use dispatch::*;
pub use memory::*;

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;

use crate::maybe_ready::StoreFuture;

/// One alert, with what the application needs to tell the key's owner.
/// Never a key's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alert {
    /// A key spent `percent` (80 or 100) of its daily quota.
    Quota {
        /// The owning account.
        account_id: String,
        /// The key.
        key_id: String,
        /// 80 or 100.
        percent: u8,
        /// The daily quota.
        limit: u64,
        /// Units spent today.
        used: u64,
        /// When it was seen.
        at: SystemTime,
    },
    /// `failures` failed authentications (401s) from one client address
    /// within `window`: credential stuffing, or a client with a bad key.
    AuthFailures {
        /// The client address.
        client_ip: IpAddr,
        /// How many 401s.
        failures: u32,
        /// Within how long.
        window: Duration,
        /// When the burst reached `failures`.
        at: SystemTime,
    },
    /// A key used from a network it has not used recently.
    NewNetwork {
        /// The owning account.
        account_id: String,
        /// The key.
        key_id: String,
        /// The client address.
        client_ip: IpAddr,
        /// Its network: the IPv4 address itself, or the IPv6 /64.
        network: IpNet,
        /// When it was seen.
        at: SystemTime,
    },
    /// A key past its rotation age still in use.
    RotationDue {
        /// The owning account.
        account_id: String,
        /// The key.
        key_id: String,
        /// When the key was created.
        created_at: SystemTime,
        /// When it was seen in use.
        at: SystemTime,
    },
}

impl Alert {
    /// The kind, as webhook payloads and metrics name it: `quota_80`,
    /// `quota_100`, `auth_failures`, `new_ip` or `rotation_due`.
    pub fn kind(&self) -> &'static str {
        match self {
            Alert::Quota { percent: 100, .. } => "quota_100",
            Alert::Quota { .. } => "quota_80",
            Alert::AuthFailures { .. } => "auth_failures",
            Alert::NewNetwork { .. } => "new_ip",
            Alert::RotationDue { .. } => "rotation_due",
        }
    }

    /// The key concerned; `None` for [`Alert::AuthFailures`], whose
    /// requests carried no working key.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Alert::Quota { key_id, .. } | Alert::NewNetwork { key_id, .. } | Alert::RotationDue { key_id, .. } => {
                Some(key_id)
            }
            Alert::AuthFailures { .. } => None,
        }
    }

    /// The account concerned, when a key is.
    pub fn account_id(&self) -> Option<&str> {
        match self {
            Alert::Quota { account_id, .. }
            | Alert::NewNetwork { account_id, .. }
            | Alert::RotationDue { account_id, .. } => Some(account_id),
            Alert::AuthFailures { .. } => None,
        }
    }
}

/// A future a sink returns.
pub type SinkFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where alerts go. Any `Fn(Alert) -> impl Future<Output = ()>` is one.
/// Delivery runs on the [`AlertWorker`], off the request path; a slow sink
/// fills the queue, and further alerts are dropped and counted.
pub trait AlertSink: Send + Sync + 'static {
    /// Delivers one alert; failures are the sink's to log or retry.
    fn deliver(&self, alert: Alert) -> SinkFuture;
}

impl<F, Fut> AlertSink for F
where
    F: Fn(Alert) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn deliver(&self, alert: Alert) -> SinkFuture {
        Box::pin(self(alert))
    }
}

/// How a key's use from a network compares with its history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkUse {
    /// The key has no history: its first use (no alert).
    FirstUse,
    /// The key used this network within the recent window.
    Known,
    /// The key has a history, without this network in the recent window.
    New,
}

/// Alert de-duplication shared by a fleet: which alerts were already sent
/// in their window, and which networks each key was used from.
///
/// Implemented in memory ([`MemoryAlertStore`]) and on Redis; every
/// implementation runs [`crate::conformance::alert_store`].
pub trait AlertStore: Send + Sync + 'static {
    /// Records `event` for `window` and says whether it is its first
    /// sighting in that window: of any number of concurrent calls with one
    /// event, exactly one returns `true`.
    fn first(&self, event: &str, window: Duration) -> StoreFuture<bool>;

    /// Records that `key_id` was used from `network` `at`, and says how that
    /// compares with its history: networks used within `recent` are known.
    /// The history keeps the `capacity` most recently used networks of each
    /// key; older ones are forgotten.
    fn record_network(
        &self,
        key_id: &str,
        network: &str,
        at: SystemTime,
        recent: Duration,
        capacity: usize,
    ) -> StoreFuture<NetworkUse>;
}

/// The network an address is judged by: itself for IPv4 (and IPv4-mapped
/// IPv6), its /64 for IPv6, the size of one customer's allocation.
pub fn network_of(ip: IpAddr) -> IpNet {
    match ip {
        IpAddr::V4(v4) => IpNet::from(IpAddr::V4(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpNet::from(IpAddr::V4(v4)),
            None => ipnet::Ipv6Net::new_assert(v6, 64).trunc().into(),
        },
    }
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())?;
        if let Some(key_id) = self.key_id() {
            write!(f, " for key {key_id}")?;
        }
        Ok(())
    }
}
