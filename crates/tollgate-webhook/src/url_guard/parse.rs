//! A deliberately strict URL reader: it accepts the plain
//! `scheme://host[:port][/path][?query]` that a webhook URL needs and
//! refuses every form on which URL parsers are known to disagree
//! (backslashes, user information, stray brackets, missing slashes…), so
//! that what is checked here is what an HTTP client will connect to.

use std::net::Ipv6Addr;

use super::host::{parse_host, Host};
use super::UrlRejected;

/// The parts of an accepted URL.
#[derive(Debug)]
pub(crate) struct ParsedUrl<'a> {
    pub(crate) https: bool,
    pub(crate) host: Host,
    pub(crate) port: Option<u16>,
    /// Everything after the authority: path, query, and a fragment that
    /// [`check_path_and_query`] refuses (after the host was judged, so
    /// `https://127.0.0.1#@good.com` is reported as loopback).
    pub(crate) rest: &'a str,
}

pub(crate) fn parse_url(url: &str) -> Result<ParsedUrl<'_>, UrlRejected> {
    // Visible ASCII only: no spaces, controls or raw Unicode (which parsers
    // strip, split on or IDNA-map differently), and no backslash (which
    // WHATWG reads as '/' in http(s) URLs while others do not).
    if !url.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') {
        return Err(UrlRejected::InvalidCharacter);
    }
    let (scheme, rest) = url.split_once("://").ok_or(UrlRejected::NotAbsolute)?;
    let https = if scheme.eq_ignore_ascii_case("https") {
        true
    } else if scheme.eq_ignore_ascii_case("http") {
        false
    } else {
        return Err(UrlRejected::UnsupportedScheme);
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(authority_end);
    if authority.is_empty() {
        return Err(UrlRejected::MissingHost);
    }
    if authority.contains('@') {
        return Err(UrlRejected::UserInfo);
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (inside, after) = bracketed.split_once(']').ok_or(UrlRejected::InvalidHost)?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(UrlRejected::InvalidHost)?),
        };
        // std's parser takes every RFC 4291 form, embedded IPv4 included,
        // and refuses zone ids ("%25eth0"), as WHATWG does.
        let addr: Ipv6Addr = inside.parse().map_err(|_| UrlRejected::InvalidHost)?;
        (Host::V6(addr), port)
    } else {
        if authority.contains(['[', ']']) {
            return Err(UrlRejected::InvalidHost);
        }
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err(UrlRejected::MissingHost);
        }
        if host.contains('%') {
            return Err(UrlRejected::PercentEncodedHost);
        }
        (parse_host(host)?, port)
    };
    let port = port.map(parse_port).transpose()?;
    Ok(ParsedUrl {
        https,
        host,
        port,
        rest,
    })
}

fn parse_port(text: &str) -> Result<u16, UrlRejected> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UrlRejected::InvalidPort);
    }
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(UrlRejected::InvalidPort),
    }
}

/// The path and query may hold RFC 3986 characters and `%XX` escapes only,
/// and no fragment.
pub(crate) fn check_path_and_query(rest: &str) -> Result<(), UrlRejected> {
    if rest.contains('#') {
        return Err(UrlRejected::Fragment);
    }
    let bytes = rest.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let escaped = bytes.get(index + 1..index + 3);
                if !escaped.is_some_and(|pair| pair.iter().all(u8::is_ascii_hexdigit)) {
                    return Err(UrlRejected::InvalidCharacter);
                }
                index += 3;
            }
            b if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&b) => index += 1,
            _ => return Err(UrlRejected::InvalidCharacter),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn reads_the_parts_of_plain_urls() {
        let parsed = parse_url("HTTPS://Hooks.Example.com:8443/a/b?c=d").unwrap();
        assert!(parsed.https);
        assert_eq!(parsed.host, Host::Domain("hooks.example.com".into()));
        assert_eq!(parsed.port, Some(8443));
        assert_eq!(parsed.rest, "/a/b?c=d");
        let parsed = parse_url("http://[2606:4700::1111]").unwrap();
        assert!(!parsed.https);
        assert_eq!(parsed.host, Host::V6("2606:4700::1111".parse().unwrap()));
        assert_eq!((parsed.port, parsed.rest), (None, ""));
        let parsed = parse_url("https://example.com?x").unwrap();
        assert_eq!(parsed.rest, "?x");
        let parsed = parse_url("https://127.0.0.1#@good.com").unwrap();
        assert_eq!(
            parsed.host,
            Host::V4 {
                addr: Ipv4Addr::LOCALHOST,
                canonical: true
            }
        );
        assert_eq!(parsed.rest, "#@good.com");
    }

    #[test]
    fn refuses_what_parsers_disagree_on() {
        let table = [
            ("https://good.com@127.0.0.1/", UrlRejected::UserInfo),
            ("https://a@b@c/", UrlRejected::UserInfo),
            ("https://user:pass@example.com/", UrlRejected::UserInfo),
            ("https://good.com\\@evil.com/", UrlRejected::InvalidCharacter),
            ("https:\\\\evil.com", UrlRejected::InvalidCharacter),
            (" https://example.com", UrlRejected::InvalidCharacter),
            ("https://example.com/a b", UrlRejected::InvalidCharacter),
            ("https://exa\tmple.com", UrlRejected::InvalidCharacter),
            ("https://example.com\n.evil.com", UrlRejected::InvalidCharacter),
            ("https://exämple.com", UrlRejected::InvalidCharacter),
            ("https:example.com", UrlRejected::NotAbsolute),
            ("//example.com", UrlRejected::NotAbsolute),
            ("example.com", UrlRejected::NotAbsolute),
            ("ftp://example.com", UrlRejected::UnsupportedScheme),
            ("javascript://example.com", UrlRejected::UnsupportedScheme),
            ("https:///example.com", UrlRejected::MissingHost),
            ("https://:443/", UrlRejected::MissingHost),
            ("https://%6c%6f%63%61%6c%68%6f%73%74/", UrlRejected::PercentEncodedHost),
            ("https://127.0.0.1%2f@x/", UrlRejected::UserInfo),
            ("https://[::1/", UrlRejected::InvalidHost),
            ("https://[::1]x/", UrlRejected::InvalidHost),
            ("https://[fe80::1%25eth0]/", UrlRejected::InvalidHost),
            ("https://::1/", UrlRejected::MissingHost),
            ("https://example.com]/", UrlRejected::InvalidHost),
            ("https://example.com:/", UrlRejected::InvalidPort),
            ("https://example.com:0/", UrlRejected::InvalidPort),
            ("https://example.com:65536/", UrlRejected::InvalidPort),
            ("https://example.com:+443/", UrlRejected::InvalidPort),
            ("https://example.com:443:443/", UrlRejected::InvalidPort),
            ("https://1.2.3.4.5/", UrlRejected::InvalidHost),
        ];
        for (url, expected) in table {
            assert_eq!(parse_url(url).map(|_| ()), Err(expected), "{url}");
        }
    }

    #[test]
    fn paths_and_queries_hold_url_characters_only() {
        for rest in ["", "/", "/a/b-c_d.e~f", "/%7Euser?x=1&y=%2F", "?a=b:c@d!$'()*+,;="] {
            assert_eq!(check_path_and_query(rest), Ok(()), "{rest}");
        }
        assert_eq!(check_path_and_query("/#x"), Err(UrlRejected::Fragment));
        for rest in [
            "/%",
            "/%2",
            "/%zz",
            "/<script>",
            "/{x}",
            "/a|b",
            "/a^b",
            "/`",
            "/\"",
            "/[x]",
        ] {
            assert_eq!(check_path_and_query(rest), Err(UrlRejected::InvalidCharacter), "{rest}");
        }
    }
}
