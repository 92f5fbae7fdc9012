//! Property tests: `IpSet` answers exactly like a linear scan of its
//! networks, and no client-written prefix of a forwarding header can choose
//! the resolved address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::header::FORWARDED;
use http::{HeaderMap, HeaderValue};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use tollgate_core::allowlist::{networks_contain, IpSet};
use tollgate_ip::{ClientIpLayer, ForwardedHeader};

// Addresses from a small pool of blocks, so networks overlap and probes hit.
fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    (0u32..4, any::<u16>()).prop_map(|(block, low)| Ipv4Addr::from(0x0a00_0000 | (block << 16) | u32::from(low)))
}

fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        (0u128..4, any::<u16>())
            .prop_map(|(block, low)| Ipv6Addr::from((0x2001_0db8u128 << 96) | (block << 16) | u128::from(low))),
        ipv4().prop_map(|v4| v4.to_ipv6_mapped()),
    ]
}

fn network() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (ipv4(), 8u8..=32).prop_map(|(address, prefix)| IpNet::V4(Ipv4Net::new(address, prefix).unwrap())),
        (ipv6(), 80u8..=128).prop_map(|(address, prefix)| IpNet::V6(Ipv6Net::new(address, prefix).unwrap())),
        Just("::/0".parse().unwrap()),
    ]
}

fn address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![ipv4().prop_map(IpAddr::V4), ipv6().prop_map(IpAddr::V6)]
}

// Any bytes a header value may hold.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(b",;=\"\\[]:_ .0123456789abcdeffor".to_vec()),
            1 => (0x20u8..=0xff).prop_filter("no DEL", |byte| *byte != 0x7f),
        ],
        0..120,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn ip_set_matches_a_linear_scan(networks in prop::collection::vec(network(), 0..60), probes in prop::collection::vec(address(), 1..60)) {
        let set = IpSet::new(networks.clone());
        for probe in probes {
            prop_assert_eq!(set.contains(probe), networks_contain(&networks, probe), "{}", probe);
        }
    }

    #[test]
    fn a_client_written_prefix_never_chooses_the_address(prefix in header_bytes(), client in address()) {
        let peer: IpAddr = "172.16.0.1".parse().unwrap();
        let trusting = ClientIpLayer::new().trusted_proxies(["172.16.0.0/12".parse().unwrap()]);
        // Clients come from 10.0.0.0/14 and 2001:db8::/96, outside the trusted network.
        let client = client.to_canonical();

        let mut headers = HeaderMap::new();
        let xff = [prefix.as_slice(), format!(", {client}").as_bytes()].concat();
        headers.insert("x-forwarded-for", HeaderValue::from_bytes(&xff).unwrap());
        prop_assert_eq!(trusting.resolve_from(peer, &headers).ip(), client);
        prop_assert_eq!(ClientIpLayer::new().trusted_hops(1).resolve_from(peer, &headers).ip(), client);
        prop_assert_eq!(ClientIpLayer::new().resolve_from(peer, &headers).ip(), peer);

        let forwarded = trusting.clone().header(ForwardedHeader::Forwarded);
        let node = match client { IpAddr::V4(v4) => v4.to_string(), IpAddr::V6(v6) => format!("\"[{v6}]:4711\"") };
        let same_line = [prefix.as_slice(), format!(", for={node}").as_bytes()].concat();
        headers.insert(FORWARDED, HeaderValue::from_bytes(&same_line).unwrap());
        let got = forwarded.resolve_from(peer, &headers).ip();
        prop_assert!(got == client || got == peer, "got {}", got);
        headers.insert(FORWARDED, HeaderValue::from_bytes(&prefix).unwrap());
        headers.append(FORWARDED, HeaderValue::from_str(&format!("for={node}")).unwrap());
        prop_assert_eq!(forwarded.resolve_from(peer, &headers).ip(), client);
    }
}
