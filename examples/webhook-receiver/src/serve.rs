//! Serving with HTTP limits, so a slow or hostile client cannot hold
//! connections, memory or file descriptors: hyper's HTTP/1 connection
//! builder with a header read timeout and a header size cap, an idle
//! keep-alive timeout, a per-request timeout, and a cap on concurrent
//! connections.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// The server's HTTP limits. The defaults suit a receiver on the internet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time a client has to send a request's complete head (default 10 s);
    /// the connection is closed after it (slow-header exhaustion).
    pub header_read_timeout: Duration,
    /// Time a keep-alive connection may wait for its next request (default 60 s).
    pub idle_timeout: Duration,
    /// Time a request may take, body and handler included (default 30 s); 408 after it.
    pub request_timeout: Duration,
    /// Connections served at once (default 1,024); more wait in the listen backlog.
    pub max_connections: usize,
    /// Largest request head in bytes (default 16 KiB, at least 8 KiB); 431 beyond.
    pub max_header_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            max_connections: 1_024,
            max_header_bytes: 16 * 1024,
        }
    }
}

/// Serves `router` on `listener` under `limits` until `shutdown` completes,
/// then lets the requests in progress finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = Arc::new(limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of descriptors and the like: try the next one.
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (router, limits, stopped) = (router.clone(), limits.clone(), stopped.clone());
        tokio::spawn(async move {
            serve_connection(stream, router, &limits, stopped).await;
            drop(permit);
        });
    }
    let _ = stop.send(true);
    // Every connection holds a permit until it ends.
    let _ = slots.acquire_many(limits.max_connections.max(1) as u32).await;
    Ok(())
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    router: Router,
    limits: &HttpLimits,
    mut stopped: watch::Receiver<bool>,
) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let activity = Arc::new(tokio::sync::Notify::new());
    let request_timeout = limits.request_timeout;
    let service = {
        let (in_flight, activity) = (in_flight.clone(), activity.clone());
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let router = router.clone();
            let (in_flight, activity) = (in_flight.clone(), activity.clone());
            in_flight.fetch_add(1, Ordering::SeqCst);
            activity.notify_one();
            async move {
                let response = match tokio::time::timeout(request_timeout, router.oneshot(request.map(Body::new))).await
                {
                    Ok(response) => response.unwrap_or_else(|never: Infallible| match never {}),
                    Err(_) => timed_out(),
                };
                in_flight.fetch_sub(1, Ordering::SeqCst);
                activity.notify_one();
                Ok::<_, Infallible>(response)
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8 * 1024))
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let idle_timeout = limits.idle_timeout;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended");
                }
                return;
            }
            // Idle: no request in progress for a whole idle timeout.
            () = tokio::time::sleep(idle_timeout), if in_flight.load(Ordering::SeqCst) == 0 => {
                if in_flight.load(Ordering::SeqCst) == 0 {
                    connection.as_mut().graceful_shutdown();
                }
            }
            () = activity.notified() => {}
            _ = stopped.changed() => connection.as_mut().graceful_shutdown(),
        }
    }
}

fn timed_out() -> Response<Body> {
    let mut response = Response::new(Body::from("request timed out"));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    response
}
