//! Which IP addresses a webhook must never be sent to.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not a public destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlockedRange {
    /// A cloud metadata service: 169.254.169.254, fd00:ec2::254,
    /// 100.100.100.200 (Alibaba), 192.0.0.192 (Oracle).
    CloudMetadata,
    /// 0.0.0.0/8 or `::` — "this host", which reaches the local machine.
    Unspecified,
    /// 127.0.0.0/8 or `::1`.
    Loopback,
    /// RFC 1918: 10/8, 172.16/12, 192.168/16.
    Private,
    /// 100.64.0.0/10, carrier-grade NAT (RFC 6598).
    SharedAddressSpace,
    /// 169.254.0.0/16 or fe80::/10.
    LinkLocal,
    /// fc00::/7 (RFC 4193).
    UniqueLocal,
    /// 224.0.0.0/4 or ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20.
    Documentation,
    /// Reserved, benchmarking, protocol-assignment, deprecated or
    /// transition ranges, and IPv6 outside global unicast (2000::/3).
    Reserved,
}

impl fmt::Display for BlockedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockedRange::CloudMetadata => "cloud metadata",
            BlockedRange::Unspecified => "unspecified",
            BlockedRange::Loopback => "loopback",
            BlockedRange::Private => "private",
            BlockedRange::SharedAddressSpace => "shared (CGNAT)",
            BlockedRange::LinkLocal => "link-local",
            BlockedRange::UniqueLocal => "unique-local",
            BlockedRange::Multicast => "multicast",
            BlockedRange::Broadcast => "broadcast",
            BlockedRange::Documentation => "documentation",
            BlockedRange::Reserved => "reserved",
        })
    }
}

/// The range that makes `ip` an unacceptable destination, if any.
/// Documentation ranges count only with `block_documentation`.
pub fn blocked_range(ip: IpAddr, block_documentation: bool) -> Option<BlockedRange> {
    match ip {
        IpAddr::V4(ip) => blocked_v4(ip, block_documentation),
        IpAddr::V6(ip) => blocked_v6(ip, block_documentation),
    }
}

fn in_v4(ip: Ipv4Addr, network: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(network)) & mask
}

fn blocked_v4(ip: Ipv4Addr, block_documentation: bool) -> Option<BlockedRange> {
    use BlockedRange::*;
    const METADATA: [[u8; 4]; 4] = [
        [169, 254, 169, 254],
        [169, 254, 170, 2],
        [100, 100, 100, 200],
        [192, 0, 0, 192],
    ];
    const RANGES: &[([u8; 4], u32, BlockedRange)] = &[
        ([0, 0, 0, 0], 8, Unspecified),
        ([127, 0, 0, 0], 8, Loopback),
        ([10, 0, 0, 0], 8, Private),
        ([172, 16, 0, 0], 12, Private),
        ([192, 168, 0, 0], 16, Private),
        ([100, 64, 0, 0], 10, SharedAddressSpace),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([192, 0, 0, 0], 24, Reserved),   // IETF protocol assignments
        ([192, 88, 99, 0], 24, Reserved), // 6to4 relay anycast
        ([198, 18, 0, 0], 15, Reserved),  // benchmarking
        ([224, 0, 0, 0], 4, Multicast),
        ([255, 255, 255, 255], 32, Broadcast),
        ([240, 0, 0, 0], 4, Reserved),
    ];
    const DOCUMENTATION: [[u8; 4]; 3] = [[192, 0, 2, 0], [198, 51, 100, 0], [203, 0, 113, 0]];

    if METADATA.contains(&ip.octets()) {
        return Some(CloudMetadata);
    }
    if let Some((_, _, range)) = RANGES.iter().find(|(network, prefix, _)| in_v4(ip, *network, *prefix)) {
        return Some(*range);
    }
    if block_documentation && DOCUMENTATION.iter().any(|network| in_v4(ip, *network, 24)) {
        return Some(Documentation);
    }
    None
}

fn in_v6(ip: Ipv6Addr, network: u128, prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == network & mask
}

fn embedded_v4(bits: u128) -> Ipv4Addr {
    Ipv4Addr::from(bits as u32)
}

fn blocked_v6(ip: Ipv6Addr, block_documentation: bool) -> Option<BlockedRange> {
    use BlockedRange::*;
    let bits = u128::from(ip);
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Some(CloudMetadata);
    }
    if ip.is_unspecified() {
        return Some(Unspecified);
    }
    if ip.is_loopback() {
        return Some(Loopback);
    }
    // ::ffff:a.b.c.d and 64:ff9b::a.b.c.d (NAT64) reach the IPv4 address.
    if in_v6(ip, 0xffff_0000_0000, 96) || in_v6(ip, 0x0064_ff9b << 96, 96) {
        return blocked_v4(embedded_v4(bits), block_documentation);
    }
    // 6to4: 2002:AABB:CCDD::/48 reaches AA.BB.CC.DD.
    if in_v6(ip, 0x2002 << 112, 16) {
        return blocked_v4(Ipv4Addr::from((bits >> 80) as u32), block_documentation);
    }
    if !in_v6(ip, 0x2 << 124, 3) {
        // Outside global unicast: name the well-known ranges.
        return Some(if in_v6(ip, 0xfc << 120, 7) {
            UniqueLocal
        } else if in_v6(ip, 0xfe80 << 112, 10) {
            LinkLocal
        } else if in_v6(ip, 0xff << 120, 8) {
            Multicast
        } else {
            Reserved // ::/96 IPv4-compatible, 100::/64 discard, fec0::/10 site-local…
        });
    }
    if in_v6(ip, 0x2001_0db8 << 96, 32) || in_v6(ip, 0x3fff << 112, 20) {
        return block_documentation.then_some(Documentation);
    }
    // 2001::/23, IETF protocol assignments: Teredo, benchmarking, ORCHID…
    if in_v6(ip, 0x2001 << 112, 23) {
        return Some(Reserved);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(ip: &str) -> Option<BlockedRange> {
        blocked_range(ip.parse().unwrap(), true)
    }

    #[test]
    fn ipv4_ranges() {
        use BlockedRange::*;
        let table = [
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(Unspecified)),
            ("127.0.0.1", Some(Loopback)),
            ("127.255.255.254", Some(Loopback)),
            ("10.1.2.3", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("172.32.0.1", None),
            ("192.168.1.1", Some(Private)),
            ("100.64.0.1", Some(SharedAddressSpace)),
            ("100.127.255.255", Some(SharedAddressSpace)),
            ("100.128.0.1", None),
            ("169.254.1.1", Some(LinkLocal)),
            ("169.254.169.254", Some(CloudMetadata)),
            ("100.100.100.200", Some(CloudMetadata)),
            ("192.0.0.192", Some(CloudMetadata)),
            ("192.0.0.8", Some(Reserved)),
            ("198.18.0.1", Some(Reserved)),
            ("224.0.0.1", Some(Multicast)),
            ("239.255.255.250", Some(Multicast)),
            ("255.255.255.255", Some(Broadcast)),
            ("240.0.0.1", Some(Reserved)),
            ("192.0.2.1", Some(Documentation)),
            ("198.51.100.7", Some(Documentation)),
            ("203.0.113.9", Some(Documentation)),
            ("8.8.8.8", None),
            ("93.184.215.14", None),
            ("11.0.0.1", None),
        ];
        for (ip, expected) in table {
            assert_eq!(blocked(ip), expected, "{ip}");
        }
        assert_eq!(blocked_range("203.0.113.9".parse().unwrap(), false), None);
    }

    #[test]
    fn ipv6_ranges() {
        use BlockedRange::*;
        let table = [
            ("::", Some(Unspecified)),
            ("::1", Some(Loopback)),
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:10.0.0.1", Some(Private)),
            ("::ffff:169.254.169.254", Some(CloudMetadata)),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::7f00:1", Some(Loopback)),
            ("64:ff9b::808:808", None),
            ("::127.0.0.1", Some(Reserved)),
            ("::8.8.8.8", Some(Reserved)),
            ("2002:7f00:1::", Some(Loopback)),
            ("2002:0a00:0001::1", Some(Private)),
            ("2002:0808:0808::1", None),
            ("fc00::1", Some(UniqueLocal)),
            ("fd12:3456::1", Some(UniqueLocal)),
            ("fd00:ec2::254", Some(CloudMetadata)),
            ("fe80::1", Some(LinkLocal)),
            ("fec0::1", Some(Reserved)),
            ("ff02::1", Some(Multicast)),
            ("100::1", Some(Reserved)),
            ("2001::1", Some(Reserved)),
            ("2001:db8::1", Some(Documentation)),
            ("3fff::1", Some(Documentation)),
            ("2606:4700:4700::1111", None),
            ("2a00:1450:4001:80b::200e", None),
        ];
        for (ip, expected) in table {
            assert_eq!(blocked(ip), expected, "{ip}");
        }
    }
}
