//! Client IP resolution and allowlist matching against 10,000 CIDRs:
//! `IpSet` (sorted merged ranges, binary search) against a linear scan of
//! the same networks, and the whole layer stack against the bare service.
//!
//! `cargo bench -p tollgate-ip --bench allowlist -- --warm-up-time 1 --measurement-time 3`

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::Full;
use ipnet::{IpNet, Ipv4Net};
use tollgate_core::allowlist::{AllowlistStore, IpSet, MemoryAllowlistStore};
use tollgate_core::{KeyKind, Principal};
use tollgate_ip::{ClientIpLayer, IpAllowlistLayer};
use tower::{service_fn, Layer, Service};

const NETWORKS: usize = 10_000;
const PROBES: usize = 1_024;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

// 10,000 IPv4 networks of /16 to /32 at random places, and probes of which
// about half fall inside one of them.
fn networks_and_probes() -> (Vec<IpNet>, Vec<IpAddr>) {
    let mut random = XorShift(0x2545_f491_4f6c_dd1d);
    let networks: Vec<IpNet> = (0..NETWORKS)
        .map(|_| {
            let prefix = 16 + (random.next() % 17) as u8;
            let address = Ipv4Addr::from(random.next() as u32);
            IpNet::V4(Ipv4Net::new(address, prefix).expect("a valid prefix").trunc())
        })
        .collect();
    let probes = (0..PROBES)
        .map(|i| {
            if i % 2 == 0 {
                let IpNet::V4(net) = networks[random.next() as usize % NETWORKS] else {
                    unreachable!("IPv4 networks only")
                };
                let size = u32::from(net.broadcast()) - u32::from(net.network());
                let offset = if size == 0 { 0 } else { random.next() as u32 % size };
                IpAddr::V4(Ipv4Addr::from(u32::from(net.network()) + offset))
            } else {
                IpAddr::V4(Ipv4Addr::from(random.next() as u32))
            }
        })
        .collect();
    (networks, probes)
}

// What a list without an index does: ask every network in turn.
fn linear_scan(networks: &[IpNet], ip: IpAddr) -> bool {
    networks.iter().any(|network| network.contains(&ip))
}

fn forwarded_headers(client: IpAddr) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let chain = format!("203.0.113.66, {client}, 10.0.0.2");
    headers.insert("x-forwarded-for", HeaderValue::from_str(&chain).expect("a header"));
    headers
}

fn matching(c: &mut Criterion) {
    let (networks, probes) = networks_and_probes();
    let set = IpSet::new(networks.clone());
    let hits = probes.iter().filter(|ip| set.contains(**ip)).count();
    assert_eq!(
        hits,
        probes.iter().filter(|ip| linear_scan(&networks, **ip)).count(),
        "both matchers agree"
    );
    let mut group = c.benchmark_group("allowlist_10k_cidrs");
    let mut i = 0;
    group.bench_function("match/ip_set", |b| {
        b.iter(|| {
            i = (i + 1) % PROBES;
            black_box(set.contains(black_box(probes[i])))
        })
    });
    group.bench_function("match/linear_scan", |b| {
        b.iter(|| {
            i = (i + 1) % PROBES;
            black_box(linear_scan(black_box(&networks), black_box(probes[i])))
        })
    });

    // Resolve behind two trusted proxies, then match.
    let layer = ClientIpLayer::new().trusted_proxies(["10.0.0.0/8".parse().expect("a network")]);
    let peer: IpAddr = "10.0.0.1".parse().expect("an address");
    let requests: Vec<HeaderMap> = probes.iter().map(|ip| forwarded_headers(*ip)).collect();
    group.bench_function("resolve_and_match/ip_set", |b| {
        b.iter(|| {
            i = (i + 1) % PROBES;
            let client = layer.resolve_from(peer, black_box(&requests[i]));
            black_box(set.contains(client.ip()))
        })
    });
    group.bench_function("resolve_and_match/linear_scan", |b| {
        b.iter(|| {
            i = (i + 1) % PROBES;
            let client = layer.resolve_from(peer, black_box(&requests[i]));
            black_box(linear_scan(&networks, client.ip()))
        })
    });
    group.bench_function("build_ip_set", |b| {
        b.iter(|| black_box(IpSet::new(networks.iter().copied())))
    });
    group.finish();
}

// The services here answer at once, so one poll completes a call.
fn call_now<S, B>(service: &mut S, request: Request<Full<Bytes>>) -> Response<B>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(service.poll_ready(&mut cx).is_ready());
    match pin!(service.call(request)).poll(&mut cx) {
        Poll::Ready(Ok(response)) => response,
        _ => panic!("the benchmark services answer at once"),
    }
}

fn stacks(c: &mut Criterion) {
    let (networks, probes) = networks_and_probes();
    let allowed: Vec<IpAddr> = probes.iter().step_by(2).copied().collect();
    let handler = || {
        service_fn(|_request: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        })
    };
    let principal = Principal::new("acct_bench", "key_bench", KeyKind::Production);
    let request = |ip: IpAddr| {
        let mut request = Request::new(Full::new(Bytes::new()));
        request.extensions_mut().insert(SocketAddr::new(ip, 40_000));
        request.extensions_mut().insert(principal.clone());
        request
    };

    let store = MemoryAllowlistStore::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime
        .block_on(store.set_account_allowlist("acct_bench", IpSet::new(networks.clone())))
        .expect("set");

    let mut group = c.benchmark_group("allowlist_stack");
    let mut i = 0;
    let mut bare = handler();
    group.bench_function("bare_service", |b| {
        b.iter(|| {
            i = (i + 1) % allowed.len();
            black_box(call_now(&mut bare, request(allowed[i])))
        })
    });
    let mut global = ClientIpLayer::new().layer(
        IpAllowlistLayer::new()
            .global(IpSet::new(networks.clone()))
            .layer(handler()),
    );
    group.bench_function("client_ip+global_10k", |b| {
        b.iter(|| {
            i = (i + 1) % allowed.len();
            let response = call_now(&mut global, request(allowed[i]));
            debug_assert_eq!(response.status(), 200);
            black_box(response)
        })
    });
    let mut per_account = ClientIpLayer::new().layer(IpAllowlistLayer::new().store(store.clone()).layer(handler()));
    group.bench_function("client_ip+account_store_10k", |b| {
        b.iter(|| {
            i = (i + 1) % allowed.len();
            let response = call_now(&mut per_account, request(allowed[i]));
            debug_assert_eq!(response.status(), 200);
            black_box(response)
        })
    });
    group.finish();
}

criterion_group!(benches, matching, stacks);
criterion_main!(benches);
