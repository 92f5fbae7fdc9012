//! Client-IP resolution from arbitrary `X-Forwarded-For` / `Forwarded`
//! header sets: the result is always the peer or an address written in the
//! headers; behind trusted networks, an untrusted peer is always the
//! client, and for `X-Forwarded-For` the result is exactly what a plain
//! right-to-left walk that never passes an untrusted hop gives.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::Arbitrary;
use http::header::{HeaderMap, HeaderValue, FORWARDED};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use tollgate_ip::{ClientIpLayer, ForwardedHeader};

#[derive(Arbitrary, Debug)]
struct Input {
    peer: IpAddr,
    trust: Trust,
    use_forwarded: bool,
    xff: Vec<Vec<u8>>,
    forwarded: Vec<Vec<u8>>,
    // Addresses to sprinkle into the header text, so hops often parse.
    hops: Vec<(IpAddr, u8)>,
}

#[derive(Arbitrary, Debug)]
enum Trust {
    Nobody,
    Networks(Vec<(IpAddr, u8)>),
    Hops(u8),
}

fn network((ip, prefix): &(IpAddr, u8)) -> IpNet {
    let max = if ip.is_ipv4() { 32 } else { 128 };
    IpNet::new(*ip, prefix % (max + 1)).unwrap().trunc()
}

// The documented rule: an IPv6 network covering IPv4-mapped addresses
// (`::ffff:0:0/96`, or `::/0`) also covers the IPv4 clients they stand for.
fn contains(networks: &[IpNet], ip: IpAddr) -> bool {
    tollgate_core::allowlist::networks_contain(networks, ip)
}

// The hop as a proxy would write it, in a few spellings.
fn spelled((ip, style): &(IpAddr, u8)) -> String {
    match (ip, style % 4) {
        (IpAddr::V4(v4), 1) => format!("{v4}:{}", style),
        (IpAddr::V6(v6), 1) => format!("[{v6}]:{}", style),
        (IpAddr::V6(v6), 2) => format!("[{v6}]"),
        (IpAddr::V4(v4), 3) => format!("::ffff:{v4}"),
        _ => ip.to_string(),
    }
}

// A plain reading of one X-Forwarded-For entry.
fn xff_node(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    let port_ok = |port: &str| {
        (!port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()))
            || port
                .strip_prefix('_')
                .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)))
    };
    if let Some(rest) = entry.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = inside.parse().ok()?;
        return (after.is_empty() || after.strip_prefix(':').is_some_and(port_ok)).then_some(IpAddr::V6(ip));
    }
    let (host, port) = entry.split_once(':')?;
    let ip: Ipv4Addr = host.parse().ok()?;
    port_ok(port).then_some(IpAddr::V4(ip))
}

// Every address-looking token in the text (escapes removed).
fn addresses_in(text: &str) -> Vec<IpAddr> {
    let text = text.replace('\\', "");
    let mut found = Vec::new();
    for run in text.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':')) {
        let mut candidates = vec![run];
        if let Some((head, _)) = run.rsplit_once(':') {
            candidates.push(head);
        }
        for candidate in candidates {
            if let Ok(ip) = candidate.parse::<IpAddr>() {
                found.push(ip.to_canonical());
            }
        }
    }
    found
}

fuzz_target!(|input: Input| {
    let mut headers = HeaderMap::new();
    let mut texts = Vec::new();
    let mut hops = input.hops.iter().map(spelled);
    for raw in input.xff.iter().take(4) {
        let mut line = String::from_utf8_lossy(raw).into_owned();
        if let Some(hop) = hops.next() {
            line.push_str(", ");
            line.push_str(&hop);
        }
        if let Ok(value) = HeaderValue::from_str(&line) {
            headers.append("x-forwarded-for", value);
            texts.push((false, line));
        }
    }
    for raw in input.forwarded.iter().take(4) {
        let mut line = String::from_utf8_lossy(raw).into_owned();
        if let Some(hop) = hops.next() {
            line.push_str(&format!(", for=\"{hop}\""));
        }
        if let Ok(value) = HeaderValue::from_str(&line) {
            headers.append(FORWARDED, value);
            texts.push((true, line));
        }
    }

    let mut layer = ClientIpLayer::new();
    let mut networks = Vec::new();
    match &input.trust {
        Trust::Nobody => {}
        Trust::Networks(list) => {
            networks = list.iter().take(8).map(network).collect();
            layer = layer.trusted_proxies(networks.clone());
        }
        Trust::Hops(hops) => layer = layer.trusted_hops(usize::from(*hops % 8)),
    }
    let header = if input.use_forwarded {
        ForwardedHeader::Forwarded
    } else {
        ForwardedHeader::XForwardedFor
    };
    layer = layer.header(header);

    let peer = input.peer.to_canonical();
    let client = layer.resolve_from(input.peer, &headers).ip();
    let from_headers: Vec<IpAddr> = texts
        .iter()
        .filter(|(forwarded, _)| *forwarded == input.use_forwarded)
        .flat_map(|(_, text)| addresses_in(text))
        .collect();
    assert!(
        client == peer || from_headers.contains(&client),
        "{client} is neither the peer {peer} nor in the chosen header"
    );

    match &input.trust {
        Trust::Nobody => assert_eq!(client, peer),
        Trust::Hops(0) => assert_eq!(client, peer),
        Trust::Networks(_) if !contains(&networks, peer) => assert_eq!(client, peer),
        _ => {}
    }

    // X-Forwarded-For behind trusted networks: the reference walk.
    if let (Trust::Networks(_), false) = (&input.trust, input.use_forwarded) {
        let mut entries: Vec<&str> = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            let text = std::str::from_utf8(value.as_bytes()).unwrap();
            entries.extend(
                text.split(',')
                    .map(|e| e.trim_matches([' ', '\t']))
                    .filter(|e| !e.is_empty()),
            );
        }
        let mut nearest = peer;
        if contains(&networks, peer) {
            for entry in entries.iter().rev() {
                let Some(ip) = xff_node(entry) else { break };
                nearest = ip.to_canonical();
                if !contains(&networks, nearest) {
                    break;
                }
            }
        }
        assert_eq!(client, nearest);
    }
});
