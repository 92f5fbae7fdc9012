//! IP allowlists: [`IpSet`], a set of networks that answers "is this
//! address listed?" in logarithmic time, the [`AllowlistStore`] trait
//! that keeps each account's and each key's list, and the
//! [`CachedAllowlistStore`] that puts a local cache in front of a shared one.
//!
//! ```
//! use std::net::IpAddr;
//! use tollgate_core::allowlist::IpSet;
//!
//! let servers = IpSet::parse(["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"]).unwrap();
//! assert!(servers.contains("203.0.113.200".parse::<IpAddr>().unwrap()));
//! assert!(servers.contains("198.51.100.7".parse::<IpAddr>().unwrap()));
//! assert!(!servers.contains("198.51.100.8".parse::<IpAddr>().unwrap()));
//! // An IPv4 client seen through a dual-stack socket matches its IPv4 entry.
//! assert!(servers.contains("::ffff:203.0.113.1".parse::<IpAddr>().unwrap()));
//! assert!(IpSet::parse(["203.0.113.0/33"]).is_err());
//! ```

mod cached;
#[cfg(any(test, feature = "conformance"))]
pub(crate) mod conformance;
mod memory;

pub use cached::{CachedAllowlistStore, DEFAULT_ALLOWLIST_TTL, DEFAULT_MAX_ALLOWLISTS};
pub use memory::*;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::maybe_ready::StoreFuture;

/// A set of IPv4 and IPv6 networks, built once and then matched in
/// `O(log n)`: the networks become sorted, merged address ranges that a
/// binary search answers, so a 10,000-entry list costs about 14 comparisons
/// per lookup instead of 10,000.
///
/// Membership is about *clients*, so IPv4-mapped IPv6 addresses
/// (`::ffff:a.b.c.d`) and IPv4 addresses are one and the same: an IPv4
/// entry matches the mapped form of its addresses and an IPv6 entry that
/// covers mapped addresses (such as `::ffff:0:0/96`, or `::/0`) matches the
/// IPv4 addresses they stand for.
///
/// An empty set contains nothing: as an allowlist it refuses every address.
#[derive(Clone, Default)]
pub struct IpSet {
    // As configured (truncated to their prefix, sorted, exact duplicates
    // removed), so a backend can store the list and give it back unchanged.
    networks: Vec<IpNet>,
    v4: Ranges<u32>,
    v6: Ranges<u128>,
}

// The IPv4-mapped IPv6 block `::ffff:0:0/96` as a range of u128.
const MAPPED_FIRST: u128 = 0xffff_0000_0000;
const MAPPED_LAST: u128 = 0xffff_ffff_ffff;

impl IpSet {
    /// A set of these networks. Host bits are cleared (`10.1.2.3/8` is
    /// `10.0.0.0/8`).
    pub fn new(networks: impl IntoIterator<Item = IpNet>) -> IpSet {
        let mut networks: Vec<IpNet> = networks.into_iter().map(|net| net.trunc()).collect();
        networks.sort_unstable();
        networks.dedup();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in &networks {
            match net {
                IpNet::V4(net) => v4.push((u32::from(net.network()), u32::from(net.broadcast()))),
                IpNet::V6(net) => {
                    let (first, last) = (u128::from(net.network()), u128::from(net.broadcast()));
                    v6.push((first, last));
                    // The part of an IPv6 entry that covers mapped addresses
                    // also lists the IPv4 clients they stand for.
                    let (lo, hi) = (first.max(MAPPED_FIRST), last.min(MAPPED_LAST));
                    if lo <= hi {
                        v4.push((lo as u32, hi as u32));
                    }
                }
            }
        }
        IpSet {
            networks,
            v4: Ranges::build(v4),
            v6: Ranges::build(v6),
        }
    }

    /// An empty set (as an allowlist: nothing is allowed).
    pub fn empty() -> IpSet {
        IpSet::default()
    }

    /// Parses entries such as `203.0.113.0/24`, `2001:db8::/32` or a bare
    /// address (`198.51.100.7`, one host). Surrounding whitespace is ignored.
    pub fn parse<I>(entries: I) -> Result<IpSet, ParseIpSetError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let networks = entries
            .into_iter()
            .map(|entry| parse_network(entry.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(IpSet::new(networks))
    }

    /// Whether `ip` is in one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(v4) => self.v4.contains(u32::from(v4)),
            IpAddr::V6(v6) => self.v6.contains(u128::from(v6)),
        }
    }

    /// The networks, host bits cleared, sorted, without exact duplicates.
    pub fn networks(&self) -> &[IpNet] {
        &self.networks
    }

    /// How many networks the set was built from (after removing duplicates).
    pub fn len(&self) -> usize {
        self.networks.len()
    }

    /// Whether the set has no network (and so contains no address).
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }
}

/// Whether any of `networks` contains `ip`, by looking at each one in turn,
/// with the same IPv4-mapped rule as [`IpSet::contains`].
///
/// For a handful of networks (a key's own list on its
/// [`Principal`](crate::Principal)) this beats building an [`IpSet`]; for
/// long lists build the set once and keep it.
pub fn networks_contain(networks: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    let mapped = match ip {
        IpAddr::V4(v4) => Some(IpAddr::V6(v4.to_ipv6_mapped())),
        IpAddr::V6(_) => None,
    };
    networks
        .iter()
        .any(|net| net.contains(&ip) || mapped.is_some_and(|mapped| net.contains(&mapped)))
}

fn parse_network(entry: &str) -> Result<IpNet, ParseIpSetError> {
    let text = entry.trim();
    let parsed = if text.contains('/') {
        text.parse::<IpNet>().ok()
    } else {
        text.parse::<IpAddr>().ok().map(IpNet::from)
    };
    parsed.ok_or_else(|| ParseIpSetError {
        entry: entry.to_owned(),
    })
}

impl FromIterator<IpNet> for IpSet {
    fn from_iter<I: IntoIterator<Item = IpNet>>(networks: I) -> IpSet {
        IpSet::new(networks)
    }
}

impl From<Vec<IpNet>> for IpSet {
    fn from(networks: Vec<IpNet>) -> IpSet {
        IpSet::new(networks)
    }
}

/// Two sets are equal when they were built from the same networks.
impl PartialEq for IpSet {
    fn eq(&self, other: &IpSet) -> bool {
        self.networks == other.networks
    }
}

impl Eq for IpSet {}

impl fmt::Debug for IpSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Long lists would drown a log line; their size says enough.
        if self.networks.len() <= 16 {
            f.debug_tuple("IpSet").field(&self.networks).finish()
        } else {
            f.debug_struct("IpSet")
                .field("networks", &self.networks.len())
                .field("v4_ranges", &self.v4.starts.len())
                .field("v6_ranges", &self.v6.starts.len())
                .finish()
        }
    }
}

/// An allowlist entry that is neither a network (`203.0.113.0/24`) nor an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IP network or address: {entry:?}")]
pub struct ParseIpSetError {
    /// The entry as given.
    pub entry: String,
}

// Sorted, disjoint, non-adjacent inclusive ranges; starts and ends apart so
// the binary search walks a dense array.
#[derive(Clone, Default)]
struct Ranges<T> {
    starts: Vec<T>,
    ends: Vec<T>,
}

trait Bound: Copy + Ord {
    fn successor(self) -> Option<Self>;
}

impl Bound for u32 {
    fn successor(self) -> Option<u32> {
        self.checked_add(1)
    }
}

impl Bound for u128 {
    fn successor(self) -> Option<u128> {
        self.checked_add(1)
    }
}

impl<T: Bound> Ranges<T> {
    fn build(mut ranges: Vec<(T, T)>) -> Ranges<T> {
        ranges.sort_unstable();
        let mut merged: Ranges<T> = Ranges {
            starts: Vec::with_capacity(ranges.len()),
            ends: Vec::with_capacity(ranges.len()),
        };
        for (first, last) in ranges {
            if let Some(end) = merged.ends.last_mut() {
                // Overlapping or touching the previous range: extend it.
                // An end at the maximum address swallows everything after.
                if end.successor().is_none_or(|next| first <= next) {
                    *end = (*end).max(last);
                    continue;
                }
            }
            merged.starts.push(first);
            merged.ends.push(last);
        }
        merged.starts.shrink_to_fit();
        merged.ends.shrink_to_fit();
        merged
    }

    fn contains(&self, address: T) -> bool {
        // The last range starting at or before the address is the only candidate.
        let after = self.starts.partition_point(|&start| start <= address);
        after > 0 && address <= self.ends[after - 1]
    }
}

/// The lists that apply to one authenticated key: its account's and its own.
/// `None` means no list at that level (no restriction there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlists {
    /// The account's list.
    pub account: Option<Arc<IpSet>>,
    /// The key's own list.
    pub key: Option<Arc<IpSet>>,
}

/// Where the per-account and per-key IP allowlists live. Implemented in
/// memory ([`MemoryAllowlistStore`]) and on Redis; every
/// implementation runs [`crate::conformance::allowlist_store`].
///
/// Lists are returned as prebuilt, shared [`IpSet`]s so a request never
/// rebuilds a long list: a backend that keeps lists remotely should cache
/// the sets it builds. An account and a key may share an id string; their
/// lists are kept apart.
///
/// A stored empty list allows no address at all; clearing the list removes
/// the restriction. Each method is one atomic operation on the backend: a
/// `set_…` replaces the whole list at once, so readers see the old list or
/// the new one, never a mixture.
pub trait AllowlistStore: Send + Sync + 'static {
    /// The account's list, if it has one.
    fn account_allowlist(&self, account_id: &str) -> StoreFuture<Option<Arc<IpSet>>>;

    /// Replaces the account's list.
    fn set_account_allowlist(&self, account_id: &str, list: IpSet) -> StoreFuture<()>;

    /// Removes the account's list; returns whether there was one.
    fn clear_account_allowlist(&self, account_id: &str) -> StoreFuture<bool>;

    /// The key's own list, if it has one.
    fn key_allowlist(&self, key_id: &str) -> StoreFuture<Option<Arc<IpSet>>>;

    /// Replaces the key's list.
    fn set_key_allowlist(&self, key_id: &str, list: IpSet) -> StoreFuture<()>;

    /// Removes the key's list; returns whether there was one.
    fn clear_key_allowlist(&self, key_id: &str) -> StoreFuture<bool>;

    /// Both lists that apply to a request by `key_id` of `account_id`, the
    /// lookup the allowlist layer makes per request: one round trip on a
    /// remote backend.
    fn allowlists(&self, account_id: &str, key_id: &str) -> StoreFuture<Allowlists>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn set(entries: &[&str]) -> IpSet {
        IpSet::parse(entries).unwrap()
    }

    #[test]
    fn ipv4_networks_match_their_whole_range_and_nothing_else() {
        let list = set(&["10.0.0.0/8", "192.0.2.128/25", "198.51.100.7"]);
        for inside in [
            "10.0.0.0",
            "10.255.255.255",
            "192.0.2.128",
            "192.0.2.255",
            "198.51.100.7",
        ] {
            assert!(list.contains(ip(inside)), "{inside}");
        }
        for outside in [
            "9.255.255.255",
            "11.0.0.0",
            "192.0.2.127",
            "193.0.0.0",
            "198.51.100.6",
            "198.51.100.8",
        ] {
            assert!(!list.contains(ip(outside)), "{outside}");
        }
        assert!(
            !list.contains(ip("::a00:1")),
            "IPv4 entries do not match IPv6 addresses"
        );
    }

    #[test]
    fn ipv6_networks_match_and_ipv4_clients_do_not() {
        let list = set(&["2001:db8::/32", "fe80::1"]);
        assert!(list.contains(ip("2001:db8:ffff::1")));
        assert!(list.contains(ip("fe80::1")));
        assert!(!list.contains(ip("fe80::2")));
        assert!(!list.contains(ip("2001:db9::")));
        assert!(
            !list.contains(ip("32.1.13.184")),
            "no IPv4 address is in an IPv6-only list"
        );
    }

    #[test]
    fn mapped_addresses_and_ipv4_are_one_client() {
        let v4_list = set(&["203.0.113.0/24"]);
        assert!(v4_list.contains(ip("::ffff:203.0.113.9")));
        assert!(!v4_list.contains(ip("::ffff:203.0.114.9")));
        let mapped_list = set(&["::ffff:203.0.113.0/120"]);
        assert!(mapped_list.contains(ip("203.0.113.9")));
        assert!(mapped_list.contains(ip("::ffff:203.0.113.9")));
        assert!(!mapped_list.contains(ip("203.0.114.0")));
        let everything_v6 = set(&["::/0"]);
        assert!(
            everything_v6.contains(ip("192.0.2.1")),
            "::/0 covers every mapped address"
        );
        assert!(networks_contain(everything_v6.networks(), ip("192.0.2.1")));
    }

    #[test]
    fn overlapping_adjacent_and_extreme_ranges_merge_correctly() {
        let list = set(&[
            "10.0.0.0/24",
            "10.0.1.0/24",
            "10.0.0.128/25",
            "255.255.255.255",
            "0.0.0.0/32",
        ]);
        assert_eq!(list.v4.starts.len(), 3, "adjacent /24s merge into one range");
        for inside in ["10.0.0.0", "10.0.1.255", "255.255.255.255", "0.0.0.0"] {
            assert!(list.contains(ip(inside)), "{inside}");
        }
        for outside in ["10.0.2.0", "9.255.255.255", "255.255.255.254", "0.0.0.1"] {
            assert!(!list.contains(ip(outside)), "{outside}");
        }
        let all = set(&["0.0.0.0/0", "10.0.0.0/8", "::/0", "2001:db8::/32"]);
        assert_eq!((all.v4.starts.len(), all.v6.starts.len()), (1, 1));
        assert!(all.contains(ip("1.2.3.4")) && all.contains(ip("ffff::1")));
    }

    #[test]
    fn the_empty_set_contains_nothing() {
        let empty = IpSet::empty();
        assert!(empty.is_empty());
        assert!(!empty.contains(ip("127.0.0.1")));
        assert!(!empty.contains(ip("::1")));
        assert!(!networks_contain(&[], ip("127.0.0.1")));
    }

    #[test]
    fn networks_are_normalised_so_sets_compare_and_round_trip() {
        let list = set(&[" 10.1.2.3/8 ", "10.0.0.0/8", "2001:db8::1/32", "192.0.2.1"]);
        let expected: Vec<IpNet> = ["10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32"]
            .iter()
            .map(|net| net.parse().unwrap())
            .collect();
        assert_eq!(list.networks(), expected.as_slice());
        assert_eq!(list.len(), 3);
        assert_eq!(IpSet::new(list.networks().iter().copied()), list);
        assert_ne!(list, set(&["10.0.0.0/8"]));
        assert_eq!(format!("{:?}", set(&["10.0.0.0/8"])), "IpSet([10.0.0.0/8])");
    }

    #[test]
    fn bad_entries_are_named_in_the_error() {
        for bad in ["10.0.0.0/33", "not-an-ip", "", "10.0.0.0/", "::g/64", "1.2.3.4:80"] {
            assert_eq!(
                IpSet::parse(["10.0.0.0/8", bad]),
                Err(ParseIpSetError { entry: bad.to_owned() }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_set_agrees_with_a_linear_scan_on_a_dense_grid() {
        // Networks of every prefix length around one block, probed at every
        // address of a window, catch off-by-one merges and bounds.
        let networks: Vec<IpNet> = (20..=32)
            .map(|prefix| format!("10.0.{}.{}/{prefix}", prefix % 4, prefix * 7).parse().unwrap())
            .collect();
        let list = IpSet::new(networks.clone());
        let mut hits = 0;
        for offset in 0..4096u32 {
            let address = IpAddr::V4((u32::from(std::net::Ipv4Addr::new(9, 255, 255, 0)) + offset).into());
            let listed = networks_contain(&networks, address);
            assert_eq!(list.contains(address), listed, "{address}");
            hits += usize::from(listed);
        }
        // 10.0.0.0/20 (the /20 entry) covers 4096 - 256 addresses of the window.
        assert_eq!(hits, 4096 - 256);
    }
}
