//! messaging-api's dashboard over HTTP: sign-in with a Production key,
//! sessions (expiry on the manual clock, the end of a revoked key's
//! sessions, sign-out), CSRF tokens and origin checks, keys shown exactly
//! once, and sessions in SQLite and PostgreSQL.

mod support;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use messaging_api::stores::{Deployment, Stores};
use messaging_api::{bootstrap::bootstrap, router, AppState, Config};
use serde_json::json;
use support::{TestResponse, TestServer};
use tollgate_core::{Clock, ManualClock, SharedClock};

struct Dashboard {
    server: TestServer,
    key: String,
    clock: ManualClock,
    state: AppState,
}

/// A signed-in browser: its cookie and the CSRF token its pages carry.
struct Browser {
    cookie: String,
    csrf: String,
}

impl Dashboard {
    async fn start(config: Config) -> Dashboard {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_031_199));
        let stores = Stores::memory(SharedClock::from(clock.clone()));
        Dashboard::start_on(config, stores, clock).await
    }

    async fn start_on(config: Config, stores: Stores, clock: ManualClock) -> Dashboard {
        let state = AppState::new(config, stores, SharedClock::from(clock.clone()));
        let key = bootstrap(&state, None).await.expect("bootstrap").expect("a new key");
        let server = TestServer::start(router(state.clone())).await;
        Dashboard {
            server,
            key,
            clock,
            state,
        }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> TestResponse {
        let mut request = self.server.request("GET", path);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        self.server.send_empty(request).await
    }

    // A form POST with `headers` (an `Origin` is not added: tests choose).
    async fn post(&self, path: &str, cookie: Option<&str>, form: &str, headers: &[(&str, &str)]) -> TestResponse {
        let mut request = self
            .server
            .request("POST", path)
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.server
            .send(request.body(Full::new(Bytes::from(form.to_owned()))).unwrap())
            .await
    }

    // A POST as this dashboard's own pages send it.
    async fn submit(&self, path: &str, browser: &Browser, form: &str) -> TestResponse {
        let origin = self.origin();
        let form = if form.is_empty() {
            format!("csrf={}", browser.csrf)
        } else {
            format!("csrf={}&{form}", browser.csrf)
        };
        let headers = [("origin", origin.as_str()), ("sec-fetch-site", "same-origin")];
        self.post(path, Some(&browser.cookie), &form, &headers).await
    }

    async fn sign_in_response(&self, key: &str) -> TestResponse {
        let origin = self.origin();
        let form = format!("key={}", encode(key));
        self.post("/dashboard/sign-in", None, &form, &[("origin", origin.as_str())])
            .await
    }

    async fn sign_in(&self, key: &str) -> Browser {
        let response = self.sign_in_response(key).await;
        assert_eq!(response.status, 303, "{}", response.text());
        assert_eq!(response.header("location"), "/dashboard/keys");
        let set_cookie = response.header("set-cookie").to_owned();
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        let page = self.get("/dashboard/keys", Some(&cookie)).await;
        assert_eq!(page.status, 200, "{}", page.text());
        Browser {
            csrf: csrf_of(page.text()),
            cookie,
        }
    }

    async fn api(&self, method: &str, path: &str, key: &str, body: Option<&str>) -> TestResponse {
        self.server.call(method, path, Some(key), body, &[]).await
    }

    async fn key_count(&self) -> usize {
        let keys = self.api("GET", "/v1/keys", &self.key, None).await;
        keys.json()["data"].as_array().unwrap().len()
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a page with a CSRF field") + marker.len();
    html[start..start + 64].to_owned()
}

// The value of the one-time key field, if the page shows one.
fn shown_key(html: &str) -> Option<String> {
    let marker = "id=\"new-key\" type=\"text\" readonly value=\"";
    let start = html.find(marker)? + marker.len();
    Some(html[start..].split('"').next().unwrap().to_owned())
}

const PAGES: [&str; 4] = [
    "/dashboard/keys",
    "/dashboard/security",
    "/dashboard/webhooks",
    "/dashboard/usage",
];

#[tokio::test]
async fn sign_in_takes_only_a_working_production_key_and_sets_a_strict_cookie() {
    let dashboard = Dashboard::start(Config::default()).await;
    let page = dashboard.get("/dashboard/sign-in", None).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<button type=\"submit\">Sign in</button>"));
    assert_eq!(
        page.header("content-security-policy"),
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    assert_eq!(page.header("x-frame-options"), "DENY");
    assert_eq!(page.header("cache-control"), "no-store");

    let sandbox = dashboard
        .api(
            "POST",
            "/v1/keys",
            &dashboard.key,
            Some(r#"{"label":"ci","type":"sandbox"}"#),
        )
        .await
        .json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = dashboard.sign_in_response(&sandbox).await;
    assert_eq!(refused.status, 403);
    assert!(refused
        .text()
        .contains("Only a Production key can sign in to the dashboard; this is a Sandbox key."));
    assert!(!refused.text().contains(&sandbox), "the key is not echoed");
    assert_eq!(refused.header("set-cookie"), "");

    let garbage = dashboard.sign_in_response("not a key").await;
    assert_eq!(garbage.status, 401);
    assert!(garbage.text().contains("This is not a valid API key."));
    let empty = dashboard
        .post("/dashboard/sign-in", None, "", &[("origin", &dashboard.origin())])
        .await;
    assert_eq!(empty.status, 400);
    assert!(empty.text().contains("Enter an API key."));

    let signed_in = dashboard.sign_in_response(&dashboard.key).await;
    assert_eq!(signed_in.status, 303);
    let cookie = signed_in.header("set-cookie");
    let first = cookie.split(';').next().unwrap().to_owned();
    assert_eq!(dashboard.get("/dashboard/keys", Some(&first)).await.status, 200);
    let (pair, attributes) = cookie.split_once("; ").unwrap();
    assert_eq!(pair.len(), "tg_session=".len() + 43, "{cookie}");
    assert_eq!(attributes, "Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=43200");
    // Signing in again from the same browser ends the session it had.
    let origin = dashboard.origin();
    let again = dashboard
        .post(
            "/dashboard/sign-in",
            Some(&first),
            &format!("key={}", dashboard.key),
            &[("origin", origin.as_str())],
        )
        .await;
    assert_eq!(again.status, 303);
    assert_ne!(again.header("set-cookie").split(';').next().unwrap(), first);
    assert_eq!(dashboard.get("/dashboard/keys", Some(&first)).await.status, 303);

    // Configured behind TLS: Secure as well.
    let config = Config {
        dashboard: messaging_api::config::DashboardConfig {
            secure_cookies: true,
            ..Default::default()
        },
        ..Config::default()
    };
    let tls = Dashboard::start(config).await;
    let signed_in = tls.sign_in_response(&tls.key).await;
    assert!(signed_in.header("set-cookie").ends_with("; Max-Age=43200; Secure"));
}

#[tokio::test]
async fn a_session_ends_at_its_expiry_and_after_an_idle_hour() {
    let dashboard = Dashboard::start(Config::default()).await;
    let browser = dashboard.sign_in(&dashboard.key).await;
    // Busy all day: a request every 50 minutes keeps it from idling...
    for _ in 0..14 {
        dashboard.clock.advance(Duration::from_secs(50 * 60));
        let page = dashboard.get("/dashboard/keys", Some(&browser.cookie)).await;
        assert_eq!(page.status, 200);
    }
    // ...until 12 hours after sign-in (14 × 50 min = 11 h 40 min).
    dashboard.clock.advance(Duration::from_secs(20 * 60));
    let expired = dashboard.get("/dashboard/keys", Some(&browser.cookie)).await;
    assert_eq!(expired.status, 303);
    assert_eq!(expired.header("location"), "/dashboard/sign-in?ended=expired");
    assert!(expired.header("set-cookie").contains("Max-Age=0"));
    let after = dashboard.get("/dashboard/keys", Some(&browser.cookie)).await;
    assert_eq!(
        after.header("location"),
        "/dashboard/sign-in?ended=required",
        "deleted, not just refused"
    );
    let notice = dashboard.get("/dashboard/sign-in?ended=expired", None).await;
    assert!(notice.text().contains("Your session expired. Sign in again."));

    let idle = dashboard.sign_in(&dashboard.key).await;
    dashboard.clock.advance(Duration::from_secs(3599));
    assert_eq!(dashboard.get("/dashboard/usage", Some(&idle.cookie)).await.status, 200);
    dashboard.clock.advance(Duration::from_secs(3600));
    let ended = dashboard.get("/dashboard/usage", Some(&idle.cookie)).await;
    assert_eq!(ended.header("location"), "/dashboard/sign-in?ended=expired");
}

#[tokio::test]
async fn revoking_the_key_ends_its_sessions_and_sign_out_ends_one() {
    let dashboard = Dashboard::start(Config::default()).await;
    let created = dashboard
        .api(
            "POST",
            "/v1/keys",
            &dashboard.key,
            Some(r#"{"label":"ops","type":"production"}"#),
        )
        .await
        .json();
    let (ops_id, ops_key) = (created["id"].as_str().unwrap(), created["key"].as_str().unwrap());
    let ops = dashboard.sign_in(ops_key).await;
    let admin = dashboard.sign_in(&dashboard.key).await;
    assert_ne!(ops.cookie, admin.cookie);
    assert_ne!(ops.csrf, admin.csrf);

    let revoked = dashboard
        .api("DELETE", &format!("/v1/keys/{ops_id}"), &dashboard.key, None)
        .await;
    assert_eq!(revoked.status, 204);
    let page = dashboard.get("/dashboard/keys", Some(&ops.cookie)).await;
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), "/dashboard/sign-in?ended=key");
    let post = dashboard.submit("/dashboard/keys", &ops, "label=x&type=sandbox").await;
    assert_eq!(post.status, 401);
    assert!(post.text().contains("Your session has ended. Sign in again."));
    assert_eq!(dashboard.get("/dashboard/keys", Some(&admin.cookie)).await.status, 200);

    let signed_out = dashboard.submit("/dashboard/sign-out", &admin, "").await;
    assert_eq!(signed_out.status, 303);
    assert_eq!(signed_out.header("location"), "/dashboard/sign-in?ended=signed-out");
    assert!(signed_out
        .header("set-cookie")
        .starts_with("tg_session=; Path=/dashboard"));
    for path in PAGES {
        let page = dashboard.get(path, Some(&admin.cookie)).await;
        assert_eq!(page.status, 303, "{path}");
        assert_eq!(page.header("location"), "/dashboard/sign-in?ended=required");
    }
    let post = dashboard
        .submit("/dashboard/keys", &admin, "label=x&type=sandbox")
        .await;
    assert_eq!(post.status, 401);
    assert_eq!(dashboard.key_count().await, 2, "nothing was created");
}

#[tokio::test]
async fn every_post_needs_the_sessions_csrf_token() {
    let dashboard = Dashboard::start(Config::default()).await;
    let browser = dashboard.sign_in(&dashboard.key).await;
    let other = dashboard.sign_in(&dashboard.key).await;
    let origin = dashboard.origin();
    let same_origin = [("origin", origin.as_str()), ("sec-fetch-site", "same-origin")];
    let wrong = "0".repeat(64);
    let refused_forms = [
        "label=a&type=sandbox".to_owned(),
        "csrf=&label=a&type=sandbox".to_owned(),
        format!("csrf={wrong}&label=a&type=sandbox"),
        format!("csrf={}&label=a&type=sandbox", &browser.csrf[..63]),
        format!("csrf={}&label=a&type=sandbox", other.csrf),
    ];
    for form in &refused_forms {
        let response = dashboard
            .post("/dashboard/keys", Some(&browser.cookie), form, &same_origin)
            .await;
        assert_eq!(response.status, 403, "{form}");
        assert!(response
            .text()
            .contains("This form is out of date or did not come from this dashboard."));
    }
    for path in [
        "/dashboard/security/account/add",
        "/dashboard/webhooks/rotate",
        "/dashboard/sign-out",
    ] {
        let response = dashboard
            .post(path, Some(&browser.cookie), "cidr=127.0.0.1", &same_origin)
            .await;
        assert_eq!(response.status, 403, "{path}");
    }
    assert_eq!(dashboard.key_count().await, 1);
    assert_eq!(
        dashboard.get("/dashboard/keys", Some(&browser.cookie)).await.status,
        200,
        "still signed in"
    );

    let accepted = dashboard
        .submit("/dashboard/keys", &browser, "label=a&type=sandbox")
        .await;
    assert_eq!(accepted.status, 303);
    assert_eq!(dashboard.key_count().await, 2);
}

#[tokio::test]
async fn a_forged_cross_site_post_is_refused() {
    let dashboard = Dashboard::start(Config::default()).await;
    let browser = dashboard.sign_in(&dashboard.key).await;
    let form = format!("csrf={}&label=forged&type=production", browser.csrf);
    let origin = dashboard.origin();
    let forgeries: [&[(&str, &str)]; 5] = [
        &[("origin", "https://evil.example"), ("sec-fetch-site", "cross-site")],
        &[("origin", "https://evil.example")],
        &[("sec-fetch-site", "same-site")],
        &[("origin", origin.as_str()), ("sec-fetch-site", "cross-site")],
        &[],
    ];
    for headers in forgeries {
        let response = dashboard
            .post("/dashboard/keys", Some(&browser.cookie), &form, headers)
            .await;
        assert_eq!(response.status, 403, "{headers:?}");
        assert!(response
            .text()
            .contains("This request came from another site and was refused."));
    }
    // Signing in from another site is refused too (no login CSRF).
    let key = format!("key={}", dashboard.key);
    let response = dashboard
        .post("/dashboard/sign-in", None, &key, &[("origin", "https://evil.example")])
        .await;
    assert_eq!((response.status.as_u16(), response.header("set-cookie")), (403, ""));
    assert_eq!(dashboard.key_count().await, 1, "no forgery created a key");
}

#[tokio::test]
async fn a_new_key_is_shown_once_and_never_again_in_any_page() {
    let dashboard = Dashboard::start(Config::default()).await;
    let browser = dashboard.sign_in(&dashboard.key).await;
    let created = dashboard
        .submit("/dashboard/keys", &browser, "label=Staging+%3Cb%3E&type=read_only")
        .await;
    assert_eq!(created.status, 303);
    assert_eq!(created.header("location"), "/dashboard/keys");
    assert!(created.body.is_empty());

    let page = dashboard.get("/dashboard/keys", Some(&browser.cookie)).await;
    let key = shown_key(page.text()).expect("the new key, once");
    assert!(key.starts_with("tg_ro_") || key.starts_with("tg_"), "{key}");
    assert_eq!(page.text().matches(&key).count(), 1);
    assert!(page
        .text()
        .contains("Copy the key immediately — it won’t be shown again."));
    assert!(page
        .text()
        .contains("<button type=\"button\" data-copy=\"new-key\">Copy</button>"));
    assert!(
        page.text().contains("New key: Staging &lt;b&gt;"),
        "the label is escaped"
    );
    assert!(!page.text().contains("<b>"));
    // It works against the API (a read-only key reads).
    assert_eq!(dashboard.api("GET", "/v1/keys", &key, None).await.status, 200);

    // Rotate it from the page: the successor is shown once as well.
    let id = dashboard.api("GET", "/v1/keys", &dashboard.key, None).await.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|view| view["label"] == "Staging <b>")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let confirm = dashboard
        .get(&format!("/dashboard/keys/{id}/rotate"), Some(&browser.cookie))
        .await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.text().contains("<button type=\"submit\">Rotate</button>"));
    let rotated = dashboard
        .submit(&format!("/dashboard/keys/{id}/rotate"), &browser, "")
        .await;
    assert_eq!(rotated.status, 303);
    let page = dashboard.get("/dashboard/keys", Some(&browser.cookie)).await;
    let successor = shown_key(page.text()).expect("the successor, once");
    assert!(page
        .text()
        .contains(&format!("It replaces {id}, which keeps working until")));

    for path in PAGES
        .iter()
        .map(|path| path.to_string())
        .chain([format!("/dashboard/keys/{id}/revoke"), "/dashboard/sign-in".into()])
    {
        let page = dashboard.get(&path, Some(&browser.cookie)).await;
        assert_eq!(page.status, 200, "{path}");
        for secret in [&key, &successor, &dashboard.key] {
            assert!(!page.text().contains(secret.as_str()), "{path} shows a key");
        }
        assert!(shown_key(page.text()).is_none(), "{path}");
    }

    // Revoke from the page: the API refuses the key at once.
    let revoked = dashboard
        .submit(&format!("/dashboard/keys/{id}/revoke"), &browser, "")
        .await;
    assert_eq!(revoked.status, 303);
    let page = dashboard.get("/dashboard/keys", Some(&browser.cookie)).await;
    assert!(page.text().contains(&format!("Key {id} is revoked.")));
    assert_eq!(dashboard.api("GET", "/v1/keys", &key, None).await.status, 401);
    let again = dashboard
        .submit(&format!("/dashboard/keys/{id}/revoke"), &browser, "")
        .await;
    assert_eq!(again.status, 409);
    assert!(again.text().contains("This API key is already revoked."));
}

#[tokio::test]
async fn bad_form_input_is_a_clear_message_and_the_key_limit_is_explained() {
    let dashboard = Dashboard::start(Config::default()).await;
    let browser = dashboard.sign_in(&dashboard.key).await;
    let cases = [
        ("/dashboard/keys", "label=&type=sandbox", 400, "Give the key a label"),
        ("/dashboard/keys", "label=a&type=admin", 400, "&quot;type&quot; must be"),
        (
            "/dashboard/keys",
            &format!("label={}&type=sandbox", "x".repeat(101)),
            400,
            "label",
        ),
        (
            "/dashboard/security/account/add",
            "cidr=300.1.1.1/8",
            400,
            "invalid IP network",
        ),
        ("/dashboard/security/account/add", "cidr=", 400, "Enter a network"),
        (
            "/dashboard/security/account/add",
            "cidr=10.0.0.0/8",
            409,
            "would lock you out",
        ),
        (
            "/dashboard/security/keys/key_nope/add",
            "cidr=127.0.0.1",
            404,
            "not found",
        ),
        ("/dashboard/webhooks", "url=", 400, "Enter the URL"),
        (
            "/dashboard/webhooks",
            "url=http%3A%2F%2F10.0.0.1%2Fhook",
            400,
            "This URL is not allowed",
        ),
        ("/dashboard/webhooks/rotate", "", 404, "Set a webhook URL first."),
        ("/dashboard/keys/key_nope/revoke", "", 404, "not found"),
    ];
    for (path, form, status, message) in cases {
        let response = dashboard.submit(path, &browser, form).await;
        assert_eq!(response.status, status, "{path} {form}: {}", response.text());
        assert!(response.text().contains("role=\"alert\""), "{path} {form}");
        assert!(response.text().contains(message), "{path} {form}: {}", response.text());
    }

    for n in 1..10 {
        let created = dashboard
            .submit("/dashboard/keys", &browser, &format!("label=k{n}&type=sandbox"))
            .await;
        assert_eq!(created.status, 303);
    }
    let page = dashboard.get("/dashboard/keys", Some(&browser.cookie)).await;
    assert!(page.text().contains("10 of 10 keys in use."));
    assert!(page
        .text()
        .contains("revoke a key you no longer use before generating another"));
    let refused = dashboard
        .submit("/dashboard/keys", &browser, "label=eleventh&type=sandbox")
        .await;
    assert_eq!(refused.status, 409);
    assert!(refused.text().contains(
        "This account already has 10 working keys, the most it may hold (keys still in a rotation&#39;s grace period count)."
    ));
    assert_eq!(dashboard.key_count().await, 10);
}

#[tokio::test]
async fn allowlists_change_through_the_page_and_apply_to_the_api_and_the_dashboard() {
    let dashboard = Dashboard::start(Config::default()).await;
    let browser = dashboard.sign_in(&dashboard.key).await;
    let added = dashboard
        .submit("/dashboard/security/account/add", &browser, "cidr=127.0.0.0%2F8")
        .await;
    assert_eq!(added.status, 303);
    let added = dashboard
        .submit("/dashboard/security/account/add", &browser, "cidr=203.0.113.9")
        .await;
    assert_eq!(added.status, 303);
    let list = dashboard
        .api("GET", "/v1/security/ip-allowlist", &dashboard.key, None)
        .await;
    assert_eq!(list.json(), json!({"cidrs": ["127.0.0.0/8", "203.0.113.9/32"]}));
    let page = dashboard.get("/dashboard/security", Some(&browser.cookie)).await;
    assert!(page.text().contains("Saved: 2 network(s) allowed."));
    assert!(page
        .text()
        .contains("<button type=\"submit\" aria-label=\"Remove 203.0.113.9/32\">Remove</button>"));

    // Removing 127.0.0.0/8 would leave a list without this client: refused.
    let removed = dashboard
        .submit("/dashboard/security/account/remove", &browser, "cidr=127.0.0.0%2F8")
        .await;
    assert_eq!(removed.status, 409);
    // A key's own list, through the same function as the API.
    let key_id = dashboard.api("GET", "/v1/keys", &dashboard.key, None).await.json()["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let set = dashboard
        .submit(
            &format!("/dashboard/security/keys/{key_id}/add"),
            &browser,
            "cidr=127.0.0.1",
        )
        .await;
    assert_eq!(set.status, 303);
    assert_eq!(
        dashboard
            .state
            .allowlists()
            .key_allowlist(&key_id)
            .await
            .unwrap()
            .unwrap()
            .len(),
        1
    );
    let cleared = dashboard
        .submit("/dashboard/security/account/clear", &browser, "")
        .await;
    assert_eq!(cleared.status, 303);
    let list = dashboard
        .api("GET", "/v1/security/ip-allowlist", &dashboard.key, None)
        .await;
    assert_eq!(list.json(), json!({"cidrs": null}));

    // Set through the API to a list without this client: the dashboard refuses too.
    let far = dashboard
        .api(
            "PUT",
            "/v1/security/ip-allowlist",
            &dashboard.key,
            Some(r#"{"cidrs":["127.0.0.0/8"]}"#),
        )
        .await;
    assert_eq!(far.status, 200);
    dashboard
        .state
        .allowlists()
        .set_account_allowlist(
            "acct_demo",
            tollgate_core::allowlist::IpSet::parse(["198.51.100.0/24"]).unwrap(),
        )
        .await
        .unwrap();
    let refused = dashboard.get("/dashboard/keys", Some(&browser.cookie)).await;
    assert_eq!(refused.status, 403);
    assert!(refused
        .text()
        .contains("Requests from this IP address are not allowed."));
    assert_eq!(refused.header("content-type"), "text/html; charset=utf-8");
    let sign_in = dashboard.sign_in_response(&dashboard.key).await;
    assert_eq!(sign_in.status, 403);
}

#[tokio::test]
async fn the_usage_page_draws_thirty_days_per_key_and_lists_the_audit_log() {
    let dashboard = Dashboard::start(Config::default()).await;
    for _ in 0..3 {
        assert_eq!(dashboard.api("GET", "/v1/keys", &dashboard.key, None).await.status, 200);
    }
    let browser = dashboard.sign_in(&dashboard.key).await;
    assert_eq!(
        dashboard
            .submit("/dashboard/keys", &browser, "label=ci&type=sandbox")
            .await
            .status,
        303
    );
    let page = dashboard.get("/dashboard/usage", Some(&browser.cookie)).await;
    assert_eq!(page.status, 200);
    let text = page.text();
    assert_eq!(
        text.matches("<svg class=\"chart\" role=\"img\"").count(),
        2,
        "one chart per key"
    );
    assert!(text.contains("aria-label=\"Bootstrap key: 3 requests and 0 refused with 429 over the last 30 days\""));
    assert_eq!(text.matches("refused (429)</title>").count(), 60);
    assert!(text.contains("<td>key.created</td>"));
    assert!(text.contains("Recent alerts"));
}

// The rotation endpoint, and deliveries signed by both secrets during the
// grace period, each verified by a receiver holding only one of them.
#[tokio::test]
async fn webhook_secret_rotation_signs_with_both_secrets_during_the_grace_period() {
    let config = Config {
        allow_private_webhook_urls: true,
        ..Config::default()
    };
    // Real time: the receivers check Standard Webhooks timestamps against their clocks.
    let clock = ManualClock::new(SystemTime::now());
    let stores = Stores::memory(SharedClock::from(clock.clone()));
    let dashboard = Dashboard::start_on(config, stores, clock).await;
    let none = dashboard
        .api("POST", "/v1/webhooks/secret/rotate", &dashboard.key, None)
        .await;
    assert_eq!(none.status, 404);
    assert_eq!(none.json()["error"]["code"], "NOT_FOUND");

    let (capture, mut captured) = capture_server().await;
    let url = format!("http://{}/hook", capture.addr);
    let set = dashboard
        .api(
            "PUT",
            "/v1/webhooks",
            &dashboard.key,
            Some(&json!({ "url": url }).to_string()),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text());
    let old = set.json()["secret"].as_str().unwrap().to_owned();

    let sandbox = dashboard
        .api(
            "POST",
            "/v1/keys",
            &dashboard.key,
            Some(r#"{"label":"s","type":"sandbox"}"#),
        )
        .await
        .json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let forbidden = dashboard
        .api("POST", "/v1/webhooks/secret/rotate", &sandbox, None)
        .await;
    assert_eq!(forbidden.status, 403);

    let rotated = dashboard
        .api("POST", "/v1/webhooks/secret/rotate", &dashboard.key, None)
        .await;
    assert_eq!(rotated.status, 201, "{}", rotated.text());
    let body = rotated.json();
    let new = body["secret"].as_str().unwrap().to_owned();
    assert!(new.starts_with("whsec_") && new != old);
    assert_eq!(body["url"], url.as_str());
    let until = messaging_api::time::rfc3339(dashboard.clock.now() + Duration::from_secs(86_400));
    assert_eq!(body["previous_secret_valid_until"], until.as_str());
    let audit = dashboard.api("GET", "/v1/audit-log", &dashboard.key, None).await.json();
    assert_eq!(audit["entries"][0]["action"], "webhook.secret_rotated");
    assert!(!audit.to_string().contains(&new) && !audit.to_string().contains(&old));

    // Two receivers, one per secret (each message to one of them through X-Webhook-URL).
    let secret = |text: &str| tollgate_webhook::WebhookSecret::new(text.to_owned());
    let (old_receiver, mut old_events) = receiver(&secret(&old)).await;
    let (new_receiver, mut new_events) = receiver(&secret(&new)).await;
    for (receiver, events) in [(&old_receiver, &mut old_events), (&new_receiver, &mut new_events)] {
        let url = format!("http://{}/webhooks", receiver.addr);
        let sent = dashboard
            .server
            .call(
                "POST",
                "/v1/messages",
                Some(&dashboard.key),
                Some(SEND),
                &[("x-webhook-url", &url)],
            )
            .await;
        assert_eq!(sent.status, 201, "{}", sent.text());
        for status in ["queued", "sent"] {
            let event = next_event(events).await;
            assert_eq!(event["data"]["status"], status);
        }
    }

    // The account's own endpoint sees two signatures, each verifying.
    let sent = dashboard.api("POST", "/v1/messages", &dashboard.key, Some(SEND)).await;
    assert_eq!(sent.status, 201);
    let (headers, body) = next_capture(&mut captured).await;
    let signatures = headers["webhook-signature"].to_str().unwrap();
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    for text in [&old, &new] {
        let verifier =
            tollgate_webhook::Verifier::new(tollgate_webhook::Scheme::standard_webhooks(), secret(text)).unwrap();
        assert!(verifier.verify(&headers, &body, dashboard.clock.now()).is_ok());
    }
    let _ = next_capture(&mut captured).await;

    // The dashboard lists the deliveries.
    let browser = dashboard.sign_in(&dashboard.key).await;
    let page = dashboard.get("/dashboard/webhooks", Some(&browser.cookie)).await;
    assert!(page.text().contains("The previous secret also signs deliveries until"));
    assert!(
        page.text().matches("class=\"status-delivered\">delivered</td>").count() >= 4,
        "{}",
        page.text()
    );
    assert!(!page.text().contains(&old) && !page.text().contains(&new));

    // After the grace period: the new secret's signature alone.
    dashboard.clock.advance(Duration::from_secs(86_400));
    let sent = dashboard.api("POST", "/v1/messages", &dashboard.key, Some(SEND)).await;
    assert_eq!(sent.status, 201);
    let (headers, body) = next_capture(&mut captured).await;
    assert_eq!(headers["webhook-signature"].to_str().unwrap().split(' ').count(), 1);
    let now = dashboard.clock.now();
    let verify = |text: &str| {
        tollgate_webhook::Verifier::new(tollgate_webhook::Scheme::standard_webhooks(), secret(text))
            .unwrap()
            .verify(&headers, &body, now)
            .is_ok()
    };
    assert!(verify(&new));
    assert!(!verify(&old));

    // Rotating from the page shows the new secret once (a new session:
    // the first idled out during the day).
    let browser = dashboard.sign_in(&dashboard.key).await;
    let rotated = dashboard.submit("/dashboard/webhooks/rotate", &browser, "").await;
    assert_eq!(rotated.status, 303);
    let page = dashboard.get("/dashboard/webhooks", Some(&browser.cookie)).await;
    let marker = "id=\"new-secret\" type=\"text\" readonly value=\"";
    let start = page.text().find(marker).expect("the secret, once") + marker.len();
    let third = page.text()[start..].split('"').next().unwrap().to_owned();
    assert!(third.starts_with("whsec_") && third != new);
    let again = dashboard.get("/dashboard/webhooks", Some(&browser.cookie)).await;
    assert!(!again.text().contains(&third));
}

const SEND: &str = r#"{"to":"+15551234567","type":"text","text":{"body":"Hello"}}"#;

async fn receiver(secret: &tollgate_webhook::WebhookSecret) -> (TestServer, tokio::sync::broadcast::Receiver<Bytes>) {
    let options = webhook_receiver::Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        scheme: "standard".into(),
        secret: secret.clone(),
        limits: webhook_receiver::HttpLimits::default(),
    };
    let (events, received) = tokio::sync::broadcast::channel(8);
    let server = TestServer::start(webhook_receiver::router(&options, events).unwrap()).await;
    (server, received)
}

async fn next_event(events: &mut tokio::sync::broadcast::Receiver<Bytes>) -> serde_json::Value {
    let body = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("an event within 10 s")
        .expect("the receiver is running");
    serde_json::from_slice(&body).expect("a JSON event")
}

type Captured = (http::HeaderMap, Bytes);

// A receiver that keeps every request's headers and body, verifying nothing.
async fn capture_server() -> (TestServer, tokio::sync::mpsc::UnboundedReceiver<Captured>) {
    let (sender, received) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: http::HeaderMap, body: Bytes| {
            let sender = sender.clone();
            async move {
                let _ = sender.send((headers, body));
                "ok"
            }
        }),
    );
    (TestServer::start(app).await, received)
}

async fn next_capture(captured: &mut tokio::sync::mpsc::UnboundedReceiver<Captured>) -> Captured {
    tokio::time::timeout(Duration::from_secs(10), captured.recv())
        .await
        .expect("a delivery within 10 s")
        .expect("the capture server is running")
}

// Sessions and flashes in a database: stored by hash, sealed, deleted on sign-out.
async fn sessions_live_in_the_database(stores: Stores) {
    let database = stores.service.as_ref().unwrap().database.clone();
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_031_199));
    let dashboard = Dashboard::start_on(Config::default(), stores, clock).await;
    let browser = dashboard.sign_in(&dashboard.key).await;
    let session_id = browser.cookie.trim_start_matches("tg_session=").to_owned();
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT id_hash, key_id FROM api_dashboard_sessions")
        .fetch_all(database.pool())
        .await
        .unwrap();
    let hash = messaging_api::sessions::id_hash(&session_id);
    assert!(rows.iter().any(|(stored, _)| *stored == hash), "stored by its SHA-256");
    assert!(rows.iter().all(|(stored, _)| *stored != session_id));

    assert_eq!(
        dashboard
            .submit("/dashboard/keys", &browser, "label=db&type=sandbox")
            .await
            .status,
        303
    );
    let sealed: String = sqlx::query_scalar("SELECT sealed FROM api_dashboard_flash WHERE session_hash = $1")
        .bind(hash.clone())
        .fetch_one(database.pool())
        .await
        .unwrap();
    let page = dashboard.get("/dashboard/keys", Some(&browser.cookie)).await;
    let key = shown_key(page.text()).expect("the new key");
    assert!(!sealed.contains(&key), "the flash is sealed");
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_dashboard_flash WHERE session_hash = $1")
        .bind(hash.clone())
        .fetch_one(database.pool())
        .await
        .unwrap();
    assert_eq!(left, 0, "read once, deleted");
    assert!(shown_key(dashboard.get("/dashboard/keys", Some(&browser.cookie)).await.text()).is_none());

    assert_eq!(dashboard.submit("/dashboard/sign-out", &browser, "").await.status, 303);
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_dashboard_sessions WHERE id_hash = $1")
        .bind(hash)
        .fetch_one(database.pool())
        .await
        .unwrap();
    assert_eq!(left, 0);
    assert_eq!(
        dashboard.get("/dashboard/keys", Some(&browser.cookie)).await.status,
        303
    );
}

fn deployment(database: &str) -> Deployment {
    Deployment {
        database: database.to_owned(),
        redis: None,
        secrets_key: Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned()),
        secrets_key_file: None,
        database_timeout: Duration::from_secs(5),
        redis_prefix: None,
    }
}

#[tokio::test]
async fn sessions_live_in_sqlite() {
    let path = std::env::temp_dir().join(format!(
        "dashboard-{}-{}.db",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let stores = Stores::open(&deployment(path.to_str().unwrap()), SharedClock::default())
        .await
        .expect("a SQLite file");
    sessions_live_in_the_database(stores).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// Needs `DATABASE_URL` (skipped without it, a failure without it under
/// `TOLLGATE_REQUIRE_POSTGRES=1`); a fresh database per run.
#[tokio::test]
async fn sessions_live_in_postgres() {
    let Ok(url) = std::env::var("DATABASE_URL").map(|url| url.trim().to_owned()) else {
        assert!(
            std::env::var("TOLLGATE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "TOLLGATE_REQUIRE_POSTGRES=1 but DATABASE_URL is not set"
        );
        eprintln!("skipped: set DATABASE_URL to run the PostgreSQL dashboard session test");
        return;
    };
    // A database of its own: bootstrap needs an account with no key yet.
    let name = format!("tollgate_dashboard_{}", std::process::id());
    let admin = messaging_api::db::Database::connect(&url, Duration::from_secs(5))
        .await
        .expect("PostgreSQL is reachable");
    let admin = admin.pool();
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(admin)
        .await;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(admin)
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').expect("a database URL");
    let stores = Stores::open(&deployment(&format!("{base}/{name}")), SharedClock::default())
        .await
        .expect("the fresh database");
    sessions_live_in_the_database(stores.clone()).await;
    if let Some(service) = &stores.service {
        service.sql.close().await;
        service.database.close().await;
    }
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(admin)
        .await;
}
