//! The StartMessaging-style API server, built on every tollgate layer.
//!
//! The stack, outermost first: request log → client IP → global allowlist →
//! bearer auth → account/key allowlist → rate limit (counting usage) →
//! `X-Webhook-URL` check → JSON content type → idempotency (POST, PATCH) →
//! handlers.
//! [`router`] builds it; `main.rs` adds configuration, the bootstrap key
//! and graceful shutdown. Copy what you need.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod alerting;
pub mod audit;
pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod db;
pub mod delivery;
pub mod error;
pub mod health;
pub mod history;
pub mod messages;
pub mod middleware;
pub mod openapi;
pub mod outbox;
pub mod routes;
pub mod sealed;
pub mod server;
pub mod sessions;
pub mod state;
pub mod stores;
pub mod time;
pub mod usage;
pub mod webhooks;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use tollgate_auth::{BearerAuthLayer, FailedAuthLimit, KeyFormat, RequireScopeLayer};
use tollgate_core::allowlist::IpSet;
use tollgate_core::KeyKind;
use tollgate_idempotency::IdempotencyLayer;
use tollgate_ip::{ClientIpLayer, IpAllowlistLayer};
use tollgate_ratelimit::RateLimitLayer;
use tower::ServiceBuilder;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use config::Config;
pub use state::AppState;

/// What the `main` of each of the API's servers (this one, and the gRPC
/// example's) does around its `run`: logs to stdout filtered by `RUST_LOG`
/// (default `info`; colours only on a terminal), then on an error prints
/// `name: message` to stderr and exits with status 1.
pub async fn run_main(name: &str, run: impl std::future::Future<Output = Result<(), String>>) {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    if let Err(message) = run.await {
        eprintln!("{name}: {message}");
        std::process::exit(1);
    }
}

/// The API's routes and their OpenAPI document, from one table: each
/// handler is mounted with its `#[utoipa::path]` by `routes!`.
pub fn api_routes() -> OpenApiRouter<AppState> {
    let production_only = RequireScopeLayer::custom(|principal, _| principal.kind() == KeyKind::Production);
    let key_management = OpenApiRouter::new()
        .routes(routes!(routes::keys::create))
        .routes(routes!(routes::keys::revoke))
        .routes(routes!(routes::keys::rotate))
        .routes(routes!(
            routes::keys::set_ip_allowlist,
            routes::keys::clear_ip_allowlist
        ))
        .routes(routes!(routes::security::set, routes::security::clear))
        .routes(routes!(routes::webhooks::set))
        .routes(routes!(routes::webhooks::rotate_secret))
        .route_layer(production_only);
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(routes::messages::send))
        .routes(routes!(routes::messages::get))
        .routes(routes!(routes::keys::list))
        .routes(routes!(routes::security::get))
        .routes(routes!(routes::usage::get))
        .routes(routes!(routes::audit::list))
        .merge(key_management)
}

/// [`api_routes`] split into the router and its finished OpenAPI 3.1
/// document (with [`openapi::StackConventions`]).
pub fn api_and_document() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (api, mut document) = api_routes().split_for_parts();
    utoipa::Modify::modify(&openapi::StackConventions, &mut document);
    (api, document)
}

/// The OpenAPI 3.1 document `GET /openapi.json` serves.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    api_and_document().1
}

/// The whole API: routes, every layer, JSON errors for unknown routes.
pub fn router(state: AppState) -> Router {
    let (api, document) = api_and_document();
    let document = Arc::new(document);
    let api = api
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .with_state(state.clone());

    let config = state.config();
    let plans_state = state.clone();
    let stack = ServiceBuilder::new()
        .layer(axum::middleware::from_fn(middleware::log_request))
        .layer(ClientIpLayer::new().trusted_proxies(config.trusted_proxies.iter().copied()))
        .layer(IpAllowlistLayer::new().global(global_allowlist(config)))
        // Tokens failing the key format's checksum are refused before any
        // store lookup (the bootstrap key is checked against it at start-up);
        // an address past its failed-authentication limit, before anything.
        .layer(
            BearerAuthLayer::from_shared(state.stores().keys.clone())
                .clock(state.clock().clone())
                .require_checksum(KeyFormat::default())
                .limit_failures(FailedAuthLimit::per_minute(config.failed_auth_per_minute))
                .alerts(state.alerts().clone()),
        )
        .layer(axum::middleware::from_fn(middleware::note_key_id))
        .layer(IpAllowlistLayer::new().shared_store(state.stores().allowlists.clone()))
        .layer(
            RateLimitLayer::from_shared(state.stores().rate_limits.clone())
                .plan_fn(move |parts| {
                    let principal = parts.extensions.get::<tollgate_core::Principal>()?;
                    Some(plans_state.plan(principal.account_id()))
                })
                .count_usage(state.usage().recorder().clone())
                .alerts(state.alerts().clone()),
        )
        // Before the body and the idempotency claim: a refused URL is always
        // 400 INVALID_WEBHOOK_URL and leaves the X-Request-ID unused.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::check_webhook_url,
        ))
        .layer(axum::middleware::from_fn(middleware::require_json))
        .layer(
            IdempotencyLayer::from_shared(state.stores().idempotency.clone())
                .max_request_body(config.server.max_body_bytes),
        );
    let request_timeout = std::time::Duration::from_secs(config.server.request_timeout_secs);
    Router::new()
        .route("/health", get(middleware::health))
        .route("/health/ready", get(health::ready))
        .route(
            "/openapi.json",
            get(move || {
                let document = document.clone();
                async move { axum::Json(document.as_ref().clone()) }
            }),
        )
        .with_state(state.clone())
        .merge(dashboard::router(state.clone(), global_allowlist(config)))
        .merge(api.layer(stack))
        .layer(axum::extract::DefaultBodyLimit::max(config.server.max_body_bytes))
        .layer(axum::middleware::from_fn(move |request, next| {
            middleware::deadline(request_timeout, request, next)
        }))
}

// The configured global list; without one, every address (the layer still
// refuses a request whose client IP cannot be resolved).
fn global_allowlist(config: &Config) -> IpSet {
    if config.global_allowlist.is_empty() {
        IpSet::new(["0.0.0.0/0", "::/0"].map(|net| net.parse().expect("valid CIDR")))
    } else {
        IpSet::new(config.global_allowlist.iter().copied())
    }
}
