//! messaging-api's OpenAPI document: served without a key, and the same
//! set of operations as the router answers.

mod support;

use std::collections::BTreeSet;

use messaging_api::config::{AccountConfig, PlanConfig};
use messaging_api::{bootstrap::bootstrap, router, stores::Stores, AppState, Config};
use serde_json::Value;
use support::{TestResponse, TestServer};
use tollgate_core::{ManualClock, SharedClock};

const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "PATCH"];

// Every operation of the API, as the document must list it.
const OPERATIONS: [(&str, &str); 15] = [
    ("GET", "/v1/audit-log"),
    ("GET", "/v1/keys"),
    ("POST", "/v1/keys"),
    ("DELETE", "/v1/keys/{id}"),
    ("PUT", "/v1/keys/{id}/ip-allowlist"),
    ("DELETE", "/v1/keys/{id}/ip-allowlist"),
    ("POST", "/v1/keys/{id}/rotate"),
    ("POST", "/v1/messages"),
    ("GET", "/v1/messages/{id}"),
    ("GET", "/v1/security/ip-allowlist"),
    ("PUT", "/v1/security/ip-allowlist"),
    ("DELETE", "/v1/security/ip-allowlist"),
    ("GET", "/v1/usage"),
    ("PUT", "/v1/webhooks"),
    ("POST", "/v1/webhooks/secret/rotate"),
];

async fn start() -> (TestServer, String) {
    let clock = ManualClock::new(std::time::SystemTime::now());
    let stores = Stores::memory(SharedClock::from(clock.clone()));
    // A plan that the probes below never exhaust.
    let mut config = Config::default();
    let plan = PlanConfig {
        per_second: 10_000,
        burst: None,
        daily: None,
    };
    config.plans.insert("probe".into(), plan);
    config.accounts.push(AccountConfig {
        id: Config::DEMO_ACCOUNT.into(),
        plan: "probe".into(),
        webhook_url: None,
        webhook_secret: None,
        ip_allowlist: Vec::new(),
    });
    let state = AppState::new(config, stores, SharedClock::from(clock));
    let key = bootstrap(&state, None)
        .await
        .expect("bootstrap")
        .expect("a fresh server creates a key");
    (TestServer::start(router(state)).await, key)
}

fn operations(document: &Value) -> BTreeSet<(String, String)> {
    let paths = document["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|method| item.get(method.to_ascii_lowercase()).is_some())
                .map(move |method| (method.to_string(), path.clone()))
        })
        .collect()
}

fn is_route_fallback(response: &TestResponse) -> bool {
    (response.status == 404 && response.json()["error"]["message"] == "Route not found.") || response.status == 405
}

#[tokio::test]
async fn the_document_needs_no_key_and_leaves_out_health() {
    let (server, _) = start().await;
    for key in [None, Some("tg_live_not_a_key")] {
        let response = server.call("GET", "/openapi.json", key, None, &[]).await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.header("content-type"), "application/json");
        let document = response.json();
        assert_eq!(document["openapi"], "3.1.0");
        for absent in ["/health", "/health/ready", "/metrics", "/dashboard", "/openapi.json"] {
            assert!(document["paths"].get(absent).is_none(), "{absent} is documented");
        }
    }
    assert_eq!(
        serde_json::to_value(messaging_api::openapi_document()).unwrap(),
        server.call("GET", "/openapi.json", None, None, &[]).await.json()
    );
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_the_router_serves() {
    let (server, key) = start().await;
    let document = server.call("GET", "/openapi.json", None, None, &[]).await.json();
    let documented = operations(&document);
    let expected: BTreeSet<(String, String)> = OPERATIONS
        .iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    assert_eq!(documented, expected);

    // Each documented operation reaches its handler; every other method on
    // a documented path is the router's 405, so nothing is served there
    // undocumented.
    let paths: BTreeSet<&String> = documented.iter().map(|(_, path)| path).collect();
    for path in paths {
        let concrete = path.replace("{id}", "key_0000000000000000");
        for method in METHODS {
            let body = matches!(method, "PUT" | "POST" | "PATCH").then_some("{}");
            let response = server.call(method, &concrete, Some(&key), body, &[]).await;
            if documented.contains(&(method.to_string(), path.clone())) {
                assert!(!is_route_fallback(&response), "{method} {path}: {}", response.text());
            } else {
                assert_eq!(
                    (response.status.as_u16(), response.json()["error"]["code"].clone()),
                    (405, "METHOD_NOT_ALLOWED".into()),
                    "{method} {path} is served but not documented"
                );
            }
        }
    }
    for undocumented in [
        "/v1",
        "/v1/keys/key_0000000000000000/extra",
        "/v1/webhooks/x",
        "/v1/message",
    ] {
        let response = server.call("GET", undocumented, Some(&key), None, &[]).await;
        assert_eq!(response.status, 404, "{undocumented}");
        assert!(is_route_fallback(&response), "{undocumented}: {}", response.text());
    }
}

#[tokio::test]
async fn every_operation_documents_the_stack() {
    let document = serde_json::to_value(messaging_api::openapi_document()).unwrap();
    assert_eq!(document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    for (method, path) in OPERATIONS {
        let operation = &document["paths"][path][method.to_ascii_lowercase()];
        let responses = operation["responses"].as_object().unwrap();
        assert_eq!(
            operation["security"],
            serde_json::json!([{"bearer": []}]),
            "{method} {path}"
        );
        for status in ["400", "401", "403", "429", "503"] {
            let response = &responses[status];
            assert_eq!(
                response["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
                "{method} {path} {status}"
            );
            assert!(
                response["headers"].get("RateLimit").is_some(),
                "{method} {path} {status}"
            );
        }
        assert!(responses["429"]["headers"].get("Retry-After").is_some());
        let has_body = operation.get("requestBody").is_some();
        assert_eq!(
            responses.contains_key("415"),
            has_body || method == "POST",
            "{method} {path}"
        );
        let parameters: Vec<&str> = operation["parameters"]
            .as_array()
            .map(|list| list.iter().filter_map(|p| p["name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(
            parameters.contains(&"X-Request-ID"),
            method == "POST",
            "{method} {path}"
        );
        assert_eq!(
            parameters.contains(&"X-Webhook-URL"),
            path == "/v1/messages",
            "{method} {path}"
        );
        if method == "POST" {
            assert!(responses["201"]["headers"].get("Idempotent-Replayed").is_some());
        }
    }
}

#[tokio::test]
async fn a_malformed_path_parameter_is_the_json_400() {
    let (server, key) = start().await;
    for path in ["/v1/messages/%FF", "/v1/keys/%C3%28/rotate"] {
        let method = if path.ends_with("rotate") { "POST" } else { "GET" };
        let response = server.call(method, path, Some(&key), None, &[]).await;
        assert_eq!(response.status, 400, "{path}: {}", response.text());
        assert_eq!(response.header("content-type"), "application/json");
        assert_eq!(response.json()["error"]["code"], "INVALID_REQUEST", "{path}");
        assert!(
            response.json()["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("Invalid path parameter"),
            "{path}: {}",
            response.text()
        );
    }
}
