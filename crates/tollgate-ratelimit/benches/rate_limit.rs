//! One rate-limit check with 10,000 live keys: tollgate's memory store
//! against governor's keyed limiter (`DefaultKeyedRateLimiter`), on one
//! thread and on two; one request through `RateLimitLayer` (with and
//! without the legacy `X-RateLimit-*` headers) against the bare service;
//! and the memory a tracked key takes at 1,000,000 keys.
//!
//! cargo bench -p tollgate-ratelimit --bench rate_limit -- --warm-up-time 1 --measurement-time 3

use std::convert::Infallible;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{black_box, criterion_group, BenchmarkId, Criterion};
use governor::{Quota, RateLimiter};
use http::{Request, Response};
use http_body_util::Full;
use tollgate_core::rate_limit::{Limits, MemoryRateLimitStore, Plan, RateLimitStore};
use tollgate_core::usage::{MemoryUsageStore, UsageRecorder};
use tollgate_core::{KeyKind, Principal};
use tollgate_ratelimit::{Plans, RateLimitLayer};
use tower::{Layer, Service};

const KEYS: usize = 10_000;
// Generous limits, so both limiters take their admitting path.
const RATE: u32 = 1_000_000;
const BURST: u32 = 1_000;

// Everything benchmarked here completes on its first poll.
fn poll_now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the benchmarked future was not ready"),
    }
}

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("key_{i:08}")).collect()
}

// Runs `iters` operations split over `threads` threads; the wall time.
fn on_threads(threads: usize, iters: u64, op: impl Fn(usize, u64) + Sync) -> Duration {
    let per_thread = iters / threads as u64;
    let start = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let op = &op;
            scope.spawn(move || {
                for i in 0..per_thread {
                    op(thread, i);
                }
            });
        }
    });
    start.elapsed()
}

fn key_index(thread: usize, i: u64) -> usize {
    (i as usize).wrapping_mul(7_919).wrapping_add(thread * 4_999) % KEYS
}

fn check(c: &mut Criterion) {
    let keys = keys();
    let limits = Limits::per_second(RATE).with_burst(BURST);
    let store = MemoryRateLimitStore::new();
    let free = Plan::free().limits();
    let free_store = MemoryRateLimitStore::new();
    let quota = Quota::per_second(NonZeroU32::new(RATE).unwrap()).allow_burst(NonZeroU32::new(BURST).unwrap());
    // governor's default clock reads the TSC (quanta); with its
    // `SystemClock` it reads the time as tollgate's stores do.
    let governor = RateLimiter::keyed(quota);
    let governor_system_clock = RateLimiter::dashmap_with_clock(quota, governor::clock::SystemClock);
    for key in &keys {
        poll_now(store.check(key, &limits, 1)).unwrap();
        poll_now(free_store.check(key, &free, 1)).unwrap();
        let _ = governor.check_key(key);
        let _ = governor_system_clock.check_key(key);
    }

    let mut group = c.benchmark_group("check_10k_keys");
    for threads in [1, 2] {
        group.bench_function(BenchmarkId::new("tollgate_memory", format!("{threads}_threads")), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, |thread, i| {
                    let key = &keys[key_index(thread, i)];
                    black_box(poll_now(store.check(key, &limits, 1)).unwrap());
                })
            })
        });
        group.bench_function(BenchmarkId::new("governor_keyed", format!("{threads}_threads")), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, |thread, i| {
                    let key = &keys[key_index(thread, i)];
                    let _ = black_box(governor.check_key(key));
                })
            })
        });
        group.bench_function(
            BenchmarkId::new("governor_keyed_system_clock", format!("{threads}_threads")),
            |b| {
                b.iter_custom(|iters| {
                    on_threads(threads, iters, |thread, i| {
                        let key = &keys[key_index(thread, i)];
                        let _ = black_box(governor_system_clock.check_key(key));
                    })
                })
            },
        );
        group.bench_function(
            BenchmarkId::new("tollgate_memory_free_plan_with_daily", format!("{threads}_threads")),
            |b| {
                b.iter_custom(|iters| {
                    on_threads(threads, iters, |thread, i| {
                        let key = &keys[key_index(thread, i)];
                        black_box(poll_now(free_store.check(key, &free, 1)).unwrap());
                    })
                })
            },
        );
    }
    group.finish();
}

type Body = Full<Bytes>;

fn layer(c: &mut Criterion) {
    let principals: Vec<Principal> = (0..KEYS)
        .map(|i| Principal::new("acct", format!("key_{i:08}"), KeyKind::Production).with_plan("bench"))
        .collect();
    let request = |i: usize| {
        let mut request = Request::new(Body::default());
        request.extensions_mut().insert(principals[i % KEYS].clone());
        request
    };
    let handler = tower::service_fn(|_request: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::new(Bytes::from_static(b"ok"))))
    });
    let plans = Plans::empty().with(Plan::new("bench", RATE).with_burst(BURST));
    let mut limited = RateLimitLayer::new(MemoryRateLimitStore::new())
        .plans(plans.clone())
        .layer(handler);
    let mut legacy = RateLimitLayer::new(MemoryRateLimitStore::new())
        .plans(plans.clone())
        .legacy_headers(true)
        .layer(handler);
    let recorder = UsageRecorder::new(std::sync::Arc::new(MemoryUsageStore::new()));
    let mut counting = RateLimitLayer::new(MemoryRateLimitStore::new())
        .plans(plans)
        .count_usage(recorder.clone())
        .layer(handler);
    let mut bare = handler;

    let mut group = c.benchmark_group("request_10k_keys");
    let mut i = 0;
    group.bench_function("bare_service", |b| {
        b.iter(|| {
            i += 1;
            black_box(poll_now(bare.call(request(i))).unwrap())
        })
    });
    group.bench_function("rate_limit_layer", |b| {
        b.iter(|| {
            i += 1;
            poll_now(std::future::poll_fn(|cx| limited.poll_ready(cx))).unwrap();
            black_box(poll_now(limited.call(request(i))).unwrap())
        })
    });
    group.bench_function("rate_limit_layer_legacy_headers", |b| {
        b.iter(|| {
            i += 1;
            poll_now(std::future::poll_fn(|cx| legacy.poll_ready(cx))).unwrap();
            black_box(poll_now(legacy.call(request(i))).unwrap())
        })
    });
    group.bench_function("rate_limit_layer_counting_usage", |b| {
        b.iter(|| {
            i += 1;
            poll_now(std::future::poll_fn(|cx| counting.poll_ready(cx))).unwrap();
            black_box(poll_now(counting.call(request(i))).unwrap())
        })
    });
    group.finish();

    // The count alone, on one thread and on two at once (wall time per count).
    let key_ids: Vec<String> = (0..KEYS).map(|i| format!("key_{i:08}")).collect();
    let mut group = c.benchmark_group("usage_record_10k_keys");
    for threads in [1, 2] {
        group.bench_function(BenchmarkId::new("usage_recorder", format!("{threads}_threads")), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, |thread, i| {
                    recorder.record(black_box(&key_ids[key_index(thread, i)]), false);
                })
            })
        });
    }
    group.finish();
}

// Resident memory added by 1,000,000 tracked keys (Free plan: each key is
// kept until midnight), from /proc/self/statm.
fn memory_per_key() {
    fn resident_bytes() -> Option<u64> {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        Some(pages * 4_096)
    }
    let keys: Vec<String> = (0..1_000_000).map(|i| format!("key_{i:08}")).collect();
    let free = Plan::free().limits();
    // Room for every key: the default cap is shared out among shards, so a
    // million keys would fill one of them first.
    let store = MemoryRateLimitStore::new().with_capacity(2_000_000);
    let Some(before) = resident_bytes() else {
        println!("memory per key: /proc/self/statm unavailable");
        return;
    };
    for key in &keys {
        poll_now(store.check(key, &free, 1)).unwrap();
    }
    let after = resident_bytes().unwrap_or(before);
    assert_eq!(store.len(), 1_000_000);
    println!(
        "memory per tracked key at 1,000,000 keys: {:.1} bytes (RSS delta)",
        (after - before) as f64 / 1_000_000.0
    );
}

criterion_group!(benches, check, layer);

fn main() {
    memory_per_key();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
