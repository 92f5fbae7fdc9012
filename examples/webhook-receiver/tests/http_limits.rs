//! The receiver's HTTP limits, tried as an attacker would, with short
//! test-configured limits: a client that sends half a request head is cut
//! off at the header timeout, an idle keep-alive connection at the idle
//! timeout, a huge head gets 431, a slow request 408, and connections past
//! the cap wait.

use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use webhook_receiver::{serve, HttpLimits};

fn limits() -> HttpLimits {
    HttpLimits {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(600),
        request_timeout: Duration::from_millis(300),
        max_connections: 2,
        max_header_bytes: 8 * 1024,
    }
}

async fn start(limits: HttpLimits) -> std::net::SocketAddr {
    let app = Router::new().route("/", get(|| async { "ok" })).route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late"
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, app, limits, std::future::pending()));
    addr
}

// Reads until the server closes the connection; what it sent, and when.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut received))
        .await
        .expect("the server closed the connection in time")
        .ok();
    (String::from_utf8_lossy(&received).into_owned(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_request_head_is_cut_off_at_the_header_timeout() {
    let addr = start(limits()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let (received, after) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(after >= Duration::from_millis(250), "closed after {after:?}");
    assert!(after < Duration::from_secs(3), "closed after {after:?}");
    assert!(!received.contains("200 OK"), "{received}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let addr = start(limits()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let (received, after) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(received.starts_with("HTTP/1.1 200 OK"), "{received}");
    assert!(received.ends_with("ok"), "{received}");
    assert!(after >= Duration::from_millis(250), "closed at once, after {after:?}");
    assert!(after < Duration::from_secs(3), "idle for {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_head_gets_431() {
    let addr = start(limits()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let filler = "a".repeat(1_000);
    let mut head = String::from("GET / HTTP/1.1\r\nhost: x\r\n");
    for i in 0..20 {
        head.push_str(&format!("x-filler-{i}: {filler}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let (received, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(received.starts_with("HTTP/1.1 431"), "{received}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_gets_408() {
    let addr = start(limits()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let (received, after) = read_until_closed(&mut stream, Duration::from_secs(4)).await;
    assert!(received.starts_with("HTTP/1.1 408"), "{received}");
    assert!(after < Duration::from_secs(2), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_for_a_slot() {
    let mut generous = limits();
    generous.header_read_timeout = Duration::from_secs(2);
    generous.idle_timeout = Duration::from_secs(5);
    let addr = start(generous).await;
    // Two silent connections take both slots.
    let mut first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(addr).await.unwrap();
    third
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buffer)).await;
    assert!(early.is_err(), "the third connection was served past the cap");
    // A slot frees when a silent connection is cut off; then it is served.
    drop(first.write_all(b"G").await);
    let (received, _) = read_until_closed(&mut third, Duration::from_secs(5)).await;
    assert!(received.starts_with("HTTP/1.1 200 OK"), "{received}");
}
