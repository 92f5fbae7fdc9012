//! [`IpAllowlistLayer`]: lets a request through only if its [`ClientIp`]
//! is in every allowlist that applies to it.
//!
//! Three levels, each optional (no list at a level = no restriction there):
//!
//! - **global**: one list for every request, configured on the layer
//!   ([`IpAllowlistLayer::global`]);
//! - **account**: the authenticated account's list, from an
//!   [`AllowlistStore`] ([`IpAllowlistLayer::store`]);
//! - **key**: the key's own list, from the store and from
//!   [`Principal::ip_allowlist`] (when both exist, both apply).
//!
//! The levels *intersect*: a key's list narrows its account's list and the
//! global list, it never widens them. An empty stored list allows nothing.
//!
//! Refusals are 403 `IP_NOT_ALLOWED` with a message that does not say which
//! list refused (see [`ip_not_allowed`]). The layer fails closed: a request
//! without a [`ClientIp`] (no [`ClientIpLayer`](crate::ClientIpLayer) in
//! front, or no peer address) is refused the same way, and a store fault is
//! a 503 `SERVICE_UNAVAILABLE`, logged with `tracing` at warn level.
//!
//! Place it twice in a stack if you like: before authentication with just
//! the global list (cheap refusals of strangers), and after it with the
//! store for per-account and per-key lists. Without a [`Principal`] in the
//! request, only the global list applies.
//!
//! # Example
//!
//! ```
//! use std::net::SocketAddr;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use tollgate_core::allowlist::{AllowlistStore, IpSet};
//! use tollgate_core::{KeyKind, MemoryAllowlistStore, Principal};
//! use tollgate_ip::{ClientIpLayer, IpAllowlistLayer};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # tokio_test::block_on(async {
//! let store = MemoryAllowlistStore::new();
//! // The account's servers; this key may only be used from one of them.
//! store.set_account_allowlist("acct_1", IpSet::parse(["203.0.113.0/24"]).unwrap()).await.unwrap();
//! store.set_key_allowlist("key_1", IpSet::parse(["203.0.113.7"]).unwrap()).await.unwrap();
//!
//! let service = ServiceBuilder::new()
//!     .layer(ClientIpLayer::new())
//!     // Stands in for BearerAuthLayer, which puts the Principal there.
//!     .map_request(|mut request: Request<Full<Bytes>>| {
//!         request.extensions_mut().insert(Principal::new("acct_1", "key_1", KeyKind::Production));
//!         request
//!     })
//!     .layer(IpAllowlistLayer::new().store(store))
//!     .service(service_fn(|_request: Request<Full<Bytes>>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("sent"))))
//!     }));
//!
//! let from = |peer: &str| {
//!     let mut request = Request::new(Full::new(Bytes::new()));
//!     request.extensions_mut().insert(peer.parse::<SocketAddr>().unwrap());
//!     request
//! };
//! let allowed = service.clone().oneshot(from("203.0.113.7:50000")).await.unwrap();
//! assert_eq!(allowed.status(), StatusCode::OK);
//!
//! // In the account's network, but not the key's own address.
//! let refused = service.oneshot(from("203.0.113.8:50000")).await.unwrap();
//! assert_eq!(refused.status(), StatusCode::FORBIDDEN);
//! let body = refused.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(body, r#"{"error":{"code":"IP_NOT_ALLOWED","message":"Requests from this IP address are not allowed."}}"#);
//! # });
//! ```

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use tollgate_core::allowlist::{networks_contain, AllowlistStore, Allowlists, IpSet};
use tollgate_core::client_ip::ClientIp;
use tollgate_core::{MemoryAllowlistStore, Principal, Rejection, Renderer, ResponseBody, StoreError};
use tower_layer::Layer;
use tower_service::Service;

/// 403 `IP_NOT_ALLOWED`: the refusal of every allowlist level, worded so
/// that it does not reveal which list refused.
pub fn ip_not_allowed() -> Rejection {
    Rejection::new(
        StatusCode::FORBIDDEN,
        "IP_NOT_ALLOWED",
        "Requests from this IP address are not allowed.",
    )
}

/// Allows a request only from addresses in every applicable allowlist; see
/// the [module docs](self).
///
/// `A` is the [`AllowlistStore`] type; without [`store`](Self::store) none
/// is consulted (the default type parameter is only a placeholder then).
pub struct IpAllowlistLayer<A = MemoryAllowlistStore> {
    global: Option<Arc<IpSet>>,
    store: Option<Arc<A>>,
    principal_lists: bool,
    renderer: Renderer,
}

impl IpAllowlistLayer {
    /// A layer with no list yet: add a [global](Self::global) list, a
    /// [store](Self::store), or rely on the principal's own list.
    pub fn new() -> IpAllowlistLayer {
        IpAllowlistLayer {
            global: None,
            store: None,
            principal_lists: true,
            renderer: Renderer::default(),
        }
    }
}

impl Default for IpAllowlistLayer {
    fn default() -> IpAllowlistLayer {
        IpAllowlistLayer::new()
    }
}

impl<A> IpAllowlistLayer<A> {
    /// The list every request must match, whoever makes it.
    pub fn global(mut self, list: impl Into<Arc<IpSet>>) -> IpAllowlistLayer<A> {
        self.global = Some(list.into());
        self
    }

    /// Looks up the account's and the key's lists in `store` for requests
    /// that carry a [`Principal`].
    pub fn store<B: AllowlistStore>(self, store: B) -> IpAllowlistLayer<B> {
        IpAllowlistLayer {
            global: self.global,
            store: Some(Arc::new(store)),
            principal_lists: self.principal_lists,
            renderer: self.renderer,
        }
    }

    /// Whether [`Principal::ip_allowlist`] applies (default `true`).
    pub fn principal_allowlist(mut self, enabled: bool) -> IpAllowlistLayer<A> {
        self.principal_lists = enabled;
        self
    }

    /// How refusals are rendered (default: the seed's JSON, gRPC for gRPC).
    pub fn renderer(mut self, renderer: Renderer) -> IpAllowlistLayer<A> {
        self.renderer = renderer;
        self
    }
}

impl<A> Clone for IpAllowlistLayer<A> {
    fn clone(&self) -> IpAllowlistLayer<A> {
        IpAllowlistLayer {
            global: self.global.clone(),
            store: self.store.clone(),
            principal_lists: self.principal_lists,
            renderer: self.renderer.clone(),
        }
    }
}

impl<A> fmt::Debug for IpAllowlistLayer<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpAllowlistLayer")
            .field("global", &self.global)
            .field("store", &self.store.is_some())
            .field("principal_allowlist", &self.principal_lists)
            .finish_non_exhaustive()
    }
}

impl<S, A> Layer<S> for IpAllowlistLayer<A> {
    type Service = IpAllowlist<S, A>;

    fn layer(&self, inner: S) -> IpAllowlist<S, A> {
        IpAllowlist {
            inner,
            config: Arc::new(self.clone()),
        }
    }
}

/// The service of [`IpAllowlistLayer`].
pub struct IpAllowlist<S, A = MemoryAllowlistStore> {
    inner: S,
    config: Arc<IpAllowlistLayer<A>>,
}

impl<S: Clone, A> Clone for IpAllowlist<S, A> {
    fn clone(&self) -> IpAllowlist<S, A> {
        IpAllowlist {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: fmt::Debug, A> fmt::Debug for IpAllowlist<S, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpAllowlist")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

impl<S, A> IpAllowlist<S, A> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

// What can be decided without the store.
enum Verdict<A> {
    Allow,
    Deny,
    AskStore {
        ip: IpAddr,
        principal: Principal,
        store: Arc<A>,
    },
}

impl<A> IpAllowlistLayer<A> {
    fn verdict<B>(&self, request: &Request<B>) -> Verdict<A> {
        let Some(ClientIp(ip)) = request.extensions().get::<ClientIp>().copied() else {
            tracing::warn!("no client IP in the request (is ClientIpLayer in front?); refusing it");
            return Verdict::Deny;
        };
        if let Some(global) = &self.global {
            if !global.contains(ip) {
                tracing::debug!(client_ip = %ip, "not in the global IP allowlist");
                return Verdict::Deny;
            }
        }
        let Some(principal) = request.extensions().get::<Principal>() else {
            return Verdict::Allow;
        };
        if self.principal_lists {
            if let Some(networks) = principal.ip_allowlist() {
                if !networks_contain(networks, ip) {
                    tracing::debug!(client_ip = %ip, key_id = principal.key_id(), "not in the key's IP allowlist");
                    return Verdict::Deny;
                }
            }
        }
        if let Some(store) = &self.store {
            return Verdict::AskStore {
                ip,
                principal: principal.clone(),
                store: Arc::clone(store),
            };
        }
        Verdict::Allow
    }
}

// The store's answer, judged: the refusal to send, if any.
fn refusal(lists: Result<Allowlists, StoreError>, ip: IpAddr, principal: &Principal) -> Option<Rejection> {
    let lists = match lists {
        Ok(lists) => lists,
        Err(error) => {
            tracing::warn!(%error, key_id = principal.key_id(), "IP allowlist store failed; refusing the request");
            return Some(Rejection::store_unavailable());
        }
    };
    for (level, list) in [("account", &lists.account), ("key", &lists.key)] {
        if list.as_ref().is_some_and(|list| !list.contains(ip)) {
            tracing::debug!(client_ip = %ip, key_id = principal.key_id(), level, "not in an IP allowlist");
            return Some(ip_not_allowed());
        }
    }
    None
}

type LookupFuture = Pin<Box<dyn Future<Output = Result<Allowlists, StoreError>> + Send>>;

impl<S, A, ReqB, ResB> Service<Request<ReqB>> for IpAllowlist<S, A>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    A: AllowlistStore,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> ResponseFuture<S, ReqB> {
        let state = match self.config.verdict(&request) {
            Verdict::Allow => State::Inner {
                future: self.inner.call(request),
            },
            Verdict::Deny => State::Refused {
                response: Some(self.config.renderer.render(&ip_not_allowed(), request.headers())),
            },
            Verdict::AskStore { ip, principal, store } => {
                let asked = principal.clone();
                let lookup: LookupFuture =
                    Box::pin(async move { store.allowlists(asked.account_id(), asked.key_id()).await });
                // The service that was polled ready goes with the request;
                // a fresh clone stays for the next call.
                let fresh = self.inner.clone();
                State::Lookup {
                    lookup,
                    waiting: Some(Waiting {
                        inner: std::mem::replace(&mut self.inner, fresh),
                        request,
                        ip,
                        principal,
                        renderer: self.config.renderer.clone(),
                    }),
                }
            }
        };
        ResponseFuture { state }
    }
}

struct Waiting<S, ReqB> {
    inner: S,
    request: Request<ReqB>,
    ip: IpAddr,
    principal: Principal,
    renderer: Renderer,
}

pin_project! {
    /// The response future of [`IpAllowlist`].
    pub struct ResponseFuture<S, ReqB>
    where
        S: Service<Request<ReqB>>,
    {
        #[pin]
        state: State<S, ReqB>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqB>
    where
        S: Service<Request<ReqB>>,
    {
        Lookup {
            lookup: LookupFuture,
            waiting: Option<Waiting<S, ReqB>>,
        },
        Inner {
            #[pin]
            future: S::Future,
        },
        Refused {
            response: Option<Response<Full<Bytes>>>,
        },
    }
}

impl<S, ReqB, ResB> Future for ResponseFuture<S, ReqB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Output = Result<Response<ResponseBody<ResB>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Lookup { lookup, waiting } => {
                    let lists = ready!(lookup.as_mut().poll(cx));
                    let Waiting {
                        mut inner,
                        request,
                        ip,
                        principal,
                        renderer,
                    } = waiting.take().expect("polled after completion");
                    match refusal(lists, ip, &principal) {
                        None => state.set(State::Inner {
                            future: inner.call(request),
                        }),
                        Some(rejection) => {
                            let response = renderer.render(&rejection, request.headers());
                            return Poll::Ready(Ok(response.map(Either::Right)));
                        }
                    }
                }
                StateProj::Inner { future } => {
                    return future
                        .poll(cx)
                        .map(|result| result.map(|response| response.map(Either::Left)));
                }
                StateProj::Refused { response } => {
                    let response = response.take().expect("polled after completion");
                    return Poll::Ready(Ok(response.map(Either::Right)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::header::CONTENT_TYPE;
    use http::HeaderValue;
    use http_body_util::BodyExt;
    use ipnet::IpNet;
    use tollgate_core::KeyKind;
    use tower::{service_fn, ServiceExt};

    const REFUSED: &str =
        r#"{"error":{"code":"IP_NOT_ALLOWED","message":"Requests from this IP address are not allowed."}}"#;
    const UNAVAILABLE: &str =
        r#"{"error":{"code":"SERVICE_UNAVAILABLE","message":"The service is temporarily unavailable. Please retry."}}"#;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn set(entries: &[&str]) -> IpSet {
        IpSet::parse(entries).unwrap()
    }

    fn principal() -> Principal {
        Principal::new("acct_1", "key_1", KeyKind::Production)
    }

    #[derive(Clone, Default)]
    struct Handler {
        calls: Arc<AtomicUsize>,
    }

    impl Handler {
        fn service(
            &self,
        ) -> impl Service<Request<()>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send> + Clone
        {
            let calls = Arc::clone(&self.calls);
            service_fn(move |_request: Request<()>| {
                calls.fetch_add(1, Ordering::SeqCst);
                std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"handled")))))
            })
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    fn request(client: Option<&str>, principal: Option<Principal>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(client) = client {
            request.extensions_mut().insert(ClientIp::new(ip(client)));
        }
        if let Some(principal) = principal {
            request.extensions_mut().insert(principal);
        }
        request
    }

    async fn send<S>(service: &S, request: Request<()>) -> (StatusCode, String)
    where
        S: Service<Request<()>, Response = Response<ResponseBody<Full<Bytes>>>, Error = Infallible> + Clone,
    {
        let response = service.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn allowed() -> (StatusCode, String) {
        (StatusCode::OK, "handled".to_owned())
    }

    fn refused() -> (StatusCode, String) {
        (StatusCode::FORBIDDEN, REFUSED.to_owned())
    }

    #[tokio::test]
    async fn the_global_list_allows_ipv4_ipv6_and_mapped_clients_and_refuses_others() {
        let handler = Handler::default();
        let service = IpAllowlistLayer::new()
            .global(set(&["203.0.113.0/24", "2001:db8::/32"]))
            .layer(handler.service());
        assert_eq!(send(&service, request(Some("203.0.113.7"), None)).await, allowed());
        assert_eq!(send(&service, request(Some("2001:db8:1::7"), None)).await, allowed());
        // Built directly, not normalised: the list still sees the IPv4 client.
        let mut mapped = request(None, None);
        mapped.extensions_mut().insert(ClientIp(ip("::ffff:203.0.113.9")));
        assert_eq!(send(&service, mapped).await, allowed());
        assert_eq!(handler.calls(), 3);
        for outsider in ["198.51.100.7", "203.0.114.1", "2001:db9::1", "::ffff:198.51.100.7"] {
            assert_eq!(
                send(&service, request(Some(outsider), None)).await,
                refused(),
                "{outsider}"
            );
        }
        assert_eq!(handler.calls(), 3, "refused requests never reach the handler");
        let response = service.oneshot(request(Some("198.51.100.7"), None)).await.unwrap();
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    }

    #[tokio::test]
    async fn without_a_client_ip_every_request_is_refused() {
        let handler = Handler::default();
        let layers = [
            IpAllowlistLayer::new(),
            IpAllowlistLayer::new().global(set(&["0.0.0.0/0", "::/0"])),
        ];
        for layer in layers {
            let service = layer.layer(handler.service());
            assert_eq!(send(&service, request(None, None)).await, refused());
            assert_eq!(send(&service, request(None, Some(principal()))).await, refused());
        }
        assert_eq!(handler.calls(), 0);
    }

    #[tokio::test]
    async fn a_layer_with_no_list_allows_any_client_ip() {
        let handler = Handler::default();
        let service = IpAllowlistLayer::new().layer(handler.service());
        assert_eq!(
            send(&service, request(Some("198.51.100.7"), Some(principal()))).await,
            allowed()
        );
    }

    #[tokio::test]
    async fn account_and_key_lists_intersect_and_a_key_list_never_widens() {
        let store = MemoryAllowlistStore::new();
        store
            .set_account_allowlist("acct_1", set(&["203.0.113.0/24"]))
            .await
            .unwrap();
        // The key's own list is wider than its account's.
        store.set_key_allowlist("key_1", set(&["0.0.0.0/0"])).await.unwrap();
        let handler = Handler::default();
        let service = IpAllowlistLayer::new()
            .global(set(&["203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24"]))
            .store(store.clone())
            .layer(handler.service());
        let from = |client: &str| request(Some(client), Some(principal()));
        assert_eq!(send(&service, from("203.0.113.7")).await, allowed());
        assert_eq!(
            send(&service, from("198.51.100.7")).await,
            refused(),
            "outside the account's list"
        );
        assert_eq!(
            send(&service, from("10.0.0.1")).await,
            refused(),
            "outside the global list"
        );

        // A narrower key list narrows.
        store.set_key_allowlist("key_1", set(&["203.0.113.7"])).await.unwrap();
        assert_eq!(send(&service, from("203.0.113.7")).await, allowed());
        assert_eq!(send(&service, from("203.0.113.8")).await, refused());

        // Without an account list the key's list alone applies (inside the global one).
        store.clear_account_allowlist("acct_1").await.unwrap();
        store
            .set_key_allowlist("key_1", set(&["198.51.100.0/24", "10.0.0.0/8"]))
            .await
            .unwrap();
        assert_eq!(send(&service, from("198.51.100.7")).await, allowed());
        assert_eq!(send(&service, from("203.0.113.7")).await, refused());
        assert_eq!(
            send(&service, from("10.0.0.1")).await,
            refused(),
            "the key list cannot widen the global list"
        );

        // An empty stored list allows nothing; clearing it lifts the restriction.
        store.set_key_allowlist("key_1", IpSet::empty()).await.unwrap();
        assert_eq!(send(&service, from("198.51.100.7")).await, refused());
        store.clear_key_allowlist("key_1").await.unwrap();
        assert_eq!(send(&service, from("192.0.2.1")).await, allowed());

        // Other keys of other accounts are not affected by these lists.
        store
            .set_account_allowlist("acct_1", set(&["203.0.113.0/24"]))
            .await
            .unwrap();
        let stranger = Principal::new("acct_2", "key_2", KeyKind::Production);
        assert_eq!(
            send(&service, request(Some("192.0.2.1"), Some(stranger))).await,
            allowed()
        );
        assert_eq!(handler.calls(), 5);
    }

    #[tokio::test]
    async fn the_principal_list_applies_with_the_stored_lists() {
        let store = MemoryAllowlistStore::new();
        store
            .set_key_allowlist("key_1", set(&["203.0.113.0/24"]))
            .await
            .unwrap();
        let own: Vec<IpNet> = vec!["203.0.113.0/28".parse().unwrap(), "198.51.100.0/24".parse().unwrap()];
        let principal = principal().with_ip_allowlist(Some(own));
        let handler = Handler::default();
        let service = IpAllowlistLayer::new().store(store).layer(handler.service());
        let from = |client: &str| request(Some(client), Some(principal.clone()));
        assert_eq!(send(&service, from("203.0.113.2")).await, allowed(), "in both");
        assert_eq!(send(&service, from("::ffff:203.0.113.2")).await, allowed(), "mapped");
        assert_eq!(
            send(&service, from("203.0.113.200")).await,
            refused(),
            "only in the stored list"
        );
        assert_eq!(
            send(&service, from("198.51.100.1")).await,
            refused(),
            "only in the principal's list"
        );

        let ignoring = IpAllowlistLayer::new()
            .principal_allowlist(false)
            .layer(handler.service());
        assert_eq!(send(&ignoring, from("192.0.2.1")).await, allowed());
        let principal_only = IpAllowlistLayer::new().layer(handler.service());
        assert_eq!(send(&principal_only, from("198.51.100.1")).await, allowed());
        assert_eq!(send(&principal_only, from("192.0.2.1")).await, refused());
    }

    #[derive(Clone, Copy)]
    struct FailingStore;

    fn timeout<T>() -> std::future::Ready<Result<T, StoreError>> {
        std::future::ready(Err(StoreError::Timeout))
    }

    impl AllowlistStore for FailingStore {
        fn account_allowlist(&self, _: &str) -> impl Future<Output = Result<Option<Arc<IpSet>>, StoreError>> + Send {
            timeout()
        }
        fn set_account_allowlist(&self, _: &str, _: IpSet) -> impl Future<Output = Result<(), StoreError>> + Send {
            timeout()
        }
        fn clear_account_allowlist(&self, _: &str) -> impl Future<Output = Result<bool, StoreError>> + Send {
            timeout()
        }
        fn key_allowlist(&self, _: &str) -> impl Future<Output = Result<Option<Arc<IpSet>>, StoreError>> + Send {
            timeout()
        }
        fn set_key_allowlist(&self, _: &str, _: IpSet) -> impl Future<Output = Result<(), StoreError>> + Send {
            timeout()
        }
        fn clear_key_allowlist(&self, _: &str) -> impl Future<Output = Result<bool, StoreError>> + Send {
            timeout()
        }
    }

    #[tokio::test]
    async fn a_store_fault_fails_closed_with_503() {
        let handler = Handler::default();
        let service = IpAllowlistLayer::new()
            .global(set(&["203.0.113.0/24"]))
            .store(FailingStore)
            .layer(handler.service());
        assert_eq!(
            send(&service, request(Some("203.0.113.7"), Some(principal()))).await,
            (StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE.to_owned())
        );
        // Refused by the global list before the store is asked: still 403.
        assert_eq!(
            send(&service, request(Some("198.51.100.7"), Some(principal()))).await,
            refused()
        );
        // Without a principal the store is not consulted at all.
        assert_eq!(send(&service, request(Some("203.0.113.7"), None)).await, allowed());
        assert_eq!(handler.calls(), 1);
    }

    #[tokio::test]
    async fn grpc_requests_get_permission_denied() {
        let service = IpAllowlistLayer::new()
            .global(set(&["203.0.113.0/24"]))
            .layer(Handler::default().service());
        let mut grpc = request(Some("198.51.100.7"), None);
        grpc.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        let response = service.oneshot(grpc).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "7");
    }

    // A store whose lookups answer only on the second poll, like a remote one.
    #[derive(Clone, Default)]
    struct SlowStore(MemoryAllowlistStore);

    struct YieldOnce(bool);

    impl Future for YieldOnce {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                return Poll::Ready(());
            }
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    impl AllowlistStore for SlowStore {
        fn account_allowlist(&self, id: &str) -> impl Future<Output = Result<Option<Arc<IpSet>>, StoreError>> + Send {
            self.0.account_allowlist(id)
        }
        fn set_account_allowlist(&self, id: &str, list: IpSet) -> impl Future<Output = Result<(), StoreError>> + Send {
            self.0.set_account_allowlist(id, list)
        }
        fn clear_account_allowlist(&self, id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send {
            self.0.clear_account_allowlist(id)
        }
        fn key_allowlist(&self, id: &str) -> impl Future<Output = Result<Option<Arc<IpSet>>, StoreError>> + Send {
            self.0.key_allowlist(id)
        }
        fn set_key_allowlist(&self, id: &str, list: IpSet) -> impl Future<Output = Result<(), StoreError>> + Send {
            self.0.set_key_allowlist(id, list)
        }
        fn clear_key_allowlist(&self, id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send {
            self.0.clear_key_allowlist(id)
        }
        fn allowlists(&self, account: &str, key: &str) -> impl Future<Output = Result<Allowlists, StoreError>> + Send {
            let lookup = self.0.allowlists(account, key);
            async move {
                YieldOnce(false).await;
                lookup.await
            }
        }
    }

    #[tokio::test]
    async fn the_handler_runs_only_after_the_store_answers() {
        let store = SlowStore::default();
        store
            .set_account_allowlist("acct_1", set(&["203.0.113.0/24"]))
            .await
            .unwrap();
        let handler = Handler::default();
        let mut service = IpAllowlistLayer::new().store(store).layer(handler.service());

        tokio_test::assert_ready_ok!(tokio_test::task::spawn(()).enter(|cx, _| service.poll_ready(cx)));
        let mut pending = tokio_test::task::spawn(service.call(request(Some("203.0.113.7"), Some(principal()))));
        tokio_test::assert_pending!(pending.poll());
        assert_eq!(handler.calls(), 0, "the handler waits for the lookup");
        assert!(pending.is_woken());
        let response = tokio_test::assert_ready_ok!(pending.poll());
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(handler.calls(), 1);

        tokio_test::assert_ready_ok!(tokio_test::task::spawn(()).enter(|cx, _| service.poll_ready(cx)));
        let mut refused = tokio_test::task::spawn(service.call(request(Some("198.51.100.7"), Some(principal()))));
        tokio_test::assert_pending!(refused.poll());
        let response = tokio_test::assert_ready_ok!(refused.poll());
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(handler.calls(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_requests_on_clones_are_judged_independently() {
        let store = SlowStore::default();
        store
            .set_account_allowlist("acct_1", set(&["203.0.113.0/24"]))
            .await
            .unwrap();
        let handler = Handler::default();
        let service = IpAllowlistLayer::new().store(store).layer(handler.service());
        let tasks: Vec<_> = (0..400u32)
            .map(|i| {
                let service = service.clone();
                let client = if i % 4 == 0 {
                    format!("198.51.100.{}", i % 250)
                } else {
                    format!("203.0.113.{}", i % 250)
                };
                tokio::spawn(async move {
                    let response = service
                        .oneshot(request(Some(&client), Some(principal())))
                        .await
                        .unwrap();
                    (i % 4 == 0, response.status())
                })
            })
            .collect();
        for task in tasks {
            let (outsider, status) = task.await.unwrap();
            assert_eq!(
                status,
                if outsider {
                    StatusCode::FORBIDDEN
                } else {
                    StatusCode::OK
                }
            );
        }
        assert_eq!(handler.calls(), 300);
    }
}
