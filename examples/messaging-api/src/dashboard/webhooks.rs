//! Settings → Webhooks: the URL (checked by the same URL guard as
//! `PUT /v1/webhooks`), the signing secret shown once when it is issued,
//! "Rotate secret" (`POST /v1/webhooks/secret/rotate`'s function), and the
//! recent deliveries with their outcome.

use std::fmt::Write;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use http::StatusCode;
use serde::Deserialize;
use tollgate_core::{ClientIp, Principal};

use super::auth::DashboardSession;
use super::flash::{self, Flash};
use super::html::{button_form, csrf_field, esc, see_other, Notice, Page, Section};
use super::keys::error_page;
use super::{error_notice, status_of};
use crate::error::ApiError;
use crate::routes::webhooks::{rotate_webhook_secret, set_webhook};
use crate::state::AppState;
use crate::time::rfc3339;

/// The webhook form.
#[derive(Deserialize)]
pub struct WebhookForm {
    #[serde(default)]
    url: String,
}

/// `GET /dashboard/webhooks`.
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
    let endpoint = match state.webhooks().get(principal.account_id()).await {
        Ok(endpoint) => endpoint,
        Err(error) => return error_page(Section::Webhooks, session, &ApiError::unavailable(error)),
    };
    let deliveries = match state.delivery_history().recent(principal.account_id()).await {
        Ok(deliveries) => deliveries,
        Err(error) => return error_page(Section::Webhooks, session, &ApiError::unavailable(error)),
    };
    let now = state.now();
    let mut body = String::new();
    let mut notice = notice;
    match flash {
        Some(Flash::Secret {
            secret,
            previous_valid_until,
        }) => {
            let _ = write!(
                body,
                "<section class=\"once\" aria-labelledby=\"secret-title\"><h2 id=\"secret-title\">New signing secret</h2>\
                 <p class=\"warning\"><strong>Copy the secret immediately — it won’t be shown again.</strong></p>\
                 <label for=\"new-secret\">Signing secret</label><div class=\"copy-row\">\
                 <input id=\"new-secret\" type=\"text\" readonly value=\"{}\" autocomplete=\"off\" spellcheck=\"false\">\
                 <button type=\"button\" data-copy=\"new-secret\">Copy</button></div>\
                 <p class=\"muted\" data-copy-status=\"new-secret\" aria-live=\"polite\"></p>",
                esc(&secret)
            );
            if let Some(until) = previous_valid_until {
                let _ = write!(
                    body,
                    "<p>Until {}, every delivery's <code>webhook-signature</code> carries a signature by the old \
                     secret and one by this one: switch your receiver to this secret before then.</p>",
                    esc(&until)
                );
            }
            body.push_str("</section>");
        }
        Some(Flash::Done { message: text }) => notice = notice.or(Some(Notice::Done(text))),
        Some(Flash::Key { .. }) | None => {}
    }
    let url = endpoint.as_ref().map(|endpoint| endpoint.url.as_str()).unwrap_or("");
    let _ = write!(
        body,
        "<section aria-labelledby=\"url-title\"><h2 id=\"url-title\">Endpoint</h2>\
         <form method=\"post\" action=\"/dashboard/webhooks\" class=\"card\">{}\
         <label for=\"url\">Webhook URL</label>\
         <input id=\"url\" name=\"url\" type=\"url\" required value=\"{}\" placeholder=\"https://example.com/webhooks\">\
         <p class=\"muted\">An https:// URL of a public host. Saving it issues a new signing secret.</p>\
         <button type=\"submit\">Save webhook</button></form>",
        csrf_field(&session.csrf),
        esc(url)
    );
    if let Some(endpoint) = &endpoint {
        match endpoint.previous.as_ref().filter(|previous| previous.until > now) {
            Some(previous) => {
                let _ = write!(
                    body,
                    "<p>The previous secret also signs deliveries until {}.</p>",
                    esc(&rfc3339(previous.until))
                );
            }
            None => body.push_str("<p>One signing secret in use.</p>"),
        }
        body.push_str(&button_form(
            "/dashboard/webhooks/rotate",
            &session.csrf,
            "Rotate secret",
            None,
        ));
    }
    body.push_str(
        "</section><section aria-labelledby=\"deliveries-title\"><h2 id=\"deliveries-title\">Recent deliveries</h2>",
    );
    if deliveries.is_empty() {
        body.push_str("<p class=\"muted\">No deliveries yet.</p>");
    } else {
        body.push_str(
            "<table><thead><tr><th scope=\"col\">When</th><th scope=\"col\">Event</th><th scope=\"col\">Id</th>\
             <th scope=\"col\">URL</th><th scope=\"col\">Status</th><th scope=\"col\">Attempts</th>\
             <th scope=\"col\">Response</th></tr></thead><tbody>",
        );
        for delivery in &deliveries {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(delivery.at_unix_ms.max(0) as u64);
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"status-{}\">{}</td>\
                 <td>{}</td><td>{}</td></tr>",
                esc(&rfc3339(at)),
                esc(&delivery.event_type),
                esc(&delivery.event_id),
                esc(&delivery.url),
                esc(&delivery.outcome),
                esc(&delivery.outcome),
                delivery.attempts,
                delivery
                    .response_status
                    .map_or_else(|| "no answer".to_owned(), |status| status.to_string())
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("</section>");
    Page::new("Webhooks")
        .status(status)
        .signed_in(Some(Section::Webhooks), &session.csrf)
        .notice(notice)
        .push(&body)
        .into_response()
}

/// `POST /dashboard/webhooks`: set the URL (and a new secret).
pub async fn set(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: Option<ClientIp>,
    Extension(session): Extension<DashboardSession>,
    form: Result<Form<WebhookForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let url = form.map(|Form(form)| form.url.trim().to_owned()).unwrap_or_default();
    if url.is_empty() {
        let notice = Some(Notice::Error("Enter the URL your events should go to.".into()));
        return render(&state, &principal, &session, None, notice, StatusCode::BAD_REQUEST).await;
    }
    match set_webhook(&state, &principal, client_ip, &url).await {
        Ok(set) => {
            let shown = Flash::Secret {
                secret: set.secret,
                previous_valid_until: None,
            };
            put_secret(&state, &session, &shown).await;
            see_other("/dashboard/webhooks")
        }
        Err(error) => {
            let status = status_of(&error);
            render(&state, &principal, &session, None, Some(webhook_error(&error)), status).await
        }
    }
}

/// `POST /dashboard/webhooks/rotate`.
pub async fn rotate(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: Option<ClientIp>,
    Extension(session): Extension<DashboardSession>,
) -> Response {
    match rotate_webhook_secret(&state, &principal, client_ip).await {
        Ok(rotated) => {
            let shown = Flash::Secret {
                secret: rotated.secret,
                previous_valid_until: Some(rotated.previous_secret_valid_until),
            };
            put_secret(&state, &session, &shown).await;
            see_other("/dashboard/webhooks")
        }
        Err(error) => {
            let status = status_of(&error);
            render(&state, &principal, &session, None, Some(webhook_error(&error)), status).await
        }
    }
}

async fn put_secret(state: &AppState, session: &DashboardSession, shown: &Flash) {
    if !flash::put(state, &session.id_hash, shown).await {
        let lost = flash::done("The secret was issued but could not be shown. Rotate it again.");
        let _ = flash::put(state, &session.id_hash, &lost).await;
    }
}

fn webhook_error(error: &ApiError) -> Notice {
    match error.0.code() {
        "INVALID_WEBHOOK_URL" => Notice::Error(format!(
            "This URL is not allowed: {} Use an https:// URL of a public host.",
            error
                .0
                .message()
                .replace("X-Webhook-URL is not a valid webhook URL: ", "")
        )),
        "NOT_FOUND" => Notice::Error("Set a webhook URL first.".into()),
        _ => error_notice(error),
    }
}
