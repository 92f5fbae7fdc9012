//! The guard's SSRF tables: what passes, what is refused and why.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};

use http::HeaderValue;
use proptest::prelude::*;

use super::*;

fn blocked(addr: &str, range: BlockedRange) -> UrlRejected {
    UrlRejected::BlockedAddress {
        addr: addr.parse().unwrap(),
        range,
    }
}

#[test]
fn public_https_urls_pass_normalised() {
    let guard = WebhookUrlGuard::new();
    let table = [
        (
            "https://hooks.example.com/in",
            "https://hooks.example.com/in",
            443,
            "/in",
        ),
        (
            "HTTPS://Hooks.Example.COM./in?x=1&y=%2F",
            "https://hooks.example.com/in?x=1&y=%2F",
            443,
            "/in?x=1&y=%2F",
        ),
        ("https://example.com:8443", "https://example.com:8443", 8443, ""),
        ("https://93.184.215.14/", "https://93.184.215.14/", 443, "/"),
        (
            "https://[2606:4700:4700:0::1111]:8443/x",
            "https://[2606:4700:4700::1111]:8443/x",
            8443,
            "/x",
        ),
        ("https://[::ffff:8.8.8.8]/", "https://[::ffff:8.8.8.8]/", 443, "/"),
        (
            "https://xn--bcher-kva.example/",
            "https://xn--bcher-kva.example/",
            443,
            "/",
        ),
    ];
    for (input, normalised, port, path) in table {
        let url = guard.check(input).unwrap_or_else(|error| panic!("{input}: {error}"));
        assert_eq!(url.as_str(), normalised, "{input}");
        assert_eq!(url.port(), port, "{input}");
        assert_eq!(url.path_and_query(), path, "{input}");
        assert!(url.is_https());
        assert_eq!(
            url.to_uri().unwrap().to_string().trim_end_matches('/'),
            normalised.trim_end_matches('/')
        );
    }
    let literal = guard.check("https://93.184.215.14:8443/").unwrap();
    assert_eq!(literal.ip(), Some(IpAddr::V4(Ipv4Addr::new(93, 184, 215, 14))));
    assert_eq!(literal.resolved_addrs(), &["93.184.215.14:8443".parse().unwrap()]);
    assert_eq!(literal.host(), "93.184.215.14");
}

#[test]
fn internal_destinations_are_refused_in_every_spelling() {
    use BlockedRange::*;
    let guard = WebhookUrlGuard::new();
    let table = [
        ("https://127.0.0.1/", blocked("127.0.0.1", Loopback)),
        ("https://127.0.0.1:8080/admin", blocked("127.0.0.1", Loopback)),
        ("https://2130706433/", blocked("127.0.0.1", Loopback)),
        ("https://0177.0.0.1/", blocked("127.0.0.1", Loopback)),
        ("https://0x7f.0.0.1/", blocked("127.0.0.1", Loopback)),
        ("https://0x7F000001/", blocked("127.0.0.1", Loopback)),
        ("https://0x7f.1/", blocked("127.0.0.1", Loopback)),
        ("https://127.1/", blocked("127.0.0.1", Loopback)),
        ("https://127.0.0.1./", blocked("127.0.0.1", Loopback)),
        ("https://127.000.000.001/", blocked("127.0.0.1", Loopback)),
        ("https://[::1]/", blocked("::1", Loopback)),
        ("https://[0:0:0:0:0:0:0:1]/", blocked("::1", Loopback)),
        ("https://[::ffff:127.0.0.1]/", blocked("::ffff:127.0.0.1", Loopback)),
        ("https://[::ffff:7f00:1]/", blocked("::ffff:127.0.0.1", Loopback)),
        ("https://0.0.0.0/", blocked("0.0.0.0", Unspecified)),
        ("https://0/", blocked("0.0.0.0", Unspecified)),
        ("https://[::]/", blocked("::", Unspecified)),
        ("https://10.0.0.1/", blocked("10.0.0.1", Private)),
        ("https://0xa.0.0.1/", blocked("10.0.0.1", Private)),
        ("https://172.16.5.4/", blocked("172.16.5.4", Private)),
        ("https://192.168.0.1/", blocked("192.168.0.1", Private)),
        ("https://3232235521/", blocked("192.168.0.1", Private)),
        ("https://[::ffff:10.0.0.1]/", blocked("::ffff:10.0.0.1", Private)),
        (
            "https://169.254.169.254/latest/meta-data/",
            blocked("169.254.169.254", CloudMetadata),
        ),
        ("https://2852039166/", blocked("169.254.169.254", CloudMetadata)),
        (
            "https://[::ffff:a9fe:a9fe]/",
            blocked("::ffff:169.254.169.254", CloudMetadata),
        ),
        ("https://[fd00:ec2::254]/", blocked("fd00:ec2::254", CloudMetadata)),
        ("https://169.254.1.1/", blocked("169.254.1.1", LinkLocal)),
        ("https://[fe80::1]/", blocked("fe80::1", LinkLocal)),
        ("https://[fc00::1]/", blocked("fc00::1", UniqueLocal)),
        ("https://[fd12:3456::1]/", blocked("fd12:3456::1", UniqueLocal)),
        ("https://224.0.0.1/", blocked("224.0.0.1", Multicast)),
        ("https://[ff02::1]/", blocked("ff02::1", Multicast)),
        ("https://255.255.255.255/", blocked("255.255.255.255", Broadcast)),
        ("https://4294967295/", blocked("255.255.255.255", Broadcast)),
        ("https://100.64.0.1/", blocked("100.64.0.1", SharedAddressSpace)),
        ("https://192.0.2.1/", blocked("192.0.2.1", Documentation)),
        ("https://[2001:db8::1]/", blocked("2001:db8::1", Documentation)),
        ("https://240.0.0.1/", blocked("240.0.0.1", Reserved)),
        // The host is judged before the fragment that hides it.
        ("https://127.0.0.1#@good.com", blocked("127.0.0.1", Loopback)),
        ("https://localhost/", UrlRejected::LocalHostname("localhost".into())),
        ("https://LOCALHOST./", UrlRejected::LocalHostname("localhost".into())),
        (
            "https://api.localhost/",
            UrlRejected::LocalHostname("api.localhost".into()),
        ),
        (
            "https://printer.local/",
            UrlRejected::LocalHostname("printer.local".into()),
        ),
        ("https://db.internal/", UrlRejected::LocalHostname("db.internal".into())),
        (
            "https://router.home.arpa/",
            UrlRejected::LocalHostname("router.home.arpa".into()),
        ),
        (
            "https://metadata.google.internal/computeMetadata/v1/",
            UrlRejected::CloudMetadataHost("metadata.google.internal".into()),
        ),
        (
            "https://Metadata.Google.Internal./",
            UrlRejected::CloudMetadataHost("metadata.google.internal".into()),
        ),
        ("https://metadata/", UrlRejected::CloudMetadataHost("metadata".into())),
        ("https://intranet/", UrlRejected::SingleLabelHost("intranet".into())),
        // Public addresses in forms clients disagree on.
        (
            "https://0x08.8.8.8/",
            UrlRejected::NonCanonicalIpv4(Ipv4Addr::new(8, 8, 8, 8)),
        ),
        (
            "https://134744072/",
            UrlRejected::NonCanonicalIpv4(Ipv4Addr::new(8, 8, 8, 8)),
        ),
        (
            "https://010.8.8.8/",
            UrlRejected::NonCanonicalIpv4(Ipv4Addr::new(8, 8, 8, 8)),
        ),
        (
            "https://8.8.8.8./",
            UrlRejected::NonCanonicalIpv4(Ipv4Addr::new(8, 8, 8, 8)),
        ),
        // Syntax tricks.
        ("http://hooks.example.com/", UrlRejected::HttpNotAllowed),
        ("http://2130706433/", UrlRejected::HttpNotAllowed),
        ("https://good.com@127.0.0.1/", UrlRejected::UserInfo),
        ("https://good.com:pass@hooks.example.com/", UrlRejected::UserInfo),
        ("https://good.com#@127.0.0.1", UrlRejected::Fragment),
        ("https://hooks.example.com/#frag", UrlRejected::Fragment),
        ("https://%31%32%37.0.0.1/", UrlRejected::PercentEncodedHost),
        ("https://local%68ost/", UrlRejected::PercentEncodedHost),
        ("https://exa mple.com/", UrlRejected::InvalidCharacter),
        ("https://example.com/\r\nHost: evil", UrlRejected::InvalidCharacter),
        ("https://example.com\u{0}.evil.com/", UrlRejected::InvalidCharacter),
        ("https://example.com\\@127.0.0.1/", UrlRejected::InvalidCharacter),
        ("https://ex\u{430}mple.com/", UrlRejected::InvalidCharacter),
        ("\thttps://example.com/", UrlRejected::InvalidCharacter),
        ("https:/example.com/", UrlRejected::NotAbsolute),
        ("file:///etc/passwd", UrlRejected::UnsupportedScheme),
        ("gopher://127.0.0.1:6379/_", UrlRejected::UnsupportedScheme),
        ("https://1.2.3.4.5/", UrlRejected::InvalidHost),
        ("https://example.com:99999/", UrlRejected::InvalidPort),
    ];
    for (url, expected) in table {
        assert_eq!(guard.check(url), Err(expected), "{url:?}");
    }
}

#[test]
fn http_is_accepted_only_when_allowed_and_still_guarded() {
    let guard = WebhookUrlGuard::new().allow_http(true);
    let url = guard.check("http://hooks.example.com/in").unwrap();
    assert!(!url.is_https());
    assert_eq!(url.port(), 80);
    assert_eq!(
        guard.check("http://2130706433/"),
        Err(blocked("127.0.0.1", BlockedRange::Loopback))
    );
}

#[test]
fn documentation_ranges_can_be_allowed() {
    let guard = WebhookUrlGuard::new().block_documentation_ranges(false);
    assert!(guard.check("https://203.0.113.7/").is_ok());
    assert!(guard.check("https://[2001:db8::1]/").is_ok());
    assert!(guard.check("https://127.0.0.1/").is_err());
}

#[test]
fn length_is_bounded() {
    let guard = WebhookUrlGuard::new();
    let base = "https://hooks.example.com/";
    let at_limit = format!("{base}{}", "a".repeat(DEFAULT_MAX_URL_LENGTH - base.len()));
    assert!(guard.check(&at_limit).is_ok());
    let over = format!("{at_limit}a");
    assert_eq!(
        guard.check(&over),
        Err(UrlRejected::TooLong {
            len: DEFAULT_MAX_URL_LENGTH + 1,
            max: DEFAULT_MAX_URL_LENGTH
        })
    );
    assert!(WebhookUrlGuard::new().max_length(20).check(base).is_err());
}

#[test]
fn the_allowlist_takes_exact_hosts_and_subdomains() {
    let guard = WebhookUrlGuard::new()
        .allow_host("hooks.example.com")
        .allow_host("*.Partner.io")
        .allow_host("127.0.0.1");
    for url in [
        "https://hooks.example.com/",
        "https://HOOKS.example.com./x",
        "https://a.partner.io/",
        "https://a.b.partner.io/",
    ] {
        assert!(guard.check(url).is_ok(), "{url}");
    }
    for (url, host) in [
        ("https://evil.com/", "evil.com"),
        ("https://partner.io/", "partner.io"),
        ("https://evilpartner.io/", "evilpartner.io"),
        ("https://hooks.example.com.evil.com/", "hooks.example.com.evil.com"),
        ("https://www.hooks.example.com/", "www.hooks.example.com"),
    ] {
        assert_eq!(guard.check(url), Err(UrlRejected::HostNotAllowed(host.into())), "{url}");
    }
    assert_eq!(
        guard.check("https://127.0.0.1/"),
        Err(blocked("127.0.0.1", BlockedRange::Loopback)),
        "an allowlisted address is still checked"
    );
}

fn fake_dns(calls: &'static AtomicUsize) -> WebhookUrlGuard {
    WebhookUrlGuard::new().resolver(resolve_fn(move |host: String, _port| async move {
        calls.fetch_add(1, Ordering::SeqCst);
        let ips: Vec<&str> = match host.as_str() {
            "public.example.com" => vec!["93.184.215.14", "2606:2800:220:1::1"],
            "rebind.example.com" => vec!["93.184.215.14", "127.0.0.1"],
            "v6local.example.com" => vec!["::1"],
            "mapped.example.com" => vec!["::ffff:10.0.0.1"],
            "metadata.example.com" => vec!["169.254.169.254"],
            "empty.example.com" => vec![],
            _ => return Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
        };
        Ok(ips.into_iter().map(|ip| ip.parse().unwrap()).collect())
    }))
}

#[tokio::test]
async fn every_resolved_address_must_pass() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let guard = fake_dns(&CALLS);
    let url = guard
        .check_resolved("https://public.example.com:8443/in")
        .await
        .unwrap();
    assert_eq!(
        url.resolved_addrs(),
        &[
            "93.184.215.14:8443".parse().unwrap(),
            "[2606:2800:220:1::1]:8443".parse().unwrap()
        ]
    );
    let table = [
        (
            "https://rebind.example.com/",
            blocked("127.0.0.1", BlockedRange::Loopback),
        ),
        ("https://v6local.example.com/", blocked("::1", BlockedRange::Loopback)),
        (
            "https://mapped.example.com/",
            blocked("::ffff:10.0.0.1", BlockedRange::Private),
        ),
        (
            "https://metadata.example.com/",
            blocked("169.254.169.254", BlockedRange::CloudMetadata),
        ),
        (
            "https://empty.example.com/",
            UrlRejected::NoAddresses("empty.example.com".into()),
        ),
        (
            "https://missing.example.com/",
            UrlRejected::ResolutionFailed {
                host: "missing.example.com".into(),
                reason: "no such host".into(),
            },
        ),
    ];
    for (url, expected) in table {
        assert_eq!(guard.check_resolved(url).await, Err(expected), "{url}");
    }
    assert_eq!(CALLS.load(Ordering::SeqCst), 7);
    // Literal addresses and syntax errors never reach the resolver.
    assert!(guard.check_resolved("https://93.184.215.14/").await.is_ok());
    assert!(guard.check_resolved("https://localhost/").await.is_err());
    assert_eq!(CALLS.load(Ordering::SeqCst), 7);
    // The synchronous check does not resolve.
    assert!(guard.check("https://rebind.example.com/").is_ok());
    assert!(guard
        .check("https://rebind.example.com/")
        .unwrap()
        .resolved_addrs()
        .is_empty());
}

#[tokio::test]
async fn the_header_is_optional_single_and_checked() {
    let guard = WebhookUrlGuard::new();
    let mut headers = HeaderMap::new();
    assert_eq!(guard.check_header(&headers).await, Ok(None));
    headers.insert(X_WEBHOOK_URL, HeaderValue::from_static("https://hooks.example.com/in"));
    let url = guard.check_header(&headers).await.unwrap().unwrap();
    assert_eq!(url.as_str(), "https://hooks.example.com/in");
    headers.append(X_WEBHOOK_URL, HeaderValue::from_static("https://other.example.com/"));
    assert_eq!(guard.check_header(&headers).await, Err(UrlRejected::DuplicateHeader));
    let mut opaque = HeaderMap::new();
    opaque.insert(
        X_WEBHOOK_URL,
        HeaderValue::from_bytes(b"https://\xffexample.com/").unwrap(),
    );
    assert_eq!(guard.check_header(&opaque).await, Err(UrlRejected::InvalidCharacter));
}

#[test]
fn rejections_are_400_and_do_not_reveal_destinations() {
    let guard = WebhookUrlGuard::new();
    let rejection = guard.check("https://10.0.0.1/").unwrap_err().to_rejection();
    assert_eq!(rejection.status(), 400);
    assert_eq!(rejection.code(), "INVALID_WEBHOOK_URL");
    assert!(!rejection.message().contains("10.0.0.1"), "{}", rejection.message());
    assert_eq!(
        rejection.to_json(),
        r#"{"error":{"code":"INVALID_WEBHOOK_URL","message":"X-Webhook-URL must point to a public host that webhooks may be sent to."}}"#
    );
    let syntax: tollgate_core::Rejection = guard.check("http://example.com/").unwrap_err().into();
    assert_eq!(
        syntax.message(),
        "X-Webhook-URL is not a valid webhook URL: plain http URLs are not allowed."
    );
}

// Every spelling of an IPv4 address that WHATWG parsers accept: the guard
// passes only the canonical spelling of a public address.
fn spellings(ip: u32) -> Vec<String> {
    let [a, b, c, d] = ip.to_be_bytes();
    vec![
        format!("{a}.{b}.{c}.{d}"),
        format!("{ip}"),
        format!("{ip:#x}"),
        format!("0{ip:o}"),
        format!("{a:#x}.{b}.{c}.{d}"),
        format!("0{a:o}.{b}.{c}.{d}"),
        format!("{a}.{}", ip & 0x00ff_ffff),
        format!("{a}.{b}.{}", ip & 0xffff),
        format!("{a}.{b}.{c}.{d}."),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn only_canonical_public_ipv4_passes(ip in any::<u32>()) {
        let guard = WebhookUrlGuard::new();
        let addr = Ipv4Addr::from(ip);
        let public = blocked_range(addr.into(), true).is_none();
        for (index, spelling) in spellings(ip).iter().enumerate() {
            let result = guard.check(&format!("https://{spelling}/"));
            if index == 0 && public {
                prop_assert_eq!(result.map(|url| url.ip()), Ok(Some(IpAddr::V4(addr))));
            } else if public {
                prop_assert_eq!(result, Err(UrlRejected::NonCanonicalIpv4(addr)), "{}", spelling);
            } else {
                let is_blocked = matches!(result, Err(UrlRejected::BlockedAddress { addr: found, .. }) if found == IpAddr::V4(addr));
                prop_assert!(is_blocked, "{}", spelling);
            }
        }
    }
}

#[test]
fn private_addresses_pass_only_when_explicitly_allowed() {
    let guard = WebhookUrlGuard::new().allow_http(true);
    assert!(matches!(
        guard.check("http://127.0.0.1:8081/webhooks"),
        Err(UrlRejected::BlockedAddress { .. })
    ));
    let local = guard.allow_private_addresses(true);
    assert_eq!(
        local.check("http://127.0.0.1:8081/webhooks").unwrap().as_str(),
        "http://127.0.0.1:8081/webhooks"
    );
    assert_eq!(local.check("http://[::1]/x").unwrap().port(), 80);
    assert!(local.check("http://localhost/x").is_err(), "names stay refused");
}
