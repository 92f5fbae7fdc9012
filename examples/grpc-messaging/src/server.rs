//! The service behind the tollgate layers, and serving it with tonic.
//!
//! The stack, outermost first: bearer auth (the key in the `authorization`
//! metadata) → read-only keys limited to read RPCs → rate limit per key →
//! idempotency of `SendMessage` on `x-request-id` → the service. Every
//! refusal is a gRPC status (a trailers-only answer: HTTP 200 and
//! `grpc-status`), rendered by [`RetryInfoRenderer`].

use std::future::Future;

use http::request::Parts;
use http::Method;
use tokio::net::TcpListener;
use tollgate_auth::{BearerAuthLayer, RequireScopeLayer};
use tollgate_core::Principal;
use tollgate_idempotency::IdempotencyLayer;
use tollgate_ratelimit::{Plans, RateLimitLayer};
use tonic::transport::server::Router;
use tonic::transport::Server;
use tower::layer::util::{Identity, Stack};
use tower::ServiceBuilder;

use crate::limits::{limited_incoming, GrpcLimits};
use crate::pb::messaging_server::MessagingServer;
use crate::service::MessagingService;
use crate::state::AppState;
use crate::status_details::RetryInfoRenderer;

/// The path of the `SendMessage` RPC.
pub const SEND_MESSAGE: &str = "/messaging.v1.Messaging/SendMessage";
/// The path of the `GetMessage` RPC.
pub const GET_MESSAGE: &str = "/messaging.v1.Messaging/GetMessage";

/// The RPCs a read-only key may call: the gRPC counterparts of `GET`.
pub const READ_RPCS: &[&str] = &[GET_MESSAGE];

/// The tollgate layers, outermost first, as [`layers`] builds them.
pub type Layers =
    Stack<IdempotencyLayer, Stack<RateLimitLayer, Stack<RequireScopeLayer, Stack<BearerAuthLayer, Identity>>>>;

/// The tonic router: the service behind [`Layers`].
pub type GrpcRouter = Router<Stack<Layers, Identity>>;

/// The tollgate layers over `state`'s stores and clock.
pub fn layers(state: &AppState) -> Layers {
    let renderer = RetryInfoRenderer::shared();
    ServiceBuilder::new()
        // Every gRPC call is a POST, so the key-kind rule is applied per RPC
        // by the next layer instead of per HTTP method.
        .layer(
            BearerAuthLayer::new(state.key_store().clone())
                .clock(state.clock().clone())
                .enforce_key_kind(false)
                .renderer(renderer.clone()),
        )
        .layer(RequireScopeLayer::custom(may_call).renderer(renderer.clone()))
        .layer(
            RateLimitLayer::new(state.rate_limits().clone())
                .plans(Plans::seed())
                .renderer(renderer.clone()),
        )
        .layer(
            IdempotencyLayer::new(state.idempotency().clone())
                .only_when(|_, uri| uri.path() == SEND_MESSAGE)
                .renderer(renderer),
        )
        .into_inner()
}

/// Whether `principal` may call the RPC: read-only keys only the
/// [`READ_RPCS`], the seed's "GET and HEAD only" rule for gRPC.
pub fn may_call(principal: &Principal, parts: &Parts) -> bool {
    let method = if READ_RPCS.contains(&parts.uri.path()) {
        Method::GET
    } else {
        Method::POST
    };
    principal.kind().allows_method(&method)
}

/// The tonic router serving `messaging.v1.Messaging` behind [`layers`],
/// with the default [`GrpcLimits`].
pub fn router(state: &AppState) -> GrpcRouter {
    router_with(state, &GrpcLimits::default())
}

/// [`router`] with `limits`.
pub fn router_with(state: &AppState, limits: &GrpcLimits) -> GrpcRouter {
    limits
        .apply(Server::builder())
        .layer(layers(state))
        .add_service(MessagingServer::new(MessagingService::new(state.clone())))
}

/// Serves on `listener` until the process ends, with the default [`GrpcLimits`].
pub async fn serve(listener: TcpListener, state: AppState) -> Result<(), tonic::transport::Error> {
    serve_with_limits(listener, state, GrpcLimits::default(), std::future::pending()).await
}

/// Serves on `listener` until `shutdown` completes, then finishes the calls
/// in progress.
pub async fn serve_with_shutdown(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    serve_with_limits(listener, state, GrpcLimits::default(), shutdown).await
}

/// Serves on `listener` under `limits` until `shutdown` completes.
pub async fn serve_with_limits(
    listener: TcpListener,
    state: AppState,
    limits: GrpcLimits,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    router_with(&state, &limits)
        .serve_with_incoming_shutdown(limited_incoming(listener, &limits), shutdown)
        .await
}
