//! Signing in and out, the session every other page needs, and the two
//! checks on every state-changing request: where it came from
//! ([`check_origin`]) and the session's CSRF token ([`require_session`]).
//!
//! Sign-in exchanges a Production API key for a session: the key is read
//! from the form once, looked up by hash exactly as the bearer layer does,
//! and never written anywhere (not in the session, the page, the cookie or
//! a URL). The cookie holds only the random session id.

use std::net::SocketAddr;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Form;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tollgate_auth::{hash_key, KeyFormat};
use tollgate_core::keys::KeyRecord;
use tollgate_core::{ClientIp, KeyKind, Principal};

use super::html::{see_other, Notice, Page};
use crate::sessions::{csrf_token, id_hash, new_session_id, Session, TOUCH_EVERY};
use crate::state::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "tg_session";

/// The signed-in session of a request, left by [`require_session`] for
/// the handlers (beside the key's [`Principal`]).
#[derive(Clone)]
pub struct DashboardSession {
    /// The stored hash of the session id (where its flash is kept).
    pub id_hash: String,
    /// The session's CSRF token, for the forms of the page.
    pub csrf: String,
}

/// The sign-in form.
#[derive(Deserialize)]
pub struct SignInForm {
    key: String,
}

/// `GET /dashboard`: the API Keys page when signed in, else sign-in.
pub async fn root() -> Response {
    see_other("/dashboard/keys")
}

/// `GET /dashboard/sign-in`, with `?ended=` naming why a session ended.
pub async fn sign_in_page(axum::extract::RawQuery(query): axum::extract::RawQuery) -> Page {
    let ended = match crate::routes::query_param(query.as_deref().unwrap_or(""), "ended") {
        Some("expired") => Some("Your session expired. Sign in again."),
        Some("key") => {
            Some("The key this session was signed in with no longer works. Sign in with another Production key.")
        }
        Some("signed-out") => Some("You are signed out."),
        Some(_) => Some("Sign in to continue."),
        None => None,
    };
    sign_in_form(ended.map(|text| Notice::Done(text.into())))
}

fn sign_in_form(notice: Option<Notice>) -> Page {
    Page::new("Sign in").notice(notice).push(
        "<form method=\"post\" action=\"/dashboard/sign-in\" class=\"card\">\
         <p>Sign in with a Production API key of your account. The key is exchanged for a session \
         and is not kept in this browser.</p>\
         <label for=\"key\">API key</label>\
         <input id=\"key\" name=\"key\" type=\"password\" autocomplete=\"off\" spellcheck=\"false\" required>\
         <button type=\"submit\">Sign in</button></form>",
    )
}

fn refused(status: StatusCode, message: &str) -> Response {
    sign_in_form(Some(Notice::Error(message.to_owned())))
        .status(status)
        .into_response()
}

/// `POST /dashboard/sign-in`: a Production key for a session cookie.
pub async fn sign_in(State(state): State<AppState>, request: Request) -> Response {
    let client_ip = request.extensions().get::<ClientIp>().copied();
    let secure = is_secure(&state, &request);
    // Signing in again replaces the browser's session: the old one ends.
    let previous = session_cookie(&request).map(|id| id_hash(&id));
    let Form(form) = match Form::<SignInForm>::from_request(request, &()).await {
        Ok(form) => form,
        Err(_) => return refused(StatusCode::BAD_REQUEST, "Enter an API key."),
    };
    let key = form.key.trim();
    if key.is_empty() {
        return refused(StatusCode::BAD_REQUEST, "Enter an API key.");
    }
    // The same checksum test the bearer layer makes before any lookup.
    let kind = match KeyFormat::default().check(key) {
        Ok(kind) => kind,
        Err(_) => return refused(StatusCode::UNAUTHORIZED, "This is not a valid API key."),
    };
    if kind != KeyKind::Production {
        return refused(StatusCode::FORBIDDEN, &not_production(kind));
    }
    let now = state.now();
    let record = match state.stores().keys.find_by_hash(&hash_key(key)).await {
        Ok(Some(record)) if record.is_valid_at(now) => record,
        Ok(_) => return refused(StatusCode::UNAUTHORIZED, "This API key is unknown, revoked or expired."),
        Err(error) => return unavailable(error),
    };
    if record.principal.kind() != KeyKind::Production {
        return refused(StatusCode::FORBIDDEN, &not_production(record.principal.kind()));
    }
    if let Some(response) = check_allowlists(&state, &record, client_ip).await {
        return response;
    }
    let config = &state.config().dashboard;
    let ttl = std::time::Duration::from_secs(config.session_ttl_secs);
    let idle = std::time::Duration::from_secs(config.idle_timeout_secs);
    let sessions = state.sessions();
    // Ended sessions are deleted as new ones begin: the table stays the size of its live sessions.
    let since = |age| now.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH);
    if let Err(error) = sessions.prune(now, since(idle), since(ttl)).await {
        tracing::warn!(%error, "ended dashboard sessions not deleted");
    }
    let Ok(session_id) = new_session_id() else {
        return unavailable("no randomness for a session id");
    };
    let session = Session {
        account_id: record.account_id().to_owned(),
        key_id: record.id().to_owned(),
        created_at: now,
        expires_at: now + ttl,
        last_seen: now,
    };
    if let Err(error) = sessions.insert(&id_hash(&session_id), &session).await {
        return unavailable(error);
    }
    if let Some(previous) = previous {
        if let Err(error) = sessions.remove(&previous).await {
            tracing::warn!(%error, "the replaced dashboard session was not deleted");
        }
    }
    tracing::info!(account_id = %session.account_id, key_id = %session.key_id, "dashboard sign-in");
    let mut response = see_other("/dashboard/keys");
    let cookie = format!(
        "{COOKIE}={session_id}; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age={}{}",
        ttl.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

fn not_production(kind: KeyKind) -> String {
    let name = match kind {
        KeyKind::Production => "Production",
        KeyKind::Sandbox => "Sandbox",
        KeyKind::ReadOnly => "Read-only",
    };
    format!("Only a Production key can sign in to the dashboard; this is a {name} key.")
}

// The account's and the key's allowlists apply to signing in as to the API.
async fn check_allowlists(state: &AppState, record: &KeyRecord, client_ip: Option<ClientIp>) -> Option<Response> {
    let lists = match state.allowlists().allowlists(record.account_id(), record.id()).await {
        Ok(lists) => lists,
        Err(error) => return Some(unavailable(error)),
    };
    let allowed = |ip: std::net::IpAddr| {
        lists.account.as_ref().is_none_or(|set| set.contains(ip))
            && lists.key.as_ref().is_none_or(|set| set.contains(ip))
    };
    match client_ip {
        Some(ip) if allowed(ip.ip()) => None,
        _ => Some(refused(
            StatusCode::FORBIDDEN,
            "Requests from this IP address are not allowed for this key (Settings → Security).",
        )),
    }
}

fn unavailable(error: impl std::fmt::Display) -> Response {
    tracing::warn!(%error, "dashboard store failed");
    Page::new("Unavailable")
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .notice(Some(Notice::Error(
            "The service is temporarily unavailable. Please retry.".into(),
        )))
        .into_response()
}

/// `POST /dashboard/sign-out`: ends the session and clears the cookie.
pub async fn sign_out(State(state): State<AppState>, request: Request) -> Response {
    let secure = is_secure(&state, &request);
    if let Some(session) = request.extensions().get::<DashboardSession>() {
        if let Err(error) = state.sessions().remove(&session.id_hash).await {
            return unavailable(error);
        }
    }
    let mut response = see_other("/dashboard/sign-in?ended=signed-out");
    response.headers_mut().insert(header::SET_COOKIE, clear_cookie(secure));
    response
}

fn clear_cookie(secure: bool) -> HeaderValue {
    let cookie = format!(
        "{COOKIE}=; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&cookie).expect("an ASCII cookie")
}

// `Secure` when configured, or when a trusted proxy says the client used HTTPS.
fn is_secure(state: &AppState, request: &Request) -> bool {
    if state.config().dashboard.secure_cookies || request.uri().scheme_str() == Some("https") {
        return true;
    }
    let from_trusted_proxy = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| {
            state
                .config()
                .trusted_proxies
                .iter()
                .any(|network| network.contains(&peer.ip()))
        });
    from_trusted_proxy
        && request
            .headers()
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// The session id in the request's cookies, if any.
pub fn session_cookie(request: &Request) -> Option<String> {
    request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE && !value.is_empty()).then(|| value.to_owned())
        })
}

// Where a request without a live session goes: a page load to sign-in
// (saying why), anything else a 401 page.
fn ended(request: &Request, secure: bool, why: &str) -> Response {
    let mut response = if request.method() == Method::GET || request.method() == Method::HEAD {
        see_other(&format!("/dashboard/sign-in?ended={why}"))
    } else {
        Page::new("Signed out")
            .status(StatusCode::UNAUTHORIZED)
            .notice(Some(Notice::Error("Your session has ended. Sign in again.".into())))
            .push("<p><a href=\"/dashboard/sign-in\">Sign in</a></p>")
            .into_response()
    };
    if session_cookie(request).is_some() {
        response.headers_mut().insert(header::SET_COOKIE, clear_cookie(secure));
    }
    response
}

/// Every signed-in page's gate: a live session whose key still works,
/// then, for a `POST`, the session's CSRF token in the form. Leaves the
/// key's [`Principal`] and the [`DashboardSession`] for what follows.
pub async fn require_session(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let secure = is_secure(&state, &request);
    let Some(session_id) = session_cookie(&request) else {
        return ended(&request, secure, "required");
    };
    let hash = id_hash(&session_id);
    let sessions = state.sessions();
    let session = match sessions.get(&hash).await {
        Ok(Some(session)) => session,
        Ok(None) => return ended(&request, secure, "required"),
        Err(error) => return unavailable(error),
    };
    let now = state.now();
    let idle = std::time::Duration::from_secs(state.config().dashboard.idle_timeout_secs);
    if now >= session.expires_at || now >= session.last_seen + idle {
        if let Err(error) = sessions.remove(&hash).await {
            return unavailable(error);
        }
        return ended(&request, secure, "expired");
    }
    // The key is read on every request, so revoking it (or its expiry, or
    // the end of a rotation's grace period) ends the session at once.
    let record = match state.stores().keys.find_by_id(&session.key_id).await {
        Ok(record) => record,
        Err(error) => return unavailable(error),
    };
    let Some(record) = record.filter(|record| {
        record.is_valid_at(now)
            && record.account_id() == session.account_id
            && record.principal.kind() == KeyKind::Production
    }) else {
        if let Err(error) = sessions.remove(&hash).await {
            return unavailable(error);
        }
        return ended(&request, secure, "key");
    };
    if now
        .duration_since(session.last_seen)
        .is_ok_and(|since| since >= TOUCH_EVERY)
    {
        if let Err(error) = sessions.touch(&hash, now).await {
            tracing::warn!(%error, "dashboard session use not recorded");
        }
    }
    let csrf = csrf_token(&session_id);
    if request.method() == Method::POST {
        request = match check_csrf(&state, request, &csrf).await {
            Ok(request) => request,
            Err(response) => return response,
        };
    }
    let principal: Principal = record.principal.clone();
    request.extensions_mut().insert(principal);
    request
        .extensions_mut()
        .insert(DashboardSession { id_hash: hash, csrf });
    next.run(request).await
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

// Reads the form (bounded), compares its `csrf` with the session's in
// constant time, and hands the request on with the same body.
async fn check_csrf(state: &AppState, request: Request, expected: &str) -> Result<Request, Response> {
    let (parts, body) = request.into_parts();
    let limit = state.config().server.max_body_bytes;
    let bytes: Bytes = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Err(forbidden_page("The form is too large.", StatusCode::PAYLOAD_TOO_LARGE)),
    };
    let probe = Request::from_parts(parts.clone(), Body::from(bytes.clone()));
    let given = match Form::<CsrfField>::from_request(probe, &()).await {
        Ok(Form(field)) => field.csrf,
        Err(_) => String::new(),
    };
    if given.is_empty() || !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        tracing::warn!(path = %parts.uri.path(), "dashboard form without its CSRF token refused");
        return Err(forbidden_page(
            "This form is out of date or did not come from this dashboard. Reload the page and try again.",
            StatusCode::FORBIDDEN,
        ));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

fn forbidden_page(message: &str, status: StatusCode) -> Response {
    Page::new("Refused")
        .status(status)
        .notice(Some(Notice::Error(message.to_owned())))
        .push("<p><a href=\"/dashboard/keys\">Back to the dashboard</a></p>")
        .into_response()
}

/// Refuses (403) a state-changing request another site made the browser
/// send: `Sec-Fetch-Site` must be `same-origin` when present, `Origin`
/// must be this server's own when present, and one of them must be there
/// (every browser sends `Origin` with a form `POST`). The CSRF token is
/// checked too ([`require_session`]); this also covers signing in.
pub async fn check_origin(request: Request, next: Next) -> Response {
    if request.method() == Method::GET || request.method() == Method::HEAD {
        return next.run(request).await;
    }
    let headers = request.headers();
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let fetch_site = text("sec-fetch-site");
    let origin = text("origin");
    let host = text("host");
    let same_site = fetch_site.is_none_or(|site| site == "same-origin");
    let same_origin = origin.is_none_or(|origin| {
        host.is_some_and(|host| origin == format!("http://{host}") || origin == format!("https://{host}"))
    });
    if !same_site || !same_origin || (fetch_site.is_none() && origin.is_none()) {
        tracing::warn!(
            path = %request.uri().path(),
            origin = origin.unwrap_or("-"),
            "cross-site dashboard request refused"
        );
        return forbidden_page(
            "This request came from another site and was refused.",
            StatusCode::FORBIDDEN,
        );
    }
    next.run(request).await
}
