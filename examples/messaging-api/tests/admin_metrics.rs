//! The admin listener of the real binary: `GET /metrics` in Prometheus
//! text format with the layers' request counters, on its own address and
//! never on the public one.

mod support;

use support::{request, Server, TempDir};

// The value of the sample named exactly `series` (name and labels).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn the_admin_listener_serves_prometheus_metrics_and_the_public_one_does_not() {
    let dir = TempDir::new("admin-metrics");
    let database = dir.file("api.db");
    let server = Server::start(&["--database", database.as_str()], &[]);
    assert_ne!(server.admin_addr, server.addr);
    assert!(server.admin_addr.ip().is_loopback());
    let key = server.bootstrap_key().expect("a bootstrap key");

    for _ in 0..3 {
        assert_eq!(server.call("GET", "/v1/keys", &key, None).status, 200);
    }
    let garbage = "tg_live_00000000000000000000000000000000000000";
    assert_eq!(server.call("GET", "/v1/keys", garbage, None).status, 401);
    assert_eq!(server.call("GET", "/v1/keys", "", None).status, 401);

    // Never on the public listener: a route like any unknown one.
    let public = server.call("GET", "/metrics", &key, None);
    assert_eq!(public.status, 404);
    assert_eq!(
        public.body,
        r#"{"error":{"code":"NOT_FOUND","message":"Route not found."}}"#
    );
    assert_eq!(server.call("GET", "/metrics", "", None).status, 401);

    let scraped = request(server.admin_addr, "GET", "/metrics", "", None, &[]);
    assert_eq!(scraped.status, 200);
    assert_eq!(
        scraped.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = &scraped.body;
    assert!(text.contains("# TYPE tollgate_requests_total counter"), "{text}");
    let allowed = r#"tollgate_requests_total{layer="auth",outcome="allowed"}"#;
    assert_eq!(sample(text, allowed), Some(4.0), "{text}");
    let unauthorized = r#"tollgate_requests_total{layer="auth",outcome="unauthorized"}"#;
    assert_eq!(sample(text, unauthorized), Some(3.0), "{text}");
    let rate_limit = r#"tollgate_requests_total{layer="rate_limit",outcome="allowed"}"#;
    assert_eq!(sample(text, rate_limit), Some(4.0), "{text}");
    assert!(!text.contains("key_id="), "no key-id labels by default: {text}");
    assert!(!text.contains(&key), "never a key");

    let other = request(server.admin_addr, "GET", "/v1/keys", &key, None, &[]);
    assert_eq!(other.status, 404, "the admin listener serves only /metrics");
    let (status, _) = server.stop();
    assert!(status.success());
}
