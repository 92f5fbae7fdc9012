//! Name resolution for the guard: a name that looks public may resolve to
//! 127.0.0.1 (`localtest.me`, `*.nip.io`, a rebinding attacker's DNS), so
//! with a resolver every address it returns must pass too.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

/// Resolves a host name to its addresses.
pub trait Resolve: Send + Sync + 'static {
    /// Every address of `host` (the port is a hint for resolvers that want it).
    fn resolve(&self, host: &str, port: u16) -> impl Future<Output = io::Result<Vec<IpAddr>>> + Send;
}

/// A [`Resolve`] made from an async closure; see [`resolve_fn`].
#[derive(Clone)]
pub struct ResolveFn<F>(F);

/// Turns `f(host, port)` into a [`Resolve`] (a fixed table in tests, your
/// own DNS client in production).
///
/// ```
/// use std::net::IpAddr;
/// use tollgate_webhook::url_guard::{resolve_fn, WebhookUrlGuard};
///
/// let guard = WebhookUrlGuard::new().resolver(resolve_fn(|host: String, _port| async move {
///     let ip: IpAddr = if host == "rebind.example.com" { [127, 0, 0, 1].into() } else { [93, 184, 215, 14].into() };
///     Ok(vec![ip])
/// }));
/// # tokio_test::block_on(async {
/// assert!(guard.check_resolved("https://hooks.example.com/in").await.is_ok());
/// assert!(guard.check_resolved("https://rebind.example.com/in").await.is_err());
/// # });
/// ```
pub fn resolve_fn<F, Fut>(f: F) -> ResolveFn<F>
where
    F: Fn(String, u16) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = io::Result<Vec<IpAddr>>> + Send + 'static,
{
    ResolveFn(f)
}

impl<F, Fut> Resolve for ResolveFn<F>
where
    F: Fn(String, u16) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = io::Result<Vec<IpAddr>>> + Send + 'static,
{
    fn resolve(&self, host: &str, port: u16) -> impl Future<Output = io::Result<Vec<IpAddr>>> + Send {
        (self.0)(host.to_owned(), port)
    }
}

/// Resolves with the system resolver through `tokio::net::lookup_host`.
#[cfg(feature = "tokio")]
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioResolver;

#[cfg(feature = "tokio")]
impl Resolve for TokioResolver {
    fn resolve(&self, host: &str, port: u16) -> impl Future<Output = io::Result<Vec<IpAddr>>> + Send {
        let host = host.to_owned();
        async move {
            let addrs = tokio::net::lookup_host((host.as_str(), port)).await?;
            Ok(addrs.map(|addr| addr.ip()).collect())
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A [`Resolve`] the guard can hold without a type parameter.
pub(crate) trait DynResolve: Send + Sync {
    fn resolve(&self, host: String, port: u16) -> BoxFuture<io::Result<Vec<IpAddr>>>;
}

impl<R: Resolve> DynResolve for Arc<R> {
    fn resolve(&self, host: String, port: u16) -> BoxFuture<io::Result<Vec<IpAddr>>> {
        let resolver = self.clone();
        Box::pin(async move { Resolve::resolve(&*resolver, &host, port).await })
    }
}

#[cfg(all(test, feature = "tokio"))]
mod tests {
    use super::*;
    use crate::url_guard::blocked_range;

    #[tokio::test]
    async fn the_tokio_resolver_uses_the_system_resolver() {
        // `localhost` resolves from /etc/hosts, without a network.
        let addrs = TokioResolver.resolve("localhost", 443).await.unwrap();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|addr| addr.is_loopback()), "{addrs:?}");
        assert!(addrs.iter().all(|addr| blocked_range(*addr, true).is_some()));
        assert!(TokioResolver.resolve("no-such-host.invalid", 443).await.is_err());
    }
}
