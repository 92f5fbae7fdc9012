//! Usage: each key's requests and 429s today and per day for the last 30
//! days (the same report as `GET /v1/usage?days=30`), the alerts this
//! instance raised lately, and the audit log's newest entries.

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use tollgate_core::alerts::Alert;
use tollgate_core::Principal;

use super::auth::DashboardSession;
use super::chart;
use super::html::{esc, Page, Section};
use super::keys::error_page;
use crate::error::ApiError;
use crate::routes::usage::report;
use crate::state::AppState;
use crate::time::rfc3339;

/// Days in the chart.
pub const CHART_DAYS: u32 = 30;
/// Audit log entries shown.
pub const AUDIT_SHOWN: usize = 50;

/// `GET /dashboard/usage`.
pub async fn page(
    State(state): State<AppState>,
    principal: Principal,
    Extension(session): Extension<DashboardSession>,
) -> Response {
    let account_id = principal.account_id();
    let usage = match report(&state, account_id, Some(CHART_DAYS)).await {
        Ok(usage) => usage,
        Err(error) => return error_page(Section::Usage, &session, &error),
    };
    let audit = match state.audit().list(account_id, None, AUDIT_SHOWN).await {
        Ok(entries) => entries,
        Err(error) => return error_page(Section::Usage, &session, &ApiError::unavailable(error)),
    };
    let mut body = String::new();
    let daily = usage.plan.daily_limit.map_or_else(
        || "no daily limit".to_owned(),
        |limit| format!("{limit} requests a day"),
    );
    let _ = write!(
        body,
        "<p>Plan <strong>{}</strong>: {} requests a second (bursts of {}), {}. Today is {} (UTC).</p>\
         <section aria-labelledby=\"today-title\"><h2 id=\"today-title\">Today</h2>\
         <table><thead><tr><th scope=\"col\">Key</th><th scope=\"col\">Requests</th>\
         <th scope=\"col\">Refused (429)</th></tr></thead><tbody>",
        esc(&usage.plan.name),
        usage.plan.requests_per_second,
        usage.plan.burst,
        esc(&daily),
        esc(&usage.date)
    );
    for key in &usage.keys {
        let _ = write!(
            body,
            "<tr><td>{} <span class=\"muted\">({})</span></td><td>{}</td><td>{}</td></tr>",
            esc(&key.label),
            esc(&key.key_id),
            key.requests,
            key.rate_limited
        );
    }
    let _ = write!(
        body,
        "</tbody></table></section><section aria-labelledby=\"days-title\">\
         <h2 id=\"days-title\">Last {CHART_DAYS} days</h2>\
         <p class=\"legend\"><span class=\"swatch requests\"></span> requests \
         <span class=\"swatch limited\"></span> refused (429)</p>"
    );
    for key in &usage.keys {
        let _ = write!(body, "<h3>{}</h3>", esc(&key.label));
        body.push_str(&chart::bars(&key.label, key.days.as_deref().unwrap_or(&[])));
    }
    body.push_str("</section><section aria-labelledby=\"alerts-title\"><h2 id=\"alerts-title\">Recent alerts</h2>");
    let alerts = state.recent_alerts().of(account_id);
    if alerts.is_empty() {
        body.push_str("<p class=\"muted\">No alerts lately.</p>");
    } else {
        body.push_str("<ul class=\"alerts\">");
        for alert in &alerts {
            let _ = write!(body, "<li>{}</li>", esc(&describe(alert)));
        }
        body.push_str("</ul>");
    }
    body.push_str(
        "</section><section aria-labelledby=\"audit-title\"><h2 id=\"audit-title\">Audit log</h2>\
         <table><thead><tr><th scope=\"col\">When</th><th scope=\"col\">Action</th><th scope=\"col\">Target</th>\
         <th scope=\"col\">By key</th><th scope=\"col\">From</th><th scope=\"col\">Details</th></tr></thead><tbody>",
    );
    for entry in &audit {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&rfc3339(UNIX_EPOCH + Duration::from_millis(entry.at_unix_ms))),
            esc(&entry.action),
            esc(&entry.target_id),
            esc(&entry.actor_key_id),
            esc(entry.client_ip.as_deref().unwrap_or("-")),
            esc(&entry.details.to_string())
        );
    }
    body.push_str("</tbody></table></section>");
    Page::new("Usage")
        .signed_in(Some(Section::Usage), &session.csrf)
        .push(&body)
        .into_response()
}

fn at(time: SystemTime) -> String {
    rfc3339(time)
}

/// An alert in a sentence.
pub fn describe(alert: &Alert) -> String {
    match alert {
        Alert::Quota {
            key_id,
            percent,
            limit,
            used,
            at: when,
            ..
        } => format!(
            "{}: key {key_id} used {percent}% of its daily quota ({used} of {limit}).",
            at(*when)
        ),
        Alert::AuthFailures {
            client_ip,
            failures,
            at: when,
            ..
        } => format!("{}: {failures} failed authentications from {client_ip}.", at(*when)),
        Alert::NewNetwork {
            key_id,
            client_ip,
            network,
            at: when,
            ..
        } => format!(
            "{}: key {key_id} used from a new network, {network} ({client_ip}).",
            at(*when)
        ),
        Alert::RotationDue {
            key_id,
            created_at,
            at: when,
            ..
        } => format!(
            "{}: key {key_id}, created {}, is due for rotation.",
            at(*when),
            rfc3339(*created_at)
        ),
    }
}
