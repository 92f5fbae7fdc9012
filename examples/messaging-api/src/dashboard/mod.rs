//! The browser dashboard under `/dashboard`: Settings → API Keys,
//! Security and Webhooks, and Usage, server-rendered HTML with a few lines
//! of script (the Copy button), every asset compiled into the binary.
//!
//! Sign in with a Production API key; it is exchanged for a session
//! ([`crate::sessions`]) held by an `HttpOnly; SameSite=Strict` cookie
//! scoped to `/dashboard`. Every page checks the session and the key it
//! came from, then the same IP allowlists as the API (the allowlist layer
//! over the key's principal); every `POST` is checked for its origin and
//! its session's CSRF token ([`auth`]). Changes go through the very
//! functions the JSON handlers call, so the key limit, the URL guard, the
//! allowlist rules and the audit log are one code path.
//!
//! The stack, outermost first: request log → client IP → global allowlist
//! → security headers → origin check → (signed-in pages) session and CSRF
//! → account/key allowlist → handler.

pub mod auth;
pub mod chart;
pub mod flash;
pub mod html;
pub mod keys;
pub mod security;
pub mod usage;
pub mod webhooks;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, StatusCode};
use http_body_util::Full;
use tollgate_core::allowlist::IpSet;
use tollgate_core::{Rejection, RenderRejection, Renderer};
use tollgate_ip::{ClientIpLayer, IpAllowlistLayer};

use crate::error::ApiError;
use crate::state::AppState;
use html::{Notice, Page};

const CSS: &str = include_str!("assets/dashboard.css");
const JS: &str = include_str!("assets/dashboard.js");
const ICON: &str = include_str!("assets/favicon.svg");

/// The dashboard's routes with their layers, to merge into the API's router.
pub fn router(state: AppState, global: IpSet) -> Router {
    let config = state.config();
    let signed_in = Router::new()
        .route("/dashboard/keys", get(keys::page).post(keys::generate))
        .route("/dashboard/keys/{id}/{action}", get(keys::confirm).post(keys::act))
        .route("/dashboard/security", get(security::page))
        .route("/dashboard/security/account/{change}", post(security::account))
        .route("/dashboard/security/keys/{id}/{change}", post(security::key))
        .route("/dashboard/webhooks", get(webhooks::page).post(webhooks::set))
        .route("/dashboard/webhooks/rotate", post(webhooks::rotate))
        .route("/dashboard/usage", get(usage::page))
        .route("/dashboard/sign-out", post(auth::sign_out))
        // Inner: the allowlists of the principal the session layer leaves.
        .layer(
            IpAllowlistLayer::new()
                .shared_store(state.allowlists().clone())
                .renderer(Renderer::new(HtmlRefusal)),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_session,
        ));
    Router::new()
        .route("/dashboard", get(auth::root))
        .route("/dashboard/", get(auth::root))
        .route("/dashboard/sign-in", get(auth::sign_in_page).post(auth::sign_in))
        .route(
            "/dashboard/assets/dashboard.css",
            get(|| asset(CSS, "text/css; charset=utf-8")),
        )
        .route(
            "/dashboard/assets/dashboard.js",
            get(|| asset(JS, "text/javascript; charset=utf-8")),
        )
        .route("/dashboard/assets/favicon.svg", get(|| asset(ICON, "image/svg+xml")))
        .merge(signed_in)
        .with_state(state.clone())
        .layer(axum::middleware::from_fn(auth::check_origin))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(
            IpAllowlistLayer::new()
                .global(global)
                .renderer(Renderer::new(HtmlRefusal)),
        )
        .layer(ClientIpLayer::new().trusted_proxies(config.trusted_proxies.iter().copied()))
        .layer(axum::middleware::from_fn(crate::middleware::log_request))
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    response
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    html::add_security_headers(response.headers_mut());
    response
}

// The allowlist layers' refusals as a page (their status, their message).
struct HtmlRefusal;

impl RenderRejection for HtmlRefusal {
    fn render(&self, rejection: &Rejection, _: &HeaderMap) -> http::Response<Full<Bytes>> {
        let html = Page::new("Refused")
            .status(rejection.status())
            .notice(Some(Notice::Error(rejection.message().to_owned())))
            .render();
        let mut response = http::Response::new(Full::new(Bytes::from(html)));
        *response.status_mut() = rejection.status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        response
    }
}

/// An API error's message, for the page.
pub fn error_notice(error: &ApiError) -> Notice {
    Notice::Error(error.0.message().to_owned())
}

/// The status a page answers an API error with: the API's own (a 4xx for
/// bad input, 503 for a store that failed), never a 500 for input.
pub fn status_of(error: &ApiError) -> StatusCode {
    error.0.status()
}
