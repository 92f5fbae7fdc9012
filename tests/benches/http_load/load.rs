//! The load generator: `C` keep-alive HTTP/1.1 connections, each sending
//! one GET after another (closed loop) for a warm-up and then a measured
//! window, the requests carrying the target's keys (10,000 of them) as
//! `Authorization: Bearer`.
//!
//! A response counts when it completes inside the measured window; its
//! latency is from just before the request is handed to hyper until its
//! body has been read whole.
//!
//! Two ways of using the keys ([`Drive`]):
//!
//! - [`Drive::RoundRobin`]: request `n` (over all connections) carries key
//!   `n mod 10,000`, as a fleet of callers would; every response must be
//!   200, anything else fails the run with the counts by status.
//! - [`Drive::OverLimit`]: each connection takes the next key and sends it
//!   request after request for half of the plan's emission interval, then
//!   moves on. A key idle for longer than its burst takes to refill admits
//!   exactly `min(sent, burst)` of such a series (no emission interval can
//!   pass between its first and last request), so the number of 200s is
//!   known exactly and checked: a 200 more or fewer fails the run. A series
//!   that cannot be judged exactly (a slow response let a refill happen, or
//!   the key was used again too soon) is counted apart and reported.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};

use crate::cpu::threads_cpu_time;
use crate::stacks::PATH;

/// Names of the threads of the server's runtime, for CPU accounting.
pub const SERVER_THREADS: &str = "tgb-server";
/// Names of the threads of the load generator's runtime.
pub const LOAD_THREADS: &str = "tgb-load";

// Bounds, so that a misbehaving server fails the run instead of hanging it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_REQUESTS_PER_CONNECTION: u64 = 10_000_000;

/// Where to send requests, and the credentials to send.
#[derive(Clone, Debug)]
pub struct Target {
    /// The server's loopback address.
    pub addr: SocketAddr,
    /// The keys and how to use them.
    pub keys: Arc<KeyRing>,
}

/// How the load uses the keys.
#[derive(Clone, Copy, Debug)]
pub enum Drive {
    /// One key after another, every response 200.
    RoundRobin,
    /// Series of requests on one key past its plan's burst (see the module docs).
    OverLimit {
        /// The plan's burst.
        burst: u64,
        /// The plan's emission interval.
        interval: Duration,
    },
}

/// The target's keys, as `Bearer <key>` values, and which one is next.
#[derive(Debug)]
pub struct KeyRing {
    authorizations: Vec<HeaderValue>,
    next: AtomicUsize,
    /// When each key's last series ended, nanoseconds since `epoch` (0: never).
    last_used: Vec<AtomicU64>,
    epoch: Instant,
    pub drive: Drive,
}

impl KeyRing {
    pub fn new(authorizations: Vec<HeaderValue>, drive: Drive) -> KeyRing {
        let last_used = authorizations.iter().map(|_| AtomicU64::new(0)).collect();
        KeyRing {
            authorizations,
            next: AtomicUsize::new(0),
            last_used,
            epoch: Instant::now(),
            drive,
        }
    }

    fn next_index(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.authorizations.len()
    }

    fn since_epoch(&self, at: Instant) -> u64 {
        nanos(at.saturating_duration_since(self.epoch)).max(1)
    }
}

/// What over-limit series saw (all zero for round-robin driving).
#[derive(Clone, Copy, Debug, Default)]
pub struct Refusals {
    /// 200 responses, warm-up included.
    pub admitted: u64,
    /// 429 responses, warm-up included.
    pub limited: u64,
    /// Series judged exactly.
    pub exact_series: u64,
    /// 200s in those series.
    pub exact_admitted: u64,
    /// 200s the plans allow in those series.
    pub expected_admitted: u64,
    /// Series that could not be judged exactly.
    pub unjudged_series: u64,
}

impl Refusals {
    pub fn add(&mut self, other: &Refusals) {
        self.admitted += other.admitted;
        self.limited += other.limited;
        self.exact_series += other.exact_series;
        self.exact_admitted += other.exact_admitted;
        self.expected_admitted += other.expected_admitted;
        self.unjudged_series += other.unjudged_series;
    }
}

/// How long to load before measuring, and how long to measure.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub warmup: Duration,
    pub measure: Duration,
}

/// What one measurement saw.
#[derive(Debug)]
pub struct Sample {
    /// Responses completed inside the measured window.
    pub responses: u64,
    /// Every response, the warm-up's included.
    pub all_responses: u64,
    /// Their latencies, in nanoseconds, sorted.
    pub latencies: Vec<u64>,
    /// CPU time of the server's threads during the window.
    pub server_cpu: Option<Duration>,
    /// CPU time of the load generator's threads during the window.
    pub load_cpu: Option<Duration>,
    /// Over-limit driving: the statuses and the exactness check.
    pub refusals: Refusals,
}

/// Loads `target` with `connections` connections for `window`.
pub async fn measure(target: &Target, connections: usize, window: Window) -> Result<Sample, String> {
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        senders.push(connect(target.addr).await?);
    }
    let warm_end = Instant::now() + window.warmup;
    let end = warm_end + window.measure;
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|sender| tokio::spawn(drive(sender, target.clone(), warm_end, end)))
        .collect();

    sleep_until(warm_end).await;
    let cpu_before = cpu_now();
    sleep_until(end).await;
    let cpu_after = cpu_now();

    let mut latencies = Vec::new();
    let mut all_responses = 0;
    let mut refused: BTreeMap<u16, u64> = BTreeMap::new();
    let mut refusals = Refusals::default();
    let mut errors = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok(outcome)) => {
                latencies.extend(outcome.latencies);
                all_responses += outcome.all_responses;
                refusals.add(&outcome.refusals);
                for (status, count) in outcome.refused {
                    *refused.entry(status).or_default() += count;
                }
            }
            Ok(Err(error)) => errors.push(error),
            Err(panic) => errors.push(format!("a connection task failed: {panic}")),
        }
    }
    if let Some(error) = errors.first() {
        return Err(format!(
            "{} of {connections} connections failed; first: {error}",
            errors.len()
        ));
    }
    if !refused.is_empty() {
        return Err(format!("responses other than 200 (status: count): {refused:?}"));
    }
    if refusals.exact_admitted != refusals.expected_admitted {
        return Err(format!(
            "over the limit, {} responses were 200 where the plans allow exactly {} ({} series)",
            refusals.exact_admitted, refusals.expected_admitted, refusals.exact_series
        ));
    }
    if latencies.is_empty() {
        return Err("no response completed inside the measured window".into());
    }
    latencies.sort_unstable();
    Ok(Sample {
        responses: latencies.len() as u64,
        all_responses,
        latencies,
        server_cpu: cpu_before
            .0
            .zip(cpu_after.0)
            .map(|(before, after)| after.saturating_sub(before)),
        load_cpu: cpu_before
            .1
            .zip(cpu_after.1)
            .map(|(before, after)| after.saturating_sub(before)),
        refusals,
    })
}

/// Sends `count` requests one after another on one connection (for
/// counting what a single request costs): round-robin over the keys, each
/// answered 200; or, over the limit, all on one key, answered 200 until its
/// burst is spent and 429 after.
pub async fn send_sequentially(target: &Target, count: u64) -> Result<(), String> {
    let mut sender = connect(target.addr).await?;
    let over_limit_key = target.keys.next_index();
    for _ in 0..count {
        match target.keys.drive {
            Drive::RoundRobin => {
                let status = send(&mut sender, target, target.keys.next_index()).await?;
                if status != StatusCode::OK {
                    return Err(format!("a sequential request was answered {status}"));
                }
            }
            Drive::OverLimit { .. } => {
                let status = send(&mut sender, target, over_limit_key).await?;
                if status != StatusCode::OK && status != StatusCode::TOO_MANY_REQUESTS {
                    return Err(format!("a sequential request was answered {status}"));
                }
            }
        }
    }
    Ok(())
}

fn cpu_now() -> (Option<Duration>, Option<Duration>) {
    (threads_cpu_time(SERVER_THREADS), threads_cpu_time(LOAD_THREADS))
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Empty<Bytes>>, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|error| format!("connecting to {addr}: {error}"))?;
    stream
        .set_nodelay(true)
        .map_err(|error| format!("TCP_NODELAY: {error}"))?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| format!("HTTP/1.1 handshake with {addr}: {error}"))?;
    // Ends when the sender is dropped (or the server closes): nothing to report then.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

struct Outcome {
    latencies: Vec<u64>,
    all_responses: u64,
    refused: BTreeMap<u16, u64>,
    refusals: Refusals,
}

// The series of requests one connection is sending on one key.
struct Series {
    key: usize,
    started: Instant,
    sent: u64,
    admitted: u64,
    // Judged exactly only if the key had refilled before the series began.
    fresh: bool,
}

// One connection's closed loop until `end`.
async fn drive(
    mut sender: SendRequest<Empty<Bytes>>,
    target: Target,
    warm_end: Instant,
    end: Instant,
) -> Result<Outcome, String> {
    let mut outcome = Outcome {
        latencies: Vec::with_capacity(16 * 1024),
        all_responses: 0,
        refused: BTreeMap::new(),
        refusals: Refusals::default(),
    };
    let keys = Arc::clone(&target.keys);
    let mut series: Option<Series> = None;
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        let started = Instant::now();
        if started >= end {
            break;
        }
        let key = match keys.drive {
            Drive::RoundRobin => keys.next_index(),
            Drive::OverLimit { burst, interval } => {
                if series
                    .as_ref()
                    .is_some_and(|open| started >= open.started + interval / 2)
                {
                    close_series(&keys, series.take(), burst, interval, started, &mut outcome.refusals);
                }
                let open = series.get_or_insert_with(|| open_series(&keys, burst, interval, started));
                open.sent += 1;
                open.key
            }
        };
        let status = send(&mut sender, &target, key).await?;
        let finished = Instant::now();
        let counted = match (keys.drive, status) {
            (_, StatusCode::OK) => {
                if let Some(open) = series.as_mut() {
                    open.admitted += 1;
                    outcome.refusals.admitted += 1;
                }
                true
            }
            (Drive::OverLimit { .. }, StatusCode::TOO_MANY_REQUESTS) => {
                outcome.refusals.limited += 1;
                true
            }
            _ => false,
        };
        if counted {
            outcome.all_responses += 1;
            if finished >= warm_end && finished < end {
                outcome.latencies.push(nanos(finished - started));
            }
        } else {
            // Warm-up included: an unexpected status means the configuration is wrong.
            *outcome.refused.entry(status.as_u16()).or_default() += 1;
        }
    }
    if let Drive::OverLimit { burst, interval } = keys.drive {
        close_series(
            &keys,
            series.take(),
            burst,
            interval,
            Instant::now(),
            &mut outcome.refusals,
        );
    }
    Ok(outcome)
}

fn open_series(keys: &KeyRing, burst: u64, interval: Duration, now: Instant) -> Series {
    let key = keys.next_index();
    let last = keys.last_used[key].load(Ordering::Relaxed);
    // Idle for the time the burst takes to refill (with a margin): a full burst.
    let refill = interval * u32::try_from(burst).unwrap_or(u32::MAX) + Duration::from_millis(50);
    let fresh = last == 0 || keys.since_epoch(now) > last + nanos(refill);
    Series {
        key,
        started: now,
        sent: 0,
        admitted: 0,
        fresh,
    }
}

// Judges a finished series: exact when the key was fresh and every response
// came back within one emission interval of the first request.
fn close_series(
    keys: &KeyRing,
    series: Option<Series>,
    burst: u64,
    interval: Duration,
    now: Instant,
    refusals: &mut Refusals,
) {
    let Some(series) = series else { return };
    keys.last_used[series.key].store(keys.since_epoch(now), Ordering::Relaxed);
    if series.fresh && now < series.started + interval {
        refusals.exact_series += 1;
        refusals.exact_admitted += series.admitted;
        refusals.expected_admitted += series.sent.min(burst);
    } else {
        refusals.unjudged_series += 1;
    }
}

async fn send(sender: &mut SendRequest<Empty<Bytes>>, target: &Target, key: usize) -> Result<StatusCode, String> {
    let exchange = async {
        sender
            .ready()
            .await
            .map_err(|error| format!("connection not ready: {error}"))?;
        let request = Request::get(PATH)
            .header(HOST, HeaderValue::from_static("127.0.0.1"))
            .header(AUTHORIZATION, target.keys.authorizations[key].clone())
            .body(Empty::<Bytes>::new())
            .map_err(|error| format!("building a request: {error}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| format!("sending a request: {error}"))?;
        let status = response.status();
        // Read the body whole: the connection is reusable only then.
        response
            .into_body()
            .collect()
            .await
            .map_err(|error| format!("reading a response body: {error}"))?;
        Ok(status)
    };
    timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_elapsed| format!("no response within {REQUEST_TIMEOUT:?}"))?
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
