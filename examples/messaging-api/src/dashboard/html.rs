//! Pages: escaping, the layout every page shares, and the headers every
//! dashboard response carries.
//!
//! Every value that did not come from this file's literals goes through
//! [`esc`] before it is placed in markup (text and attribute values
//! alike, always inside double quotes), so a label, URL or error message
//! can never become markup. There is no inline script or style, which
//! lets the Content Security Policy forbid both.

use std::fmt::Write;

use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};

/// The Content Security Policy of every dashboard response: only this
/// origin's script and stylesheet, no inline code, no framing, forms post
/// only here.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Escapes text for HTML text and double-quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The dashboard's sections, in the navigation's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Settings → API Keys.
    Keys,
    /// Settings → Security.
    Security,
    /// Settings → Webhooks.
    Webhooks,
    /// Usage.
    Usage,
}

impl Section {
    const ALL: [Section; 4] = [Section::Keys, Section::Security, Section::Webhooks, Section::Usage];

    fn path(self) -> &'static str {
        match self {
            Section::Keys => "/dashboard/keys",
            Section::Security => "/dashboard/security",
            Section::Webhooks => "/dashboard/webhooks",
            Section::Usage => "/dashboard/usage",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Section::Keys => "API Keys",
            Section::Security => "Security",
            Section::Webhooks => "Webhooks",
            Section::Usage => "Usage",
        }
    }
}

/// A message at the top of a page.
#[derive(Debug, Clone)]
pub enum Notice {
    /// Something went wrong (announced to screen readers at once).
    Error(String),
    /// Something was done.
    Done(String),
}

/// A page being built.
#[derive(Debug)]
pub struct Page {
    status: StatusCode,
    title: String,
    section: Option<Section>,
    csrf: Option<String>,
    notice: Option<Notice>,
    body: String,
}

impl Page {
    /// A page titled `title` (escaped here).
    pub fn new(title: impl Into<String>) -> Page {
        Page {
            status: StatusCode::OK,
            title: title.into(),
            section: None,
            csrf: None,
            notice: None,
            body: String::new(),
        }
    }

    /// Its status (200 unless set).
    pub fn status(mut self, status: StatusCode) -> Page {
        self.status = status;
        self
    }

    /// A signed-in page: the navigation, `section` marked current, and
    /// the Sign out form carrying the session's CSRF token.
    pub fn signed_in(mut self, section: Option<Section>, csrf: &str) -> Page {
        self.section = section;
        self.csrf = Some(csrf.to_owned());
        self
    }

    /// A message above the content.
    pub fn notice(mut self, notice: Option<Notice>) -> Page {
        self.notice = notice;
        self
    }

    /// Appends markup (the caller escaped every value in it).
    pub fn push(mut self, markup: &str) -> Page {
        self.body.push_str(markup);
        self
    }

    /// The finished document.
    pub fn render(&self) -> String {
        let mut html = String::with_capacity(4096 + self.body.len());
        let title = esc(&self.title);
        let _ = write!(
            html,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title} · messaging-api dashboard</title>\
             <link rel=\"icon\" href=\"/dashboard/assets/favicon.svg\" type=\"image/svg+xml\">\
             <link rel=\"stylesheet\" href=\"/dashboard/assets/dashboard.css\">\
             <script src=\"/dashboard/assets/dashboard.js\" defer></script></head><body>\
             <a class=\"skip\" href=\"#main\">Skip to content</a><header><span class=\"brand\">messaging-api</span>"
        );
        if let Some(csrf) = &self.csrf {
            html.push_str("<nav aria-label=\"Dashboard\"><ul>");
            for section in Section::ALL {
                let current = if self.section == Some(section) {
                    " aria-current=\"page\""
                } else {
                    ""
                };
                let _ = write!(
                    html,
                    "<li><a href=\"{}\"{current}>{}</a></li>",
                    section.path(),
                    section.name()
                );
            }
            let _ = write!(
                html,
                "</ul></nav><form method=\"post\" action=\"/dashboard/sign-out\" class=\"sign-out\">{}\
                 <button type=\"submit\">Sign out</button></form>",
                csrf_field(csrf)
            );
        }
        let _ = write!(html, "</header><main id=\"main\"><h1>{title}</h1>");
        match &self.notice {
            Some(Notice::Error(message)) => {
                let _ = write!(html, "<p class=\"error\" role=\"alert\">{}</p>", esc(message));
            }
            Some(Notice::Done(message)) => {
                let _ = write!(html, "<p class=\"done\" role=\"status\">{}</p>", esc(message));
            }
            None => {}
        }
        html.push_str(&self.body);
        html.push_str("</main></body></html>\n");
        html
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.render()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        response
    }
}

/// The hidden field carrying the session's CSRF token in a form.
pub fn csrf_field(csrf: &str) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(csrf))
}

/// A form that posts to `action` with the CSRF token, with one submit
/// button reading `button` (and `label`, when given, as its accessible name).
pub fn button_form(action: &str, csrf: &str, button: &str, label: Option<&str>) -> String {
    let aria = label.map_or_else(String::new, |label| format!(" aria-label=\"{}\"", esc(label)));
    format!(
        "<form method=\"post\" action=\"{}\" class=\"inline\">{}<button type=\"submit\"{aria}>{}</button></form>",
        esc(action),
        csrf_field(csrf),
        esc(button)
    )
}

/// The headers every dashboard response carries: the CSP, no sniffing,
/// no framing, no referrer to other sites, and no caching (pages show account data and,
/// once, secrets).
pub fn add_security_headers(headers: &mut HeaderMap) {
    let fixed: [(HeaderName, &'static str); 5] = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Not `no-referrer`: under it browsers send `Origin: null` with a
        // form POST, which the origin check must refuse.
        (header::REFERRER_POLICY, "same-origin"),
        (HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// A 303 to `location` (a path of the dashboard).
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn a_page_escapes_its_title_and_notice_and_marks_the_current_section() {
        let html = Page::new("<b>")
            .signed_in(Some(Section::Security), "tok\"en")
            .notice(Some(Notice::Error("<i>bad</i>".into())))
            .render();
        assert!(html.contains("<h1>&lt;b&gt;</h1>"));
        assert!(html.contains("&lt;i&gt;bad&lt;/i&gt;"));
        assert!(html.contains("<a href=\"/dashboard/security\" aria-current=\"page\">Security</a>"));
        assert!(html.contains("value=\"tok&quot;en\""));
        assert!(!html.contains("<b>") && !html.contains("<i>"));
    }
}
