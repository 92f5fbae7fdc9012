//! The webhook URL guard: an accepted URL never points at a forbidden
//! range, whether written as a literal in any form or reached through the
//! resolver; and the WHATWG URL parser (what an HTTP client would use)
//! reads the same host and port from the input the guard accepted.
#![no_main]

use std::future::Future;
use std::net::IpAddr;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tollgate_webhook::url_guard::{blocked_range, resolve_fn, WebhookUrlGuard};

#[derive(Arbitrary, Debug)]
struct Input {
    url: String,
    resolved: Vec<IpAddr>,
    allow_http: bool,
}

// Every range no webhook may reach, written independently of the guard.
fn forbidden(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
    }
}

fuzz_target!(|input: Input| {
    let resolved = input.resolved.clone();
    let guard = WebhookUrlGuard::new()
        .allow_http(input.allow_http)
        .resolver(resolve_fn(move |_host, _port| {
            let resolved = resolved.clone();
            async move { Ok(resolved) }
        }));
    let Ok(accepted) = block_on(guard.check_resolved(&input.url)) else {
        return;
    };

    assert!(accepted.is_https() || input.allow_http);
    assert!(!accepted.resolved_addrs().is_empty());
    for addr in accepted.resolved_addrs() {
        assert!(!forbidden(addr.ip()), "{} reaches {}", input.url, addr.ip());
        assert!(blocked_range(addr.ip(), true).is_none());
        assert_eq!(addr.port(), accepted.port());
    }
    if let Some(ip) = accepted.ip() {
        assert!(!forbidden(ip), "{} is {ip}", input.url);
    }
    // The normalised URL is accepted again, as itself.
    let again = guard
        .check(accepted.as_str())
        .expect("a normalised URL is accepted again");
    assert_eq!(again.as_str(), accepted.as_str());

    // What an HTTP client reads from the same input.
    let whatwg = url::Url::parse(&input.url).expect("an accepted URL is a URL");
    assert_eq!(whatwg.scheme(), if accepted.is_https() { "https" } else { "http" });
    assert_eq!(whatwg.port_or_known_default(), Some(accepted.port()));
    match whatwg.host().expect("an accepted URL has a host") {
        url::Host::Ipv4(v4) => {
            assert!(!forbidden(v4.into()), "a client reads {v4}");
            assert_eq!(accepted.ip(), Some(IpAddr::V4(v4)));
        }
        url::Host::Ipv6(v6) => {
            assert!(!forbidden(v6.into()), "a client reads {v6}");
            assert_eq!(accepted.ip(), Some(IpAddr::V6(v6)));
        }
        url::Host::Domain(domain) => {
            assert!(accepted.ip().is_none(), "{domain} read as an address by the guard");
            assert_eq!(domain.trim_end_matches('.'), accepted.host());
        }
    }
});
