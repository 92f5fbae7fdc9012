//! Instruction counts per request, for callgrind: runs one scenario a fixed
//! number of times inside `measured`, so a profile restricted to that
//! function divided by the iteration count is the cost of one request,
//! without setup and without a timer's noise. Same requests as the
//! `request_10k_keys` group of the `rate_limit` bench.
//!
//! ```text
//! cargo bench -p tollgate-ratelimit --bench rate_limit_profile --no-run
//! valgrind --tool=callgrind --toggle-collect='*measured*' \
//!     target/release/deps/rate_limit_profile-<hash> layer 100000
//! callgrind_annotate callgrind.out.<pid>
//! ```
//!
//! Scenarios: `bare`, `layer`, `layer_legacy_headers`, `layer_free_plan`,
//! `layer_counting_usage` (with `count_usage`), `store`, `usage_record`
//! (one `UsageRecorder::record` alone).
//! Run without valgrind it prints each scenario's mean time.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tollgate_core::rate_limit::{Limits, MemoryRateLimitStore, Plan, RateLimitStore};
use tollgate_core::usage::{MemoryUsageStore, UsageRecorder};
use tollgate_core::{KeyKind, Principal};
use tollgate_ratelimit::{Plans, RateLimitLayer};
use tower::{Layer, Service};

const KEYS: usize = 10_000;
const RATE: u32 = 1_000_000;
const BURST: u32 = 1_000;

type Body = Full<Bytes>;

fn poll_now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the profiled future was not ready"),
    }
}

// The only function callgrind collects in (`--toggle-collect='*measured*'`).
#[inline(never)]
fn measured(iters: usize, mut op: impl FnMut(usize)) {
    for i in 0..iters {
        op(i);
    }
}

fn run(iters: usize, mut op: impl FnMut(usize)) -> f64 {
    // Warm-up, outside the collected function: every key seen once.
    for i in 0..KEYS {
        op(i);
    }
    let start = Instant::now();
    measured(iters, op);
    start.elapsed().as_nanos() as f64 / iters as f64
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|arg| arg != "--bench");
    let scenario = args.next().unwrap_or_else(|| "all".to_owned());
    let iters: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1_000_000);

    let principals: Vec<Principal> = (0..KEYS)
        .map(|i| Principal::new("acct", format!("key_{i:08}"), KeyKind::Production).with_plan("bench"))
        .collect();
    let free_principals: Vec<Principal> = principals.iter().map(|p| p.clone().with_plan("free")).collect();
    let request = |principals: &[Principal], i: usize| {
        let mut request = Request::new(Body::default());
        request.extensions_mut().insert(principals[i % KEYS].clone());
        request
    };
    let handler = tower::service_fn(|_request: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::new(Bytes::from_static(b"ok"))))
    });
    let bench_plans = || Plans::empty().with(Plan::new("bench", RATE).with_burst(BURST));
    // The Free plan's daily quota would refuse after 1,000 requests a key:
    // the same shape of plan, with room for the whole run.
    let free_plans = || {
        Plans::empty().with(
            Plan::new("free", RATE)
                .with_burst(BURST)
                .with_daily_quota(Some(u64::MAX / 2)),
        )
    };

    let scenarios: Vec<&str> = match scenario.as_str() {
        "all" => vec![
            "bare",
            "layer",
            "layer_legacy_headers",
            "layer_free_plan",
            "layer_counting_usage",
            "store",
            "usage_record",
        ],
        one => vec![one],
    };
    for scenario in scenarios {
        let nanos = match scenario {
            "bare" => {
                let mut bare = handler;
                run(iters, |i| {
                    black_box(poll_now(bare.call(request(&principals, i))).unwrap());
                })
            }
            "layer" | "layer_legacy_headers" | "layer_free_plan" | "layer_counting_usage" => {
                let (plans, principals) = match scenario {
                    "layer_free_plan" => (free_plans(), &free_principals),
                    _ => (bench_plans(), &principals),
                };
                let mut layer = RateLimitLayer::new(MemoryRateLimitStore::new())
                    .plans(plans)
                    .legacy_headers(scenario == "layer_legacy_headers");
                if scenario == "layer_counting_usage" {
                    layer = layer.count_usage(UsageRecorder::new(Arc::new(MemoryUsageStore::new())));
                }
                let mut limited = layer.layer(handler);
                run(iters, |i| {
                    poll_now(std::future::poll_fn(|cx| limited.poll_ready(cx))).unwrap();
                    let response = poll_now(limited.call(request(principals, i))).unwrap();
                    assert_eq!(response.status(), 200);
                    black_box(response);
                })
            }
            "store" => {
                let store = MemoryRateLimitStore::new();
                let limits = Limits::per_second(RATE).with_burst(BURST);
                let keys: Vec<String> = (0..KEYS).map(|i| format!("key:key_{i:08}")).collect();
                run(iters, |i| {
                    black_box(poll_now(store.check(&keys[i % KEYS], &limits, 1)).unwrap());
                })
            }
            "usage_record" => {
                let recorder = UsageRecorder::new(Arc::new(MemoryUsageStore::new()));
                let keys: Vec<String> = (0..KEYS).map(|i| format!("key_{i:08}")).collect();
                run(iters, |i| recorder.record(black_box(&keys[i % KEYS]), false))
            }
            other => panic!("unknown scenario {other:?}"),
        };
        println!("{scenario}: {nanos:.1} ns/request over {iters} requests");
    }
}
