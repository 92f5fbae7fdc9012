//! [`RequireScopeLayer`]: per-route permissions over the [`Principal`] that
//! [`BearerAuthLayer`](crate::BearerAuthLayer) put in request extensions.
//!
//! Mount it per route (axum's `route_layer`) behind the auth layer. A
//! principal that fails the rule gets 403 `FORBIDDEN` with
//! `WWW-Authenticate: Bearer error="insufficient_scope"` (plus
//! `scope="…"` when one scope was required); a request with no principal at
//! all gets 401, since the layer was mounted without authentication in front.
//!
//! | constructor | passes when the principal holds |
//! |---|---|
//! | [`require(s)`](RequireScopeLayer::require) | `s` |
//! | [`any_of([a, b])`](RequireScopeLayer::any_of) | `a` or `b` |
//! | [`all_of([a, b])`](RequireScopeLayer::all_of) | `a` and `b` |
//! | [`by_method(read, write)`](RequireScopeLayer::by_method) | `read` for `GET`/`HEAD`, `write` otherwise |
//! | [`custom(f)`](RequireScopeLayer::custom) | whatever `f(&principal, &parts)` says |
//!
//! [`Scope::ALL`](tollgate_core::Scope::ALL) (`*`) satisfies every scope.
//!
//! The service is a [`Gate`] over the [`Authorize`] policy, which decides
//! at once: nothing is ever boxed or awaited.
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use bytes::Bytes;
//! use tollgate_auth::RequireScopeLayer;
//! use tollgate_core::{KeyKind, Principal, Scope};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let handler = service_fn(|_: Request<Full<Bytes>>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("sent"))))
//! });
//! let send_messages = RequireScopeLayer::require(Scope::new("messages:write")).layer(handler);
//!
//! // What BearerAuthLayer would have inserted for a read-only key:
//! let mut request = Request::post("/v1/messages").body(Full::default()).unwrap();
//! request.extensions_mut().insert(Principal::new("acct_1", "key_1", KeyKind::ReadOnly));
//! let response = send_messages.clone().oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::FORBIDDEN);
//! assert_eq!(
//!     response.headers()["www-authenticate"],
//!     r#"Bearer error="insufficient_scope", scope="messages:write""#
//! );
//!
//! let mut request = Request::post("/v1/messages").body(Full::default()).unwrap();
//! request.extensions_mut().insert(Principal::new("acct_1", "key_2", KeyKind::Production));
//! assert_eq!(send_messages.oneshot(request).await.unwrap().status(), StatusCode::OK);
//! # }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Request};
use http_body_util::Full;
use tollgate_core::gate::{Gate, Policy, Verdict};
use tollgate_core::{MaybeReady, Principal, Renderer, Scope};
use tower_layer::Layer;

use crate::rejections;

/// A rule deciding whether a principal may make a request. Implemented for
/// every `Fn(&Principal, &Parts) -> bool`.
pub trait ScopePredicate: Send + Sync + 'static {
    /// Whether `principal` may make the request described by `parts`.
    fn allows(&self, principal: &Principal, parts: &Parts) -> bool;
}

impl<F> ScopePredicate for F
where
    F: Fn(&Principal, &Parts) -> bool + Send + Sync + 'static,
{
    fn allows(&self, principal: &Principal, parts: &Parts) -> bool {
        self(principal, parts)
    }
}

enum Rule {
    Require(Scope),
    AnyOf(Vec<Scope>),
    AllOf(Vec<Scope>),
    ByMethod { read: Scope, write: Scope },
    Custom(Box<dyn ScopePredicate>),
}

impl Rule {
    // `Err` carries the one scope that was required, when there was one.
    fn check(&self, principal: &Principal, parts: &Parts) -> Result<(), Option<&Scope>> {
        let holds = |scope: &Scope| principal.has_scope(scope.as_str());
        match self {
            Rule::Require(scope) => holds(scope).then_some(()).ok_or(Some(scope)),
            Rule::AnyOf(scopes) => scopes.iter().any(holds).then_some(()).ok_or(None),
            Rule::AllOf(scopes) => scopes.iter().all(holds).then_some(()).ok_or(None),
            Rule::ByMethod { read, write } => {
                let scope = if parts.method == Method::GET || parts.method == Method::HEAD {
                    read
                } else {
                    write
                };
                holds(scope).then_some(()).ok_or(Some(scope))
            }
            Rule::Custom(predicate) => predicate.allows(principal, parts).then_some(()).ok_or(None),
        }
    }
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Require(scope) => f.debug_tuple("Require").field(scope).finish(),
            Rule::AnyOf(scopes) => f.debug_tuple("AnyOf").field(scopes).finish(),
            Rule::AllOf(scopes) => f.debug_tuple("AllOf").field(scopes).finish(),
            Rule::ByMethod { read, write } => f
                .debug_struct("ByMethod")
                .field("read", read)
                .field("write", write)
                .finish(),
            Rule::Custom(_) => f.write_str("Custom"),
        }
    }
}

/// The service made by [`RequireScopeLayer`]: `S` behind [`Authorize`].
pub type RequireScope<S> = Gate<S, Authorize>;

/// Refuses requests whose [`Principal`] fails a scope rule. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct RequireScopeLayer {
    policy: Authorize,
}

/// The policy of [`RequireScopeLayer`]: whether the request's principal
/// passes the scope rule.
#[derive(Clone, Debug)]
pub struct Authorize {
    rule: Arc<Rule>,
    renderer: Renderer,
}

impl RequireScopeLayer {
    fn with_rule(rule: Rule) -> RequireScopeLayer {
        RequireScopeLayer {
            policy: Authorize {
                rule: Arc::new(rule),
                renderer: Renderer::default(),
            },
        }
    }

    /// Requires `scope`.
    pub fn require(scope: Scope) -> RequireScopeLayer {
        RequireScopeLayer::with_rule(Rule::Require(scope))
    }

    /// Requires at least one of `scopes` (an empty list admits nobody).
    pub fn any_of(scopes: impl IntoIterator<Item = Scope>) -> RequireScopeLayer {
        RequireScopeLayer::with_rule(Rule::AnyOf(scopes.into_iter().collect()))
    }

    /// Requires every one of `scopes` (an empty list admits every principal).
    pub fn all_of(scopes: impl IntoIterator<Item = Scope>) -> RequireScopeLayer {
        RequireScopeLayer::with_rule(Rule::AllOf(scopes.into_iter().collect()))
    }

    /// Requires `read` for `GET` and `HEAD`, `write` for every other method.
    pub fn by_method(read: Scope, write: Scope) -> RequireScopeLayer {
        RequireScopeLayer::with_rule(Rule::ByMethod { read, write })
    }

    /// Admits the requests for which `allows(&principal, &parts)` is true.
    pub fn custom<F>(allows: F) -> RequireScopeLayer
    where
        F: Fn(&Principal, &Parts) -> bool + Send + Sync + 'static,
    {
        RequireScopeLayer::predicate(allows)
    }

    /// Admits the requests that `predicate` allows.
    pub fn predicate(predicate: impl ScopePredicate) -> RequireScopeLayer {
        RequireScopeLayer::with_rule(Rule::Custom(Box::new(predicate)))
    }

    /// How refusals are rendered.
    pub fn renderer(mut self, renderer: Renderer) -> Self {
        self.policy.renderer = renderer;
        self
    }
}

impl<S> Layer<S> for RequireScopeLayer {
    type Service = RequireScope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Gate::new(inner, self.policy.clone())
    }
}

impl<B> Policy<B> for Authorize {
    type Body = B;
    type Finish = ();
    type Answer = Full<Bytes>;

    fn decide(&self, request: Request<B>) -> MaybeReady<Verdict<B, (), Full<Bytes>>> {
        let (parts, body) = request.into_parts();
        let verdict = match parts.extensions.get::<Principal>() {
            None => {
                tracing::debug!("a scope rule ran without a principal: is BearerAuthLayer in front?");
                Err(Cow::Borrowed(rejections::missing_key()))
            }
            Some(principal) => self
                .rule
                .check(principal, &parts)
                .map_err(|scope| Cow::Owned(rejections::insufficient_scope(scope.map(Scope::as_str)))),
        };
        MaybeReady::ready(match verdict {
            Ok(()) => Verdict::Proceed(Request::from_parts(parts, body), ()),
            Err(rejection) => Verdict::Respond(self.renderer.render(&rejection, &parts.headers)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::WWW_AUTHENTICATE;
    use http::{Response, StatusCode};
    use http_body_util::BodyExt;
    use tollgate_core::KeyKind;
    use tower::{service_fn, Service, ServiceExt};

    fn ok_service(
    ) -> impl Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = std::convert::Infallible> + Clone
    {
        service_fn(|_: Request<Full<Bytes>>| async { Ok(Response::new(Full::new(Bytes::from_static(b"ok")))) })
    }

    fn request(method: Method, principal: Option<Principal>) -> Request<Full<Bytes>> {
        let mut request = Request::builder()
            .method(method)
            .uri("/v1/messages")
            .body(Full::default())
            .unwrap();
        if let Some(principal) = principal {
            request.extensions_mut().insert(principal);
        }
        request
    }

    fn narrow(scopes: &[&'static str]) -> Principal {
        Principal::new("acct", "key", KeyKind::Production).with_scopes(scopes.iter().map(|s| Scope::new(*s)))
    }

    async fn status(layer: &RequireScopeLayer, method: Method, principal: Option<Principal>) -> StatusCode {
        let service = layer.layer(ok_service());
        service.oneshot(request(method, principal)).await.unwrap().status()
    }

    #[tokio::test]
    async fn require_admits_holders_and_names_the_scope_to_others() {
        let layer = RequireScopeLayer::require(Scope::new("messages:write"));
        let allowed = narrow(&["messages:write"]);
        let response = layer
            .layer(ok_service())
            .oneshot(request(Method::POST, Some(allowed)))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "ok");

        let response = layer
            .layer(ok_service())
            .oneshot(request(Method::POST, Some(narrow(&["messages:read"]))))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            r#"Bearer error="insufficient_scope", scope="messages:write""#
        );
        assert_eq!(
            response.into_body().collect().await.unwrap().to_bytes(),
            r#"{"error":{"code":"FORBIDDEN","message":"This API key does not have the permission this request requires.","required_scope":"messages:write"}}"#
        );
    }

    #[tokio::test]
    async fn the_all_scope_satisfies_every_rule() {
        let admin = Principal::new("acct", "key", KeyKind::Production);
        for layer in [
            RequireScopeLayer::require(Scope::new("anything")),
            RequireScopeLayer::any_of([Scope::new("a"), Scope::new("b")]),
            RequireScopeLayer::all_of([Scope::new("a"), Scope::new("b")]),
            RequireScopeLayer::by_method(Scope::new("r"), Scope::new("w")),
        ] {
            assert_eq!(
                status(&layer, Method::DELETE, Some(admin.clone())).await,
                StatusCode::OK
            );
        }
    }

    #[tokio::test]
    async fn any_of_needs_one_and_all_of_needs_every_one() {
        let any = RequireScopeLayer::any_of([Scope::new("a"), Scope::new("b")]);
        let all = RequireScopeLayer::all_of([Scope::new("a"), Scope::new("b")]);
        assert_eq!(status(&any, Method::GET, Some(narrow(&["b"]))).await, StatusCode::OK);
        assert_eq!(
            status(&any, Method::GET, Some(narrow(&["c"]))).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status(&all, Method::GET, Some(narrow(&["a"]))).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status(&all, Method::GET, Some(narrow(&["b", "a"]))).await,
            StatusCode::OK
        );
        let nobody = RequireScopeLayer::any_of([]);
        assert_eq!(
            status(&nobody, Method::GET, Some(narrow(&["a"]))).await,
            StatusCode::FORBIDDEN
        );
        let everybody = RequireScopeLayer::all_of([]);
        assert_eq!(status(&everybody, Method::GET, Some(narrow(&[]))).await, StatusCode::OK);
    }

    #[tokio::test]
    async fn any_of_refusals_name_no_single_scope() {
        let layer = RequireScopeLayer::any_of([Scope::new("a"), Scope::new("b")]);
        let response = layer
            .layer(ok_service())
            .oneshot(request(Method::GET, Some(narrow(&[]))))
            .await
            .unwrap();
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            r#"Bearer error="insufficient_scope""#
        );
    }

    #[tokio::test]
    async fn by_method_picks_the_scope_from_the_method() {
        let layer = RequireScopeLayer::by_method(Scope::new("messages:read"), Scope::new("messages:write"));
        let reader = narrow(&["messages:read"]);
        assert_eq!(status(&layer, Method::GET, Some(reader.clone())).await, StatusCode::OK);
        assert_eq!(status(&layer, Method::HEAD, Some(reader.clone())).await, StatusCode::OK);
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert_eq!(
                status(&layer, method, Some(reader.clone())).await,
                StatusCode::FORBIDDEN
            );
        }
        let writer = narrow(&["messages:write"]);
        assert_eq!(status(&layer, Method::POST, Some(writer.clone())).await, StatusCode::OK);
        let response = layer
            .layer(ok_service())
            .oneshot(request(Method::GET, Some(writer)))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            r#"Bearer error="insufficient_scope", scope="messages:read""#
        );
    }

    #[tokio::test]
    async fn custom_rules_see_the_principal_and_the_request() {
        let layer = RequireScopeLayer::custom(|principal: &Principal, parts: &Parts| {
            principal.account_id() == "acct" && parts.uri.path().starts_with("/v1/")
        });
        assert_eq!(status(&layer, Method::GET, Some(narrow(&[]))).await, StatusCode::OK);
        let stranger = Principal::new("other", "key", KeyKind::Production);
        assert_eq!(status(&layer, Method::GET, Some(stranger)).await, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn no_principal_is_a_401() {
        let layer = RequireScopeLayer::require(Scope::new("messages:write"));
        let response = layer
            .layer(ok_service())
            .oneshot(request(Method::GET, None))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["code"], "UNAUTHORIZED");
    }

    #[test]
    fn the_layer_debug_shows_the_rule() {
        let layer = RequireScopeLayer::by_method(Scope::new("r"), Scope::new("w"));
        assert!(format!("{layer:?}").contains("ByMethod"));
    }
}
