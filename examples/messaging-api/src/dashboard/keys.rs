//! Settings → API Keys: the account's keys, Generate New Key, Revoke and
//! Rotate (each after a confirmation page). Every change goes through the
//! same functions as the JSON API (`routes::keys`), with their checks and
//! audit entries.

use std::fmt::Write;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use http::StatusCode;
use serde::Deserialize;
use tollgate_core::{ClientIp, Principal};

use super::auth::DashboardSession;
use super::flash::{self, Flash};
use super::html::{button_form, csrf_field, esc, see_other, Notice, Page, Section};
use super::{error_notice, status_of};
use crate::error::ApiError;
use crate::routes::keys::{create_key, list_views, revoke_key, rotate_key, KeyView};
use crate::state::AppState;

/// What the seed asks users to heed when a key is shown.
pub const SHOWN_ONCE: &str = "Copy the key immediately — it won’t be shown again.";

/// The Generate New Key form.
#[derive(Deserialize)]
pub struct GenerateForm {
    #[serde(default)]
    label: String,
    #[serde(default, rename = "type")]
    kind: String,
}

/// A key type's name on the page.
pub fn kind_name(kind: &str) -> &'static str {
    match kind {
        "production" => "Production",
        "sandbox" => "Sandbox",
        "read_only" => "Read-only",
        _ => "Unknown",
    }
}

/// `GET /dashboard/keys`.
pub async fn page(
    State(state): State<AppState>,
    principal: Principal,
    Extension(session): Extension<DashboardSession>,
) -> Response {
    let flash = flash::take(&state, &session.id_hash).await;
    render(&state, &principal, &session, flash, None, StatusCode::OK).await
}

async fn render(
    state: &AppState,
    principal: &Principal,
    session: &DashboardSession,
    flash: Option<Flash>,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let keys = match list_views(state, principal.account_id()).await {
        Ok(keys) => keys,
        Err(error) => return error_page(Section::Keys, session, &error),
    };
    let limit = state.config().max_keys_per_account;
    let active = keys
        .iter()
        .filter(|key| key.status == "active" || key.status == "retiring")
        .count();
    let mut body = String::new();
    let mut notice = notice;
    match flash {
        Some(Flash::Key {
            id,
            label,
            key,
            replaces,
        }) => {
            body.push_str(&shown_once(&id, &label, &key, replaces.as_ref()));
        }
        Some(Flash::Done { message: text }) => notice = notice.or(Some(Notice::Done(text))),
        Some(Flash::Secret { .. }) | None => {}
    }
    let _ = write!(
        body,
        "<section aria-labelledby=\"keys-title\"><h2 id=\"keys-title\">Your keys</h2>\
         <p id=\"key-limit\">{active} of {limit} keys in use. An account can hold at most {limit} working keys \
         (a key in its grace period after a rotation counts until it stops working).</p>"
    );
    body.push_str(&keys_table(&keys));
    body.push_str("</section>");
    body.push_str(&generate_form(&session.csrf, active >= limit, limit));
    Page::new("API Keys")
        .status(status)
        .signed_in(Some(Section::Keys), &session.csrf)
        .notice(notice)
        .push(&body)
        .into_response()
}

fn shown_once(id: &str, label: &str, key: &str, replaces: Option<&(String, String)>) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<section class=\"once\" aria-labelledby=\"new-key-title\"><h2 id=\"new-key-title\">New key: {}</h2>\
         <p class=\"warning\"><strong>{SHOWN_ONCE}</strong></p>\
         <label for=\"new-key\">API key <span class=\"muted\">({})</span></label>\
         <div class=\"copy-row\"><input id=\"new-key\" type=\"text\" readonly value=\"{}\" \
         autocomplete=\"off\" spellcheck=\"false\">\
         <button type=\"button\" data-copy=\"new-key\">Copy</button></div>\
         <p class=\"muted\" data-copy-status=\"new-key\" aria-live=\"polite\"></p>",
        esc(label),
        esc(id),
        esc(key)
    );
    if let Some((old, until)) = replaces {
        let _ = write!(
            html,
            "<p>It replaces {}, which keeps working until {}. Update your application, verify the new key \
             works, then revoke the old one.</p>",
            esc(old),
            esc(until)
        );
    }
    html.push_str("</section>");
    html
}

fn keys_table(keys: &[KeyView]) -> String {
    let mut html = String::from(
        "<table class=\"keys\"><thead><tr><th scope=\"col\">Label</th><th scope=\"col\">Type</th>\
         <th scope=\"col\">Key</th><th scope=\"col\">Created</th><th scope=\"col\">Last used</th>\
         <th scope=\"col\">Status</th><th scope=\"col\">Rotation due</th><th scope=\"col\">Actions</th></tr></thead><tbody>",
    );
    for key in keys {
        let actions = if key.status == "active" {
            format!(
                "<a class=\"button\" href=\"/dashboard/keys/{id}/rotate\" aria-label=\"Rotate {label}\">Rotate</a> \
                 <a class=\"button danger\" href=\"/dashboard/keys/{id}/revoke\" aria-label=\"Revoke {label}\">Revoke</a>",
                id = esc(&key.id),
                label = esc(&key.label)
            )
        } else if key.status == "retiring" {
            format!(
                "<a class=\"button danger\" href=\"/dashboard/keys/{id}/revoke\" aria-label=\"Revoke {label}\">Revoke</a>",
                id = esc(&key.id),
                label = esc(&key.label)
            )
        } else {
            String::new()
        };
        let status = match (&key.status[..], &key.expires_at, &key.revoked_at) {
            ("retiring", _, Some(until)) => format!("retiring (works until {})", esc(until)),
            (status, _, _) => esc(status),
        };
        let _ = write!(
            html,
            "<tr data-key-id=\"{}\"><td>{}</td><td>{}</td><td><code>{}…</code></td><td>{}</td><td>{}</td>\
             <td class=\"status-{}\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(&key.id),
            esc(&key.label),
            kind_name(&key.kind),
            esc(&key.prefix),
            esc(&key.created_at),
            key.last_used_at.as_deref().map_or_else(|| "never".to_owned(), esc),
            esc(&key.status),
            status,
            if key.rotation_due { "yes" } else { "no" },
            actions
        );
    }
    html.push_str("</tbody></table>");
    html
}

fn generate_form(csrf: &str, at_limit: bool, limit: usize) -> String {
    let limit_note = if at_limit {
        format!(
            "<p class=\"warning\" id=\"limit-note\">This account has {limit} working keys, the most it may hold: \
             revoke a key you no longer use before generating another.</p>"
        )
    } else {
        String::new()
    };
    format!(
        "<section aria-labelledby=\"generate-title\"><h2 id=\"generate-title\">Generate New Key</h2>{limit_note}\
         <form method=\"post\" action=\"/dashboard/keys\" class=\"card\">{}\
         <label for=\"label\">Label</label>\
         <input id=\"label\" name=\"label\" maxlength=\"100\" required placeholder=\"Production Server\">\
         <label for=\"type\">Type</label>\
         <select id=\"type\" name=\"type\"><option value=\"production\">Production</option>\
         <option value=\"sandbox\">Sandbox</option><option value=\"read_only\">Read-only</option></select>\
         <button type=\"submit\">Generate New Key</button></form></section>",
        csrf_field(csrf)
    )
}

/// `POST /dashboard/keys`: Generate New Key.
pub async fn generate(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: Option<ClientIp>,
    Extension(session): Extension<DashboardSession>,
    form: Result<Form<GenerateForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        let notice = Some(Notice::Error(
            "The form could not be read; fill in a label and a type.".into(),
        ));
        return render(&state, &principal, &session, None, notice, StatusCode::BAD_REQUEST).await;
    };
    let label = form.label.trim().to_owned();
    if label.is_empty() {
        let notice = Some(Notice::Error(
            "Give the key a label, such as “Production Server” or “Staging”.".into(),
        ));
        return render(&state, &principal, &session, None, notice, StatusCode::BAD_REQUEST).await;
    }
    match create_key(&state, &principal, client_ip, label, &form.kind).await {
        Ok(created) => {
            let shown = Flash::Key {
                id: created.info.id.clone(),
                label: created.info.label.clone(),
                key: created.secret.expose_secret().to_owned(),
                replaces: None,
            };
            stored_or_lost(&state, &session, &shown).await;
            see_other("/dashboard/keys")
        }
        Err(error) => {
            let notice = Some(key_error(&error, state.config().max_keys_per_account));
            render(&state, &principal, &session, None, notice, status_of(&error)).await
        }
    }
}

// The flash holds the only copy of a new key: if it cannot be stored the
// key still exists, so the page says so (and how to recover: revoke it).
async fn stored_or_lost(state: &AppState, session: &DashboardSession, shown: &Flash) {
    if !flash::put(state, &session.id_hash, shown).await {
        let lost = flash::done("The key was created but could not be shown. Revoke it and generate another.");
        let _ = flash::put(state, &session.id_hash, &lost).await;
    }
}

/// What a key change's refusal means, on the page.
fn key_error(error: &ApiError, limit: usize) -> Notice {
    match error.0.code() {
        "KEY_LIMIT_REACHED" => Notice::Error(format!(
            "This account already has {limit} working keys, the most it may hold (keys still in a rotation's \
             grace period count). Revoke a key you no longer use, then try again."
        )),
        _ => error_notice(error),
    }
}

/// `GET /dashboard/keys/{id}/revoke` and `…/rotate`: the confirmation.
pub async fn confirm(
    State(state): State<AppState>,
    principal: Principal,
    Extension(session): Extension<DashboardSession>,
    Path((key_id, action)): Path<(String, String)>,
) -> Response {
    let Some(action) = KeyAction::parse(&action) else {
        return not_found(&session);
    };
    let keys = match list_views(&state, principal.account_id()).await {
        Ok(keys) => keys,
        Err(error) => return error_page(Section::Keys, &session, &error),
    };
    let Some(key) = keys.iter().find(|key| key.id == key_id) else {
        return not_found(&session);
    };
    let (title, explanation) = match action {
        KeyAction::Revoke => (
            "Revoke key",
            "Requests with this key are refused from now on. This cannot be undone.".to_owned(),
        ),
        KeyAction::Rotate => (
            "Rotate key",
            format!(
                "A new key is generated and shown once; this key keeps working for {} hours so you can switch.",
                state.config().rotation_grace_secs / 3600
            ),
        ),
    };
    let body = format!(
        "<div class=\"card\"><p>{} <strong>{}</strong> ({}, <code>{}…</code>)?</p><p>{}</p>{} \
         <a href=\"/dashboard/keys\">Cancel</a></div>",
        action.verb(),
        esc(&key.label),
        kind_name(&key.kind),
        esc(&key.prefix),
        esc(&explanation),
        button_form(
            &format!("/dashboard/keys/{}/{}", key.id, action.path()),
            &session.csrf,
            action.verb(),
            None
        ),
    );
    Page::new(title)
        .signed_in(Some(Section::Keys), &session.csrf)
        .push(&body)
        .into_response()
}

/// `POST /dashboard/keys/{id}/revoke` and `…/rotate`.
pub async fn act(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: Option<ClientIp>,
    Extension(session): Extension<DashboardSession>,
    Path((key_id, action)): Path<(String, String)>,
) -> Response {
    let Some(action) = KeyAction::parse(&action) else {
        return not_found(&session);
    };
    let result = match action {
        KeyAction::Revoke => revoke_key(&state, &principal, client_ip, &key_id)
            .await
            .map(|()| flash::done(format!("Key {key_id} is revoked."))),
        KeyAction::Rotate => rotate_key(&state, &principal, client_ip, &key_id)
            .await
            .map(|(created, until)| Flash::Key {
                id: created.info.id.clone(),
                label: created.info.label.clone(),
                key: created.secret.expose_secret().to_owned(),
                replaces: Some((key_id.clone(), until)),
            }),
    };
    match result {
        Ok(shown) => {
            stored_or_lost(&state, &session, &shown).await;
            see_other("/dashboard/keys")
        }
        Err(error) => {
            let notice = Some(key_error(&error, state.config().max_keys_per_account));
            render(&state, &principal, &session, None, notice, status_of(&error)).await
        }
    }
}

#[derive(Clone, Copy)]
enum KeyAction {
    Revoke,
    Rotate,
}

impl KeyAction {
    fn parse(text: &str) -> Option<KeyAction> {
        match text {
            "revoke" => Some(KeyAction::Revoke),
            "rotate" => Some(KeyAction::Rotate),
            _ => None,
        }
    }

    fn path(self) -> &'static str {
        match self {
            KeyAction::Revoke => "revoke",
            KeyAction::Rotate => "rotate",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            KeyAction::Revoke => "Revoke",
            KeyAction::Rotate => "Rotate",
        }
    }
}

fn not_found(session: &DashboardSession) -> Response {
    Page::new("Not found")
        .status(StatusCode::NOT_FOUND)
        .signed_in(Some(Section::Keys), &session.csrf)
        .notice(Some(Notice::Error("No such key in this account.".into())))
        .push("<p><a href=\"/dashboard/keys\">Back to API Keys</a></p>")
        .into_response()
}

/// A page that could not be built (a store failed): its error, in the layout.
pub fn error_page(section: Section, session: &DashboardSession, error: &ApiError) -> Response {
    Page::new("Unavailable")
        .status(status_of(error))
        .signed_in(Some(section), &session.csrf)
        .notice(Some(error_notice(error)))
        .into_response()
}
