//! The gRPC server's limits, tried as an attacker would: a connection that
//! sends half an HTTP/1 request head (or any bytes short of the HTTP/2
//! preface) is closed at the header timeout, while a real HTTP/2 client
//! that sent its preface stays connected past it.

use std::time::{Duration, Instant};

use grpc_messaging::{serve_with_limits, AppState, GrpcLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tollgate_core::SharedClock;

async fn start() -> std::net::SocketAddr {
    let limits = GrpcLimits {
        header_read_timeout: Duration::from_millis(300),
        ..GrpcLimits::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::new(SharedClock::default());
    tokio::spawn(serve_with_limits(listener, state, limits, std::future::pending()));
    addr
}

// Sends `bytes` and waits for the server to close the connection.
async fn closed_after(bytes: &[u8]) -> Duration {
    let addr = start().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let started = Instant::now();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received))
        .await
        .expect("the server closed the connection in time")
        .ok();
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_an_http1_request_head_is_refused() {
    // Not an HTTP/2 preface: refused as soon as the bytes differ.
    let after = closed_after(b"GET /v1/keys HTTP/1.1\r\n").await;
    assert!(after < Duration::from_secs(3), "closed after {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_preface_is_cut_off_at_the_header_timeout() {
    // A valid start that never completes: only the deadline ends it.
    let after = closed_after(b"PRI * HTTP/2.0\r\n").await;
    assert!(after >= Duration::from_millis(250), "closed after {after:?}");
    assert!(after < Duration::from_secs(3), "closed after {after:?}");
}

// Frames as (type, flags) from raw HTTP/2 bytes.
fn frames(mut bytes: &[u8]) -> Vec<(u8, u8)> {
    let mut frames = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        frames.push((bytes[3], bytes[4]));
        bytes = &bytes[(9 + len).min(bytes.len())..];
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sent_its_preface_stays_connected() {
    let addr = start().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    // An empty SETTINGS frame.
    stream.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    // A PING, past the header timeout: it must be answered.
    stream
        .write_all(&[0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8])
        .await
        .unwrap();
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !frames(&received).contains(&(6, 1)) {
        let mut buffer = [0u8; 1024];
        let left = deadline.saturating_duration_since(Instant::now());
        let read = tokio::time::timeout(left, stream.read(&mut buffer))
            .await
            .expect("a PING ACK in time")
            .unwrap();
        assert!(read > 0, "the connection was closed: {:?}", frames(&received));
        received.extend_from_slice(&buffer[..read]);
    }
}
