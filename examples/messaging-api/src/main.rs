//! The StartMessaging-style API server (being built up layer by layer).

use axum::{routing::get, Json, Router};

#[tokio::main]
async fn main() {
    let listen = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let app = Router::new().route("/health", get(|| async { Json(serde_json::json!({"status":"ok"})) }));
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .expect("bind the listen address");
    println!("listening on {listen}");
    axum::serve(listener, app).await.expect("server runs");
}
