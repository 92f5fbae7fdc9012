//! Settings → Security: the account's IP allowlist and each key's own,
//! one network added or removed at a time, through the same functions as
//! the JSON API (`routes::security`, `routes::keys`).
//!
//! The API refuses an empty list (it would lock every client out); the
//! dashboard goes one step further and refuses a list that would not
//! contain the address it is being used from, for the account's list and
//! for the signed-in key's own list, so nobody locks themselves out with
//! a click. Removing a list's last network removes the restriction.

use std::fmt::Write;
use std::net::IpAddr;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use http::StatusCode;
use serde::Deserialize;
use tollgate_core::allowlist::IpSet;
use tollgate_core::{ClientIp, Principal};

use super::auth::DashboardSession;
use super::flash::{self, Flash};
use super::html::{button_form, csrf_field, esc, see_other, Notice, Page, Section};
use super::keys::{error_page, kind_name};
use super::{error_notice, status_of};
use crate::error::ApiError;
use crate::routes::keys::{clear_key_allowlist, list_views, set_key_allowlist};
use crate::routes::security::{
    account_allowlist, cidr_strings, clear_account_allowlist, parse_cidrs, set_account_allowlist,
};
use crate::state::AppState;

/// The add and remove forms.
#[derive(Deserialize)]
pub struct CidrForm {
    #[serde(default)]
    cidr: String,
}

/// `GET /dashboard/security`.
pub async fn page(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: Option<ClientIp>,
    Extension(session): Extension<DashboardSession>,
) -> Response {
    let notice = match flash::take(&state, &session.id_hash).await {
        Some(Flash::Done { message: text }) => Some(Notice::Done(text)),
        _ => None,
    };
    render(&state, &principal, client_ip, &session, notice, StatusCode::OK).await
}

async fn render(
    state: &AppState,
    principal: &Principal,
    client_ip: Option<ClientIp>,
    session: &DashboardSession,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let account = match account_allowlist(state, principal.account_id()).await {
        Ok(list) => list,
        Err(error) => return error_page(Section::Security, session, &error),
    };
    let keys = match list_views(state, principal.account_id()).await {
        Ok(keys) => keys,
        Err(error) => return error_page(Section::Security, session, &error),
    };
    let mut body = String::new();
    let here = client_ip.map_or_else(|| "unknown".to_owned(), |ip| ip.ip().to_string());
    let _ = write!(
        body,
        "<p>You are connected from <code id=\"client-ip\">{}</code>. A list that would not include it is refused, \
         so you cannot lock yourself out.</p>\
         <section aria-labelledby=\"account-title\"><h2 id=\"account-title\">Account IP allowlist</h2>",
        esc(&here)
    );
    body.push_str(&list_markup(
        account.as_deref(),
        "/dashboard/security/account",
        &session.csrf,
        "account",
        "No restriction: every address may use this account's keys.",
    ));
    body.push_str("</section><section aria-labelledby=\"keys-title\"><h2 id=\"keys-title\">Per-key allowlists</h2>");
    for key in keys
        .iter()
        .filter(|key| key.status == "active" || key.status == "retiring")
    {
        let list = match state.allowlists().key_allowlist(&key.id).await {
            Ok(list) => list.map(|set| cidr_strings(&set)),
            Err(error) => return error_page(Section::Security, session, &ApiError::unavailable(error)),
        };
        let _ = write!(
            body,
            "<h3>{} <span class=\"muted\">({}, <code>{}…</code>)</span></h3>",
            esc(&key.label),
            kind_name(&key.kind),
            esc(&key.prefix)
        );
        body.push_str(&list_markup(
            list.as_deref(),
            &format!("/dashboard/security/keys/{}", key.id),
            &session.csrf,
            &format!("key-{}", key.id),
            "No restriction of its own (the account's list applies).",
        ));
    }
    body.push_str("</section>");
    Page::new("Security")
        .status(status)
        .signed_in(Some(Section::Security), &session.csrf)
        .notice(notice)
        .push(&body)
        .into_response()
}

// One list: its networks with a Remove button each, and the add form.
fn list_markup(list: Option<&[String]>, base: &str, csrf: &str, id: &str, empty: &str) -> String {
    let mut html = String::new();
    match list {
        Some(networks) => {
            html.push_str("<ul class=\"networks\">");
            for network in networks {
                let _ = write!(
                    html,
                    "<li><code>{}</code> <form method=\"post\" action=\"{}/remove\" class=\"inline\">{}\
                     <input type=\"hidden\" name=\"cidr\" value=\"{}\">\
                     <button type=\"submit\" aria-label=\"Remove {}\">Remove</button></form></li>",
                    esc(network),
                    esc(base),
                    csrf_field(csrf),
                    esc(network),
                    esc(network)
                );
            }
            html.push_str("</ul>");
        }
        None => {
            let _ = write!(html, "<p class=\"muted\">{}</p>", esc(empty));
        }
    }
    let _ = write!(
        html,
        "<form method=\"post\" action=\"{}/add\" class=\"card\">{}\
         <label for=\"cidr-{id}\">Network (CIDR), such as 203.0.113.0/24</label>\
         <input id=\"cidr-{id}\" name=\"cidr\" required spellcheck=\"false\">\
         <button type=\"submit\">Add network</button></form>",
        esc(base),
        csrf_field(csrf),
        id = esc(id)
    );
    if list.is_some() {
        html.push_str(&button_form(
            &format!("{base}/clear"),
            csrf,
            "Remove restriction",
            Some(&format!("Remove the whole list ({id})")),
        ));
    }
    html
}

/// Which list a change is for.
enum Target {
    Account,
    Key(String),
}

/// `POST /dashboard/security/account/{add|remove|clear}`.
pub async fn account(
    state: State<AppState>,
    principal: Principal,
    client_ip: Option<ClientIp>,
    session: Extension<DashboardSession>,
    Path(change): Path<String>,
    form: Result<Form<CidrForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    apply(state, principal, client_ip, session, Target::Account, &change, form).await
}

/// `POST /dashboard/security/keys/{id}/{add|remove|clear}`.
pub async fn key(
    state: State<AppState>,
    principal: Principal,
    client_ip: Option<ClientIp>,
    session: Extension<DashboardSession>,
    Path((key_id, change)): Path<(String, String)>,
    form: Result<Form<CidrForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    apply(state, principal, client_ip, session, Target::Key(key_id), &change, form).await
}

async fn apply(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: Option<ClientIp>,
    Extension(session): Extension<DashboardSession>,
    target: Target,
    change: &str,
    form: Result<Form<CidrForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let refuse = |message: String, status: StatusCode| {
        let state = state.clone();
        let principal = principal.clone();
        let session = session.clone();
        async move {
            render(
                &state,
                &principal,
                client_ip,
                &session,
                Some(Notice::Error(message)),
                status,
            )
            .await
        }
    };
    let cidr = form.map(|Form(form)| form.cidr.trim().to_owned()).unwrap_or_default();
    if change != "clear" && cidr.is_empty() {
        return refuse(
            "Enter a network, such as 203.0.113.0/24 or 198.51.100.7.".into(),
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    let current = match &target {
        Target::Account => account_allowlist(&state, principal.account_id()).await,
        Target::Key(key_id) => match state.keys().get(principal.account_id(), key_id).await {
            Ok(_) => state
                .allowlists()
                .key_allowlist(key_id)
                .await
                .map(|list| list.map(|set| cidr_strings(&set)))
                .map_err(ApiError::unavailable),
            Err(error) => Err(ApiError::from(error)),
        },
    };
    let current = match current {
        Ok(current) => current.unwrap_or_default(),
        Err(error) => return refuse(error_notice_text(&error), status_of(&error)).await,
    };
    let next: Vec<String> = match change {
        "add" => {
            // Normalised by the same parser as the API, so the error names the entry.
            let added = match parse_cidrs(std::slice::from_ref(&cidr)) {
                Ok(set) => cidr_strings(&set),
                Err(error) => return refuse(error_notice_text(&error), status_of(&error)).await,
            };
            current.iter().cloned().chain(added).collect()
        }
        "remove" => {
            let removed = parse_cidrs(std::slice::from_ref(&cidr)).map(|set| cidr_strings(&set));
            let removed = removed.unwrap_or_else(|_| vec![cidr.clone()]);
            current
                .iter()
                .filter(|network| !removed.contains(network))
                .cloned()
                .collect()
        }
        "clear" => Vec::new(),
        _ => return refuse("Unknown change.".into(), StatusCode::NOT_FOUND).await,
    };
    let applies_here = match &target {
        Target::Account => true,
        Target::Key(key_id) => key_id == principal.key_id(),
    };
    if applies_here && !next.is_empty() && !includes(&next, client_ip.map(ClientIp::ip)) {
        let here = client_ip.map_or_else(|| "your address".to_owned(), |ip| ip.ip().to_string());
        return refuse(
            format!("This list would not include {here}, the address you are using, so it would lock you out. Add a network that contains it first."),
            StatusCode::CONFLICT,
        )
        .await;
    }
    let result = match (&target, next.is_empty()) {
        (Target::Account, true) => clear_account_allowlist(&state, &principal, client_ip)
            .await
            .map(|()| None),
        (Target::Account, false) => set_account_allowlist(&state, &principal, client_ip, &next)
            .await
            .map(Some),
        (Target::Key(key_id), true) => clear_key_allowlist(&state, &principal, client_ip, key_id)
            .await
            .map(|()| None),
        (Target::Key(key_id), false) => set_key_allowlist(&state, &principal, client_ip, key_id, &next)
            .await
            .map(Some),
    };
    match result {
        Ok(list) => {
            let done = match list {
                Some(list) => format!("Saved: {} network(s) allowed.", list.len()),
                None => "Removed: no restriction from this list.".to_owned(),
            };
            let _ = flash::put(&state, &session.id_hash, &flash::done(done)).await;
            see_other("/dashboard/security")
        }
        Err(error) => refuse(error_notice_text(&error), status_of(&error)).await,
    }
}

fn includes(networks: &[String], ip: Option<IpAddr>) -> bool {
    let Some(ip) = ip else { return false };
    IpSet::parse(networks.iter().map(String::as_str)).is_ok_and(|set| set.contains(ip))
}

fn error_notice_text(error: &ApiError) -> String {
    match error_notice(error) {
        Notice::Error(text) | Notice::Done(text) => text,
    }
}
