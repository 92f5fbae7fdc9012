//! The load generator: `C` keep-alive HTTP/1.1 connections, each sending
//! one GET after another (closed loop) for a warm-up and then a measured
//! window, every request carrying the same `Authorization: Bearer` key.
//!
//! A response counts when it completes inside the measured window; its
//! latency is from just before the request is handed to hyper until its
//! body has been read whole. Every response must be 200: anything else
//! fails the run with the counts by status.

use std::collections::BTreeMap;
use std::net::SocketAddr;
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

/// Where to send requests, and the credential to send.
#[derive(Clone, Debug)]
pub struct Target {
    /// The server's loopback address.
    pub addr: SocketAddr,
    /// `Bearer <key>`.
    pub authorization: HeaderValue,
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
    let mut errors = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok(outcome)) => {
                latencies.extend(outcome.latencies);
                all_responses += outcome.all_responses;
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
    })
}

/// Sends `count` requests one after another on one connection, checking
/// each is answered 200 (for counting what a single request costs).
pub async fn send_sequentially(target: &Target, count: u64) -> Result<(), String> {
    let mut sender = connect(target.addr).await?;
    for _ in 0..count {
        let status = send(&mut sender, target).await?;
        if status != StatusCode::OK {
            return Err(format!("a sequential request was answered {status}"));
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
    };
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        let started = Instant::now();
        if started >= end {
            break;
        }
        let status = send(&mut sender, &target).await?;
        let finished = Instant::now();
        if status != StatusCode::OK {
            // Warm-up included: any refusal means the configuration is wrong.
            *outcome.refused.entry(status.as_u16()).or_default() += 1;
        } else {
            outcome.all_responses += 1;
            if finished >= warm_end && finished < end {
                outcome.latencies.push(nanos(finished - started));
            }
        }
    }
    Ok(outcome)
}

async fn send(sender: &mut SendRequest<Empty<Bytes>>, target: &Target) -> Result<StatusCode, String> {
    let exchange = async {
        sender
            .ready()
            .await
            .map_err(|error| format!("connection not ready: {error}"))?;
        let request = Request::get(PATH)
            .header(HOST, HeaderValue::from_static("127.0.0.1"))
            .header(AUTHORIZATION, target.authorization.clone())
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
