//! The request-path cost of metering: one request through `RateLimitLayer`
//! (memory store, 10,000 keys) with no recorder installed and with
//! `metrics-exporter-prometheus`'s recorder, with alerts on (a key below
//! 80% of its quota: arithmetic only), and with the recorder global and its
//! handles kept (`metrics::keep_handles`, as messaging-api runs); and one
//! outcome report alone, the same ways. All in one run, so they compare.
//!
//! cargo bench -p tollgate-ratelimit --bench metering -- --warm-up-time 1 --measurement-time 3
//!
//! Instruction counts, free of the timer's noise: the binary run as
//! `metering-<hash> profile <scenario> <iterations>` repeats one scenario
//! (`no_recorder`, `prometheus`, `prometheus_alerts`,
//! `prometheus_kept_handles`) inside `measured`:
//!
//! ```text
//! valgrind --tool=callgrind --toggle-collect='*measured*' \
//!     target/release/deps/metering-<hash> profile prometheus 100000
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{black_box, criterion_group, Criterion};
use http::{Request, Response};
use http_body_util::Full;
use metrics_exporter_prometheus::PrometheusBuilder;
use tollgate_core::alerts::{Alert, Alerts};
use tollgate_core::metrics::{self as metering, Layer as Metered};
use tollgate_core::rate_limit::{MemoryRateLimitStore, Plan};
use tollgate_core::{KeyKind, Principal};
use tollgate_ratelimit::{Plans, RateLimitLayer};
use tower::{Layer, Service};

const KEYS: usize = 10_000;
const RATE: u32 = 1_000_000;

type Body = Full<Bytes>;

// The keys, their plan and the handler both entry points measure.
struct Fixture {
    principals: Vec<Principal>,
    plans: Plans,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            principals: (0..KEYS)
                .map(|i| Principal::new("acct", format!("key_{i:08}"), KeyKind::Production).with_plan("bench"))
                .collect(),
            // A daily quota far from spent, so each request is admitted and below 80%.
            plans: Plans::empty().with(
                Plan::new("bench", RATE)
                    .with_burst(1_000)
                    .with_daily_quota(Some(u64::MAX / 2)),
            ),
        }
    }

    // A request by the `i`th key, round-robin.
    fn request(&self, i: usize) -> Request<Body> {
        let mut request = Request::new(Body::default());
        request.extensions_mut().insert(self.principals[i % KEYS].clone());
        request
    }
}

fn handler() -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send> + Clone {
    tower::service_fn(|_request: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::new(Bytes::from_static(b"ok"))))
    })
}

// Everything benchmarked here completes on its first poll.
fn poll_now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the benchmarked future was not ready"),
    }
}

fn metering(c: &mut Criterion) {
    let fixture = Fixture::new();
    let request = |i: usize| fixture.request(i);
    let plans = fixture.plans.clone();
    let mut limited = RateLimitLayer::new(MemoryRateLimitStore::new())
        .plans(plans.clone())
        .layer(handler());
    let (alerts, _worker) = Alerts::new(|_: Alert| async {});
    let mut alerting = RateLimitLayer::new(MemoryRateLimitStore::new())
        .plans(plans)
        .alerts(alerts)
        .layer(handler());
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();

    let mut group = c.benchmark_group("metering");
    let mut i = 0;
    let mut bench_layer = |group: &mut criterion::BenchmarkGroup<_>, name: &str, recorded: bool| {
        let _local = recorded.then(|| metrics::set_default_local_recorder(&recorder));
        group.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                poll_now(std::future::poll_fn(|cx| limited.poll_ready(cx))).unwrap();
                black_box(poll_now(limited.call(request(i))).unwrap())
            })
        });
    };
    bench_layer(&mut group, "rate_limit_layer_no_recorder", false);
    bench_layer(&mut group, "rate_limit_layer_prometheus", true);
    {
        let _local = metrics::set_default_local_recorder(&recorder);
        group.bench_function("rate_limit_layer_prometheus_alerts", |b| {
            b.iter(|| {
                i += 1;
                poll_now(std::future::poll_fn(|cx| alerting.poll_ready(cx))).unwrap();
                black_box(poll_now(alerting.call(request(i))).unwrap())
            })
        });
    }
    group.bench_function("one_report_no_recorder", |b| {
        b.iter(|| metering::allowed(black_box(Metered::RateLimit), black_box("key_1")))
    });
    {
        let _local = metrics::set_default_local_recorder(&recorder);
        group.bench_function("one_report_prometheus", |b| {
            b.iter(|| metering::allowed(black_box(Metered::RateLimit), black_box("key_1")))
        });
    }
    // Last, because both are for good in this process: the recorder
    // installed globally and its request counters' handles kept.
    let global = PrometheusBuilder::new().build_recorder();
    let global_handle = global.handle();
    metrics::set_global_recorder(global).expect("no global recorder yet");
    metering::keep_handles();
    group.bench_function("rate_limit_layer_prometheus_kept_handles", |b| {
        b.iter(|| {
            i += 1;
            poll_now(std::future::poll_fn(|cx| limited.poll_ready(cx))).unwrap();
            black_box(poll_now(limited.call(request(i))).unwrap())
        })
    });
    group.bench_function("one_report_prometheus_kept_handles", |b| {
        b.iter(|| metering::allowed(black_box(Metered::RateLimit), black_box("key_1")))
    });
    group.finish();
    // Both recorders saw the requests: their expositions name them.
    for exposition in [handle.render(), global_handle.render()] {
        assert!(
            exposition.contains(r#"tollgate_requests_total{layer="rate_limit",outcome="allowed"}"#),
            "{exposition}"
        );
    }
}

criterion_group!(benches, metering);

#[inline(never)]
fn measured(iterations: usize, mut one: impl FnMut(usize)) {
    for i in 0..iterations {
        one(i);
    }
}

// One scenario, `iterations` times, for callgrind.
fn profile(scenario: &str, iterations: usize) {
    let fixture = Fixture::new();
    let request = |i: usize| fixture.request(i);
    let plans = fixture.plans.clone();
    let mut layer = RateLimitLayer::new(MemoryRateLimitStore::new()).plans(plans);
    let (alerts, _worker) = Alerts::new(|_: Alert| async {});
    let recorder = PrometheusBuilder::new().build_recorder();
    let _local = match scenario {
        "no_recorder" => None,
        "prometheus_kept_handles" => {
            metrics::set_global_recorder(recorder).expect("no global recorder yet");
            metering::keep_handles();
            None
        }
        "prometheus" => Some(metrics::set_default_local_recorder(&recorder)),
        "prometheus_alerts" => {
            layer = layer.alerts(alerts);
            Some(metrics::set_default_local_recorder(&recorder))
        }
        other => panic!("unknown scenario {other}"),
    };
    let mut service = layer.layer(handler());
    // Every key seen once, so the measured requests are steady-state.
    let mut call = |i: usize| {
        poll_now(std::future::poll_fn(|cx| service.poll_ready(cx))).unwrap();
        black_box(poll_now(service.call(request(i))).unwrap());
    };
    for i in 0..KEYS {
        call(i);
    }
    let started = std::time::Instant::now();
    measured(iterations, call);
    println!("{scenario}: {:?} per request", started.elapsed() / iterations as u32);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("profile") {
        let iterations = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(100_000);
        return profile(args.get(2).map_or("prometheus", String::as_str), iterations);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
