//! Reading the hops that proxies report in `X-Forwarded-For` and RFC 7239
//! `Forwarded`, as a list from the client side (left) to our side (right).
//!
//! A hop is `Some(address)` or `None` when it names no usable address:
//! `unknown`, an obfuscated identifier (`_hidden`), or anything that does not
//! parse. The resolver stops at a `None`, so how much of a broken header
//! is read never matters for safety: only entries to the right of the
//! break, the ones trusted proxies wrote, are ever used.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::header::{HeaderMap, HeaderName, FORWARDED};

/// `X-Forwarded-For`.
pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// `X-Forwarded-For` hops from the right, every header line in order as if
/// joined with commas. Empty entries (`a,,b`, a trailing comma) are ignored
/// as HTTP list syntax allows; they name no hop.
pub(crate) fn x_forwarded_for_from_right(headers: &HeaderMap) -> impl Iterator<Item = Option<IpAddr>> + '_ {
    headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .rev()
        .flat_map(|line| line.as_bytes().rsplit(|&byte| byte == b','))
        .map(trim_whitespace)
        .filter(|entry| !entry.is_empty())
        .map(parse_node)
}

/// `Forwarded` hops, left to right: one per element, each header line
/// parsed on its own (so a broken line cannot swallow the next one).
pub(crate) fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for line in headers.get_all(FORWARDED) {
        Parser::new(line.as_bytes()).elements(&mut hops);
    }
    hops
}

fn trim_whitespace(bytes: &[u8]) -> &[u8] {
    let is_space = |byte: &u8| *byte == b' ' || *byte == b'\t';
    let start = bytes.iter().position(|b| !is_space(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !is_space(b)).map_or(start, |last| last + 1);
    &bytes[start..end]
}

/// An address as proxies write it: `192.0.2.1`, `2001:db8::1`, with a
/// port `192.0.2.1:4711` / `[2001:db8::1]:4711`, or bracketed `[2001:db8::1]`.
fn parse_node(bytes: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(bytes).ok()?;
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let ip = inside.parse::<Ipv6Addr>().ok()?;
        return (after.is_empty() || after.strip_prefix(':').is_some_and(is_port)).then_some(IpAddr::V6(ip));
    }
    let (host, port) = text.split_once(':')?;
    let ip = host.parse::<Ipv4Addr>().ok()?;
    is_port(port).then_some(IpAddr::V4(ip))
}

// RFC 7239 node-port: up to five digits, or an obfuscated `_name`.
fn is_port(text: &str) -> bool {
    let digits = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    digits || is_obfuscated(text)
}

// RFC 7239 obfnode / obfport: "_" 1*( ALPHA / DIGIT / "." / "_" / "-" ).
fn is_obfuscated(text: &str) -> bool {
    text.strip_prefix('_').is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    })
}

/// The value of a `for=` parameter: `unknown` and obfuscated names are
/// hops without an address.
fn for_value(value: &[u8]) -> Option<IpAddr> {
    if value.eq_ignore_ascii_case(b"unknown") || value.starts_with(b"_") {
        return None;
    }
    parse_node(value)
}

struct Malformed;

/// An RFC 7239 parser over one header line:
/// `forwarded-element *( OWS "," OWS forwarded-element )`, where an element
/// is `forwarded-pair *( ";" forwarded-pair )` and a pair `token "=" value`
/// with a token or a quoted-string value.
struct Parser<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Parser<'a> {
    fn new(bytes: &'a [u8]) -> Parser<'a> {
        Parser { bytes, position: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.position += 1;
        }
    }

    fn elements(mut self, hops: &mut Vec<Option<IpAddr>>) {
        loop {
            self.skip_whitespace();
            match self.peek() {
                None => return,
                // An empty list element names no hop.
                Some(b',') => self.position += 1,
                Some(_) => match self.element() {
                    Ok(hop) => hops.push(hop),
                    Err(Malformed) => {
                        // Where the break ends is unknowable (a stray quote
                        // changes what follows), so the rest of the line is
                        // one hop without an address.
                        hops.push(None);
                        return;
                    }
                },
            }
        }
    }

    // One element, up to and including its closing comma. An element
    // without `for=`, or with two, names no usable address.
    fn element(&mut self) -> Result<Option<IpAddr>, Malformed> {
        let mut found: Option<Option<IpAddr>> = None;
        let mut duplicate = false;
        loop {
            self.skip_whitespace();
            match self.peek() {
                None => break,
                Some(b',') => {
                    self.position += 1;
                    break;
                }
                Some(b';') => {
                    self.position += 1;
                    continue;
                }
                Some(_) => {}
            }
            let name = self.token().ok_or(Malformed)?;
            if self.peek() != Some(b'=') {
                return Err(Malformed);
            }
            self.position += 1;
            let value = self.value()?;
            if name.eq_ignore_ascii_case(b"for") {
                duplicate |= found.is_some();
                found = Some(for_value(&value));
            }
            self.skip_whitespace();
            if !matches!(self.peek(), None | Some(b';' | b',')) {
                return Err(Malformed);
            }
        }
        Ok(if duplicate { None } else { found.flatten() })
    }

    // RFC 9110 token characters.
    fn token(&mut self) -> Option<&'a [u8]> {
        let start = self.position;
        while self
            .peek()
            .is_some_and(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte))
        {
            self.position += 1;
        }
        (self.position > start).then(|| &self.bytes[start..self.position])
    }

    fn value(&mut self) -> Result<Cow<'a, [u8]>, Malformed> {
        if self.peek() == Some(b'"') {
            return self.quoted();
        }
        // Unquoted values are read leniently (proxies write `for=[::1]:80`
        // or `for=2001:db8::1` although the grammar wants quotes); they are
        // validated as addresses afterwards.
        let start = self.position;
        while self
            .peek()
            .is_some_and(|byte| !matches!(byte, b';' | b',' | b'"' | b' ' | b'\t'))
        {
            self.position += 1;
        }
        if self.position == start {
            return Err(Malformed);
        }
        Ok(Cow::Borrowed(&self.bytes[start..self.position]))
    }

    fn quoted(&mut self) -> Result<Cow<'a, [u8]>, Malformed> {
        self.position += 1; // the opening quote
        let start = self.position;
        let mut unescaped: Option<Vec<u8>> = None;
        loop {
            match self.peek().ok_or(Malformed)? {
                b'"' => {
                    let raw = &self.bytes[start..self.position];
                    self.position += 1;
                    return Ok(unescaped.map_or(Cow::Borrowed(raw), Cow::Owned));
                }
                b'\\' => {
                    let escaped = *self.bytes.get(self.position + 1).ok_or(Malformed)?;
                    unescaped
                        .get_or_insert_with(|| self.bytes[start..self.position].to_vec())
                        .push(escaped);
                    self.position += 2;
                }
                byte => {
                    if let Some(buffer) = unescaped.as_mut() {
                        buffer.push(byte);
                    }
                    self.position += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn headers(name: &HeaderName, lines: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for line in lines {
            map.append(name.clone(), HeaderValue::from_bytes(line).unwrap());
        }
        map
    }

    fn xff(lines: &[&[u8]]) -> Vec<Option<IpAddr>> {
        let map = headers(&X_FORWARDED_FOR, lines);
        let mut hops: Vec<_> = x_forwarded_for_from_right(&map).collect();
        hops.reverse();
        hops
    }

    fn forwarded(lines: &[&[u8]]) -> Vec<Option<IpAddr>> {
        forwarded_hops(&headers(&FORWARDED, lines))
    }

    #[test]
    fn nodes_parse_with_and_without_ports() {
        let cases: &[(&str, Option<IpAddr>)] = &[
            ("192.0.2.1", ip("192.0.2.1")),
            ("192.0.2.1:4711", ip("192.0.2.1")),
            ("2001:db8::1", ip("2001:db8::1")),
            ("[2001:db8::1]", ip("2001:db8::1")),
            ("[2001:db8::1]:4711", ip("2001:db8::1")),
            ("[2001:db8::1]:_port", ip("2001:db8::1")),
            ("::ffff:192.0.2.1", ip("::ffff:192.0.2.1")),
            ("192.0.2.1:", None),
            ("192.0.2.1:123456", None),
            ("192.0.2.1:80:80", None),
            ("[2001:db8::1", None),
            ("[192.0.2.1]", None),
            ("[2001:db8::1]x", None),
            ("2001:db8::1:80x", None),
            ("fe80::1%eth0", None),
            ("unknown", None),
            ("", None),
            ("256.0.0.1", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_node(text.as_bytes()), *expected, "{text:?}");
        }
        assert_eq!(parse_node(&[0xff, 0xfe]), None, "not UTF-8");
    }

    #[test]
    fn x_forwarded_for_joins_lines_in_order_and_skips_empty_entries() {
        assert_eq!(
            xff(&[b"192.0.2.1, 198.51.100.2", b" 203.0.113.3 ,2001:db8::4"]),
            vec![
                ip("192.0.2.1"),
                ip("198.51.100.2"),
                ip("203.0.113.3"),
                ip("2001:db8::4")
            ]
        );
        assert_eq!(
            xff(&[b"192.0.2.1,,\t, 198.51.100.2,"]),
            vec![ip("192.0.2.1"), ip("198.51.100.2")]
        );
        assert_eq!(xff(&[b",,,"]), vec![]);
        assert_eq!(xff(&[b""]), vec![]);
        assert_eq!(
            xff(&[b"unknown, 192.0.2.1, garbage, \xff\xfe"]),
            vec![None, ip("192.0.2.1"), None, None]
        );
    }

    #[test]
    fn forwarded_reads_for_parameters_of_each_element() {
        let cases: &[(&[u8], Vec<Option<IpAddr>>)] = &[
            (b"for=192.0.2.60;proto=http;by=203.0.113.43", vec![ip("192.0.2.60")]),
            (b"For=\"[2001:db8:cafe::17]:4711\"", vec![ip("2001:db8:cafe::17")]),
            (
                b"for=192.0.2.43, for=198.51.100.17",
                vec![ip("192.0.2.43"), ip("198.51.100.17")],
            ),
            (b"for=\"192.0.2.43:47011\"", vec![ip("192.0.2.43")]),
            (b"for=unknown, for=192.0.2.1", vec![None, ip("192.0.2.1")]),
            (b"for=_hidden, for=\"_SEVKISEK\"", vec![None, None]),
            (b"by=203.0.113.43;proto=https", vec![None]),
            (b"for=192.0.2.1;for=192.0.2.2", vec![None]),
            (b"for=\"192.0.2.\\43\"", vec![ip("192.0.2.43")]),
            (b" , for=192.0.2.1 ;; proto=http ,, ", vec![ip("192.0.2.1")]),
            (b"for=[2001:db8::1]:80", vec![ip("2001:db8::1")]),
            (b"for=", vec![None]),
            (b"for=\"192.0.2.1", vec![None]),
            (b"for=\"a\"b, for=192.0.2.1", vec![None]),
            (b"=192.0.2.1, for=192.0.2.2", vec![None]),
            (
                b"for=192.0.2.1, for 192.0.2.2, for=192.0.2.3",
                vec![ip("192.0.2.1"), None],
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(forwarded(&[line]), *expected, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn a_broken_forwarded_line_does_not_swallow_the_next_line() {
        assert_eq!(
            forwarded(&[b"for=\"192.0.2.1", b"for=198.51.100.2"]),
            vec![None, ip("198.51.100.2")]
        );
    }
}
