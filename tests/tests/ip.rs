//! ClientIpLayer and IpAllowlistLayer through a real axum server on a
//! loopback socket: the peer address comes from `ConnectInfo<SocketAddr>`,
//! so every request here really comes from 127.0.0.1.

mod support;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use http::StatusCode;
use support::{TestResponse, TestServer};
use tollgate_auth::{BearerAuthLayer, KeyManager, NewKey};
use tollgate_core::allowlist::{AllowlistStore, IpSet, MemoryAllowlistStore};
use tollgate_core::keys::MemoryKeyStore;
use tollgate_core::{ClientIp, KeyKind};
use tollgate_ip::{ClientIpLayer, ForwardedHeader, IpAllowlistLayer};

const IP_NOT_ALLOWED: &str =
    r#"{"error":{"code":"IP_NOT_ALLOWED","message":"Requests from this IP address are not allowed."}}"#;

async fn client_ip(client: ClientIp) -> String {
    client.to_string()
}

fn list(entries: &[&str]) -> IpSet {
    IpSet::parse(entries).expect("valid networks")
}

// Outermost last: ClientIp → global allowlist → handler.
async fn server(resolver: ClientIpLayer, global: IpSet) -> TestServer {
    let router = Router::new()
        .route("/v1/ip", get(client_ip))
        .layer(IpAllowlistLayer::new().global(global))
        .layer(resolver);
    TestServer::start(router).await
}

async fn get_ip(server: &TestServer, forwarded_for: Option<&str>) -> TestResponse {
    let mut request = server.request("GET", "/v1/ip");
    if let Some(chain) = forwarded_for {
        request = request.header("x-forwarded-for", chain);
    }
    server.send_empty(request).await
}

fn assert_refused(response: &TestResponse) {
    assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.text());
    assert_eq!(response.header("content-type"), "application/json");
    assert_eq!(response.text(), IP_NOT_ALLOWED);
}

#[tokio::test]
async fn loopback_is_allowed_by_one_list_and_refused_by_another() {
    let loopback = server(ClientIpLayer::new(), list(&["127.0.0.0/8"])).await;
    let response = get_ip(&loopback, None).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.text(), "127.0.0.1");

    let documentation = server(ClientIpLayer::new(), list(&["203.0.113.0/24"])).await;
    assert_refused(&get_ip(&documentation, None).await);
}

#[tokio::test]
async fn without_trusted_proxies_forwarding_headers_change_nothing() {
    let loopback = server(ClientIpLayer::new(), list(&["127.0.0.0/8"])).await;
    let response = get_ip(&loopback, Some("203.0.113.9")).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.text(), "127.0.0.1", "the spoofed header is ignored");

    let documentation = server(ClientIpLayer::new(), list(&["203.0.113.0/24"])).await;
    assert_refused(&get_ip(&documentation, Some("203.0.113.9")).await);
    let request = documentation
        .request("GET", "/v1/ip")
        .header("forwarded", "for=203.0.113.9");
    assert_refused(&documentation.send_empty(request).await);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_judged() {
    // Loopback plays our load balancer here.
    let behind_proxy = ClientIpLayer::new().trusted_proxies(["127.0.0.0/8".parse().expect("a network")]);
    let api = server(behind_proxy.clone(), list(&["203.0.113.0/24"])).await;

    let response = get_ip(&api, Some("198.51.100.66, 203.0.113.9")).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.text(), "203.0.113.9", "the leftmost entry is never believed");
    // The client put an allowed address first; the proxy appended the truth.
    assert_refused(&get_ip(&api, Some("203.0.113.9, 198.51.100.66")).await);
    // No header: the client is the proxy itself, which is not listed.
    assert_refused(&get_ip(&api, None).await);
    // A broken chain falls back to the nearest hop, the proxy.
    assert_refused(&get_ip(&api, Some("203.0.113.9, garbage")).await);

    let forwarded = server(
        behind_proxy.header(ForwardedHeader::Forwarded),
        list(&["2001:db8::/32"]),
    )
    .await;
    let request = forwarded
        .request("GET", "/v1/ip")
        .header("forwarded", r#"for=203.0.113.1, for="[2001:db8:cafe::17]:4711""#);
    let response = forwarded.send_empty(request).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.text(), "2001:db8:cafe::17");
}

#[tokio::test]
async fn per_account_and_per_key_lists_apply_after_authentication() {
    let keys = MemoryKeyStore::new();
    let allowlists = MemoryAllowlistStore::new();
    let manager = KeyManager::new(keys.clone()).allowlists(Arc::new(allowlists.clone()));
    let unrestricted = manager
        .create(NewKey::new("acct_ip", KeyKind::Production))
        .await
        .expect("a key");
    let elsewhere = manager
        .create(NewKey::new("acct_ip", KeyKind::Production))
        .await
        .expect("a key");
    // Given its list at creation: the manager writes it to the store first.
    let created_restricted = manager
        .create(NewKey::new("acct_ip", KeyKind::Production).ip_allowlist(["192.0.2.0/24".parse().expect("a network")]))
        .await
        .expect("a key");

    allowlists
        .set_account_allowlist("acct_ip", list(&["127.0.0.0/8", "203.0.113.0/24"]))
        .await
        .expect("set");
    allowlists
        .set_key_allowlist(&elsewhere.info.id, list(&["203.0.113.0/24"]))
        .await
        .expect("set");

    // ClientIp → BearerAuth → per-key allowlist → handler.
    let router = Router::new()
        .route("/v1/ip", get(client_ip))
        .layer(IpAllowlistLayer::new().store(allowlists.clone()))
        .layer(BearerAuthLayer::new(keys))
        .layer(ClientIpLayer::new());
    let server = TestServer::start(router).await;
    let call = |secret: String| {
        let request = server
            .request("GET", "/v1/ip")
            .header("authorization", format!("Bearer {secret}"));
        server.send_empty(request)
    };

    let response = call(unrestricted.secret.expose_secret().to_owned()).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(response.text(), "127.0.0.1");
    assert_refused(&call(elsewhere.secret.expose_secret().to_owned()).await);
    assert_refused(&call(created_restricted.secret.expose_secret().to_owned()).await);

    // Narrowing the account's list refuses even the unrestricted key.
    allowlists
        .set_account_allowlist("acct_ip", list(&["203.0.113.0/24"]))
        .await
        .expect("set");
    assert_refused(&call(unrestricted.secret.expose_secret().to_owned()).await);
}

#[tokio::test]
async fn handlers_see_no_client_ip_without_the_layer() {
    async fn maybe(client: Option<ClientIp>) -> String {
        format!("{client:?}")
    }
    let router = Router::new()
        .route("/v1/ip", get(client_ip))
        .route("/v1/maybe", get(maybe));
    let server = TestServer::start(router).await;
    let response = get_ip(&server, Some("203.0.113.9")).await;
    assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        response.text(),
        r#"{"error":{"code":"INTERNAL_ERROR","message":"The client address could not be determined."}}"#
    );
    let response = server.send_empty(server.request("GET", "/v1/maybe")).await;
    assert_eq!(response.text(), "None");
}
