//! The host of a URL, read the way the WHATWG URL standard (browsers, and
//! most HTTP clients' URL parsers) reads it — in particular its IPv4
//! forms: `2130706433`, `0x7f.1`, `0177.0.0.1` and `127.1` all name
//! 127.0.0.1.

use std::net::Ipv4Addr;

use super::UrlRejected;

/// A parsed, lower-cased host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Host {
    /// An IPv4 address; `canonical` when written as four plain decimals.
    V4 { addr: Ipv4Addr, canonical: bool },
    /// An IPv6 address (written in brackets).
    V6(std::net::Ipv6Addr),
    /// A domain name, without a trailing dot.
    Domain(String),
}

const MAX_DOMAIN_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// Parses a host written without brackets. The caller has already refused
/// non-ASCII, controls, spaces and `%`.
pub(crate) fn parse_host(text: &str) -> Result<Host, UrlRejected> {
    let lower = text.to_ascii_lowercase();
    // One trailing dot names the same host (the DNS root); WHATWG drops it
    // from IPv4 addresses too. Two dots are an empty label, refused below.
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.is_empty() {
        return Err(UrlRejected::InvalidHost);
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.iter().any(|label| label.is_empty()) {
        return Err(UrlRejected::InvalidHost);
    }
    if ends_in_a_number(labels[labels.len() - 1]) {
        let addr = parse_ipv4(&labels).ok_or(UrlRejected::InvalidHost)?;
        let canonical = text == addr.to_string();
        return Ok(Host::V4 { addr, canonical });
    }
    let valid_label = |label: &&str| {
        label.len() <= MAX_LABEL_LEN
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    };
    if name.len() > MAX_DOMAIN_LEN || !labels.iter().all(valid_label) {
        return Err(UrlRejected::InvalidHost);
    }
    Ok(Host::Domain(name.to_owned()))
}

// WHATWG "ends in a number": the last label is all digits, or parses as an
// IPv4 number (0x-prefixed hex). Such a host must be an IPv4 address.
fn ends_in_a_number(last: &str) -> bool {
    (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())) || parse_ipv4_number(last).is_some()
}

// WHATWG IPv4 parser: 1 to 4 parts; every part but the last < 256; the
// last fills the remaining bytes.
fn parse_ipv4(parts: &[&str]) -> Option<Ipv4Addr> {
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let numbers = parts
        .iter()
        .map(|part| parse_ipv4_number(part))
        .collect::<Option<Vec<u64>>>()?;
    let (last, leading) = numbers.split_last()?;
    if leading.iter().any(|number| *number > 255) {
        return None;
    }
    let last_bits = 8 * (5 - numbers.len() as u32);
    if *last >= 1u64 << last_bits {
        return None;
    }
    let mut address = *last;
    for (index, number) in leading.iter().enumerate() {
        address += number << (8 * (3 - index as u32));
    }
    u32::try_from(address).ok().map(Ipv4Addr::from)
}

// WHATWG IPv4 number: "0x…" hex (possibly empty), "0…" octal, else decimal.
// `None` only when it is not a number: a huge number still "ends in a
// number" (and then fails as an address), so values saturate at u64::MAX,
// which is out of range for every part.
fn parse_ipv4_number(text: &str) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        (hex, 16)
    } else if text.len() > 1 && text.starts_with('0') {
        (&text[1..], 8)
    } else {
        (text, 10)
    };
    digits.chars().try_fold(0u64, |value, c| {
        let digit = c.to_digit(radix)?;
        Some(value.saturating_mul(u64::from(radix)).saturating_add(u64::from(digit)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(text: &str) -> Option<(Ipv4Addr, bool)> {
        match parse_host(text) {
            Ok(Host::V4 { addr, canonical }) => Some((addr, canonical)),
            _ => None,
        }
    }

    #[test]
    fn whatwg_ipv4_forms() {
        let loopback = Ipv4Addr::new(127, 0, 0, 1);
        for text in [
            "2130706433",
            "0x7f000001",
            "0X7F000001",
            "0x7f.1",
            "0177.0.0.1",
            "0177.0.0.01",
            "127.1",
            "127.0.1",
            "127.000.000.001",
            "0x7f.0x0.0x0.0x1",
            "017700000001",
            "127.0.0.1.",
        ] {
            assert_eq!(v4(text), Some((loopback, false)), "{text}");
        }
        assert_eq!(v4("127.0.0.1"), Some((loopback, true)));
        assert_eq!(v4("0"), Some((Ipv4Addr::UNSPECIFIED, false)));
        assert_eq!(
            v4("0x"),
            Some((Ipv4Addr::UNSPECIFIED, false)),
            "an empty hex number is 0"
        );
        assert_eq!(v4("0x0a.0.0.1"), Some((Ipv4Addr::new(10, 0, 0, 1), false)));
        assert_eq!(v4("010.0.0.1"), Some((Ipv4Addr::new(8, 0, 0, 1), false)), "octal");
        assert_eq!(v4("4294967295"), Some((Ipv4Addr::BROADCAST, false)));
    }

    #[test]
    fn hosts_ending_in_a_number_must_be_valid_ipv4() {
        for text in [
            "1.2.3.4.5",
            "256.0.0.1",
            "1.2.3.256",
            "1.2.65536",
            "4294967296",
            "09.0.0.1",
            "0x7g.0.0.1",
            "example.123",
            "foo.0x",
            "1.2.3.4..",
            "99999999999999999999999999",
            "0x10000000000000000000",
            "a.0x10000000000000000000",
            "a.99999999999999999999999999",
        ] {
            assert_eq!(parse_host(text), Err(UrlRejected::InvalidHost), "{text}");
        }
    }

    #[test]
    fn domains_are_lower_cased_without_the_trailing_dot() {
        assert_eq!(
            parse_host("Hooks.Example.COM."),
            Ok(Host::Domain("hooks.example.com".into()))
        );
        assert_eq!(
            parse_host("123.example.com"),
            Ok(Host::Domain("123.example.com".into()))
        );
        assert_eq!(parse_host("0x7f.example"), Ok(Host::Domain("0x7f.example".into())));
        assert_eq!(
            parse_host("my_host.example.com"),
            Ok(Host::Domain("my_host.example.com".into()))
        );
        for text in [
            "",
            ".",
            "a..b",
            ".example.com",
            "exa*mple.com",
            "a\"b.com",
            &"a".repeat(64),
        ] {
            assert_eq!(parse_host(text), Err(UrlRejected::InvalidHost), "{text}");
        }
        let long = format!("{}.com", vec!["a".repeat(63); 4].join("."));
        assert_eq!(parse_host(&long), Err(UrlRejected::InvalidHost), "over 253 bytes");
    }
}
