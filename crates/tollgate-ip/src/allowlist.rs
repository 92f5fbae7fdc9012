//! [`IpAllowlistLayer`]: lets a request through only if its [`ClientIp`]
//! is in every allowlist that applies to it.
//!
//! Three levels, each optional (no list at a level = no restriction there):
//!
//! - **global**: one list for every request, configured on the layer
//!   ([`IpAllowlistLayer::global`]);
//! - **account**: the authenticated account's list, from an
//!   [`AllowlistStore`] ([`IpAllowlistLayer::store`]);
//! - **key**: the key's own list, from the same store. The store is the one
//!   place a key's list lives (it is not part of the key record), so a
//!   rotation that copies it there carries it over to the successor.
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
//! use tollgate_core::allowlist::{AllowlistStore, IpSet, MemoryAllowlistStore};
//! use tollgate_core::{KeyKind, Principal};
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
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::Full;
use tollgate_core::allowlist::{AllowlistStore, Allowlists, IpSet};
use tollgate_core::gate::{Gate, Policy, Verdict};
use tollgate_core::metrics::{self, Layer as Metered, Outcome};
use tollgate_core::{ClientIp, Code, MaybeReady, Principal, Rejection, Renderer, StoreError};
use tower_layer::Layer;

/// 403 `IP_NOT_ALLOWED`: the refusal of every allowlist level, worded so
/// that it does not reveal which list refused.
pub fn ip_not_allowed() -> Rejection {
    Rejection::from_code(Code::IpNotAllowed)
}

/// The service of [`IpAllowlistLayer`]: `S` behind the [`RestrictIp`] policy.
pub type IpAllowlist<S> = Gate<S, RestrictIp>;

/// Allows a request only from addresses in every applicable allowlist; see
/// the [module docs](self).
#[derive(Clone)]
pub struct IpAllowlistLayer {
    global: Option<Arc<IpSet>>,
    store: Option<Arc<dyn AllowlistStore>>,
    renderer: Renderer,
}

impl IpAllowlistLayer {
    /// A layer with no list yet: add a [global](Self::global) list, a
    /// [store](Self::store), or both.
    pub fn new() -> IpAllowlistLayer {
        IpAllowlistLayer {
            global: None,
            store: None,
            renderer: Renderer::default(),
        }
    }

    /// The list every request must match, whoever makes it.
    pub fn global(mut self, list: impl Into<Arc<IpSet>>) -> IpAllowlistLayer {
        self.global = Some(list.into());
        self
    }

    /// Looks up the account's and the key's lists in `store` for requests
    /// that carry a [`Principal`].
    pub fn store(self, store: impl AllowlistStore) -> IpAllowlistLayer {
        self.shared_store(Arc::new(store))
    }

    /// [`store`](Self::store) with a store that is shared already, such as
    /// one chosen at start-up.
    pub fn shared_store(mut self, store: Arc<dyn AllowlistStore>) -> IpAllowlistLayer {
        self.store = Some(store);
        self
    }

    /// How refusals are rendered (default: the seed's JSON, gRPC for gRPC).
    pub fn renderer(mut self, renderer: Renderer) -> IpAllowlistLayer {
        self.renderer = renderer;
        self
    }

    fn describe(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("global", &self.global)
            .field("store", &self.store.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for IpAllowlistLayer {
    fn default() -> IpAllowlistLayer {
        IpAllowlistLayer::new()
    }
}

impl fmt::Debug for IpAllowlistLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.describe("IpAllowlistLayer", f)
    }
}

impl<S> Layer<S> for IpAllowlistLayer {
    type Service = IpAllowlist<S>;

    fn layer(&self, inner: S) -> IpAllowlist<S> {
        Gate::new(
            inner,
            RestrictIp {
                config: Arc::new(self.clone()),
            },
        )
    }
}

/// The policy of [`IpAllowlist`]: lets a request through only if its
/// [`ClientIp`] is in the global list and the account's and key's stored
/// lists, each where there is one; fails closed.
/// Built by [`IpAllowlistLayer`].
#[derive(Clone)]
pub struct RestrictIp {
    config: Arc<IpAllowlistLayer>,
}

impl fmt::Debug for RestrictIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.describe("RestrictIp", f)
    }
}

type Decision<B> = Verdict<B, (), Full<Bytes>>;

impl<B: Send + 'static> Policy<B> for RestrictIp {
    type Body = B;
    type Finish = ();
    type Answer = Full<Bytes>;

    fn decide(&self, request: Request<B>) -> MaybeReady<Decision<B>> {
        let config = &self.config;
        let Some(ClientIp(ip)) = request.extensions().get::<ClientIp>().copied() else {
            tracing::warn!("no client IP in the request (is ClientIpLayer in front?); refusing it");
            return MaybeReady::ready(refuse(&config.renderer, &ip_not_allowed(), request.headers()));
        };
        if let Some(global) = &config.global {
            if !global.contains(ip) {
                tracing::debug!(client_ip = %ip, "not in the global IP allowlist");
                return MaybeReady::ready(refuse(&config.renderer, &ip_not_allowed(), request.headers()));
            }
        }
        let Some(principal) = request.extensions().get::<Principal>() else {
            metrics::allowed_anonymous(Metered::Ip);
            return MaybeReady::ready(Verdict::Proceed(request, ()));
        };
        let Some(store) = &config.store else {
            metrics::allowed(Metered::Ip, principal.key_id());
            return MaybeReady::ready(Verdict::Proceed(request, ()));
        };
        // A memory store has answered already: decide now. Otherwise the
        // lookup goes on with the request until the store answers.
        match store
            .allowlists(principal.account_id(), principal.key_id())
            .into_ready()
        {
            Ok(lists) => MaybeReady::ready(judge(lists, ip, request, &config.renderer)),
            Err(pending) => {
                let renderer = config.renderer.clone();
                pending.map(move |lists| judge(lists, ip, request, &renderer))
            }
        }
    }
}

// The stored lists, judged: the request goes on if `ip` is in each of them.
fn judge<B>(
    lists: Result<Allowlists, StoreError>,
    ip: IpAddr,
    request: Request<B>,
    renderer: &Renderer,
) -> Decision<B> {
    let key_id = request.extensions().get::<Principal>().map(Principal::key_id);
    let lists = match lists {
        Ok(lists) => lists,
        Err(error) => {
            tracing::warn!(%error, key_id, "IP allowlist store failed; refusing the request");
            return refuse(renderer, &Rejection::store_unavailable(), request.headers());
        }
    };
    for (level, list) in [("account", &lists.account), ("key", &lists.key)] {
        if list.as_ref().is_some_and(|list| !list.contains(ip)) {
            tracing::debug!(client_ip = %ip, key_id, level, "not in an IP allowlist");
            return refuse(renderer, &ip_not_allowed(), request.headers());
        }
    }
    metrics::request(Metered::Ip, Outcome::Allowed, key_id);
    Verdict::Proceed(request, ())
}

fn refuse<B>(renderer: &Renderer, rejection: &Rejection, request_headers: &HeaderMap) -> Decision<B> {
    if rejection.status() == http::StatusCode::SERVICE_UNAVAILABLE {
        metrics::store_unavailable(Metered::Ip);
    } else {
        metrics::ip_denied(None);
    }
    Verdict::Respond(renderer.render(rejection, request_headers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::header::CONTENT_TYPE;
    use http::{HeaderValue, Response, StatusCode};
    use http_body_util::BodyExt;
    use tollgate_core::allowlist::MemoryAllowlistStore;
    use tollgate_core::conformance::FakeStore;
    use tollgate_core::{KeyKind, ResponseBody};
    use tower::{service_fn, Service, ServiceExt};

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

    /// Limits `acct_1` to 203.0.113.0/24 in `store`.
    async fn limit_account(store: &impl AllowlistStore) {
        store
            .set_account_allowlist("acct_1", set(&["203.0.113.0/24"]))
            .await
            .unwrap();
    }

    /// Sends `request` and checks the answer; `why` says why that answer.
    async fn expect<S>(service: &S, request: Request<()>, expected: (StatusCode, String), why: &str)
    where
        S: Service<Request<()>, Response = Response<ResponseBody<Full<Bytes>>>, Error = Infallible> + Clone,
    {
        assert_eq!(send(service, request).await, expected, "{why}");
    }

    #[tokio::test]
    async fn account_and_key_lists_intersect_and_a_key_list_never_widens() {
        let store = MemoryAllowlistStore::new();
        limit_account(&store).await;
        // The key's own list is wider than its account's.
        store.set_key_allowlist("key_1", set(&["0.0.0.0/0"])).await.unwrap();
        let handler = Handler::default();
        let service = IpAllowlistLayer::new()
            .global(set(&["203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24"]))
            .store(store.clone())
            .layer(handler.service());
        let from = |client: &str| request(Some(client), Some(principal()));
        expect(&service, from("203.0.113.7"), allowed(), "in every list").await;
        expect(&service, from("198.51.100.7"), refused(), "outside the account's list").await;
        expect(&service, from("10.0.0.1"), refused(), "outside the global list").await;

        // A narrower key list narrows.
        store.set_key_allowlist("key_1", set(&["203.0.113.7"])).await.unwrap();
        expect(&service, from("203.0.113.7"), allowed(), "in the key's list").await;
        expect(&service, from("203.0.113.8"), refused(), "outside the key's list").await;

        // Without an account list the key's list alone applies (inside the global one).
        store.clear_account_allowlist("acct_1").await.unwrap();
        store
            .set_key_allowlist("key_1", set(&["198.51.100.0/24", "10.0.0.0/8"]))
            .await
            .unwrap();
        expect(&service, from("198.51.100.7"), allowed(), "in the key's list").await;
        expect(&service, from("203.0.113.7"), refused(), "outside the key's list").await;
        expect(
            &service,
            from("10.0.0.1"),
            refused(),
            "the key list cannot widen the global list",
        )
        .await;

        // An empty stored list allows nothing; clearing it lifts the restriction.
        store.set_key_allowlist("key_1", IpSet::empty()).await.unwrap();
        expect(&service, from("198.51.100.7"), refused(), "an empty list").await;
        store.clear_key_allowlist("key_1").await.unwrap();
        expect(&service, from("192.0.2.1"), allowed(), "no list").await;

        // Other keys of other accounts are not affected by these lists.
        limit_account(&store).await;
        let stranger = Principal::new("acct_2", "key_2", KeyKind::Production);
        expect(
            &service,
            request(Some("192.0.2.1"), Some(stranger)),
            allowed(),
            "another account",
        )
        .await;
        assert_eq!(handler.calls(), 5);
    }

    #[tokio::test]
    async fn a_store_fault_fails_closed_with_503() {
        let handler = Handler::default();
        let failing = FakeStore::new(MemoryAllowlistStore::new());
        failing.fail_all();
        let service = IpAllowlistLayer::new()
            .global(set(&["203.0.113.0/24"]))
            .store(failing.clone())
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
        assert_eq!(failing.calls("allowlists"), 1);
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

    // A store whose lookups answer only on the second poll, like a remote
    // one, with `acct_1` limited to 203.0.113.0/24.
    async fn slow_store() -> FakeStore<MemoryAllowlistStore> {
        let store = FakeStore::new(MemoryAllowlistStore::new()).asynchronous();
        limit_account(&store).await;
        store
    }

    #[tokio::test]
    async fn the_handler_runs_only_after_the_store_answers() {
        let store = slow_store().await;
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
        let store = slow_store().await;
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
