//! HTTP/2 limits for the gRPC server, so a slow or hostile client cannot
//! hold connections, memory or file descriptors.
//!
//! tonic has knobs for most of them ([`GrpcLimits::apply`]); two it lacks
//! are added around the accepted sockets ([`limited_incoming`]): a cap on
//! concurrent connections, and a deadline for the HTTP/2 connection
//! preface, which a client that connects and sends half a request (or
//! nothing) never completes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::Server;

// "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n": every HTTP/2 connection opens with it.
const PREFACE_LEN: usize = 24;

/// The server's limits. The defaults suit a server on the internet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcLimits {
    /// Time a client has to send the HTTP/2 connection preface (default 10 s);
    /// the connection is closed after it (slow-header exhaustion).
    pub header_read_timeout: Duration,
    /// Time a connection may live (default 30 min): HTTP/2 has no idle
    /// timeout in tonic, so connections are recycled, gracefully, after it.
    /// Dead peers are found sooner by keep-alive pings (every 30 s, 10 s to answer).
    pub max_connection_age: Duration,
    /// Time a call may take (default 30 s); `DEADLINE_EXCEEDED` after it.
    pub request_timeout: Duration,
    /// Connections served at once (default 1,024); more wait in the listen backlog.
    pub max_connections: usize,
    /// Largest header list of a call, in bytes (default 16 KiB).
    pub max_header_bytes: u32,
    /// Concurrent calls on one connection (default 100).
    pub max_concurrent_streams: u32,
}

impl Default for GrpcLimits {
    fn default() -> GrpcLimits {
        GrpcLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(30 * 60),
            request_timeout: Duration::from_secs(30),
            max_connections: 1_024,
            max_header_bytes: 16 * 1024,
            max_concurrent_streams: 100,
        }
    }
}

impl GrpcLimits {
    /// The tonic server builder with these limits.
    pub fn apply(&self, server: Server) -> Server {
        server
            .timeout(self.request_timeout)
            .max_connection_age(self.max_connection_age)
            .max_connection_age_grace(self.request_timeout)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .http2_max_header_list_size(self.max_header_bytes)
            .max_concurrent_streams(self.max_concurrent_streams)
    }
}

/// The accepted connections of `listener`, at most `limits.max_connections`
/// at once, each closed unless its preface arrives within the header timeout.
pub fn limited_incoming(listener: TcpListener, limits: &GrpcLimits) -> impl Stream<Item = io::Result<LimitedStream>> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let timeout = limits.header_read_timeout;
    futures_util::stream::unfold((listener, slots), move |(listener, slots)| async move {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let accepted = listener.accept().await.map(|(stream, _)| LimitedStream {
            stream,
            preface_deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            read: 0,
            _permit: permit,
        });
        Some((accepted, (listener, slots)))
    })
}

/// An accepted connection holding its slot, with a preface deadline.
#[derive(Debug)]
pub struct LimitedStream {
    stream: TcpStream,
    // Disarmed once the preface's bytes have arrived.
    preface_deadline: Option<Pin<Box<Sleep>>>,
    read: usize,
    _permit: OwnedSemaphorePermit,
}

impl Connected for LimitedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(deadline) = &mut this.preface_deadline {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no HTTP/2 preface within the header timeout",
                )));
            }
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        if this.preface_deadline.is_some() {
            this.read += buf.filled().len() - before;
            if this.read >= PREFACE_LEN {
                this.preface_deadline = None;
            }
        }
        result
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
