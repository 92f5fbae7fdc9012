//! `cargo run -p messaging-api -- [--listen ADDR] [--config FILE] [--allow-private-webhook-urls]`
//!
//! In-memory stores by default; with `REDIS_URL` set, Redis stores, so
//! several instances share keys, quotas, idempotency records and allowlists.
//! `BOOTSTRAP_KEY`, when set, must be a well-formed production key
//! (`tg_live_…`, see `tollgate_auth::KeyFormat`); otherwise start-up fails.

#![forbid(unsafe_code)]

use std::net::SocketAddr;

use messaging_api::{
    bootstrap::{bootstrap, check_bootstrap_key},
    router,
    stores::Stores,
    AppState, Config,
};
use tollgate_core::SharedClock;

#[tokio::main]
async fn main() {
    messaging_api::run_main("messaging-api", run()).await;
}

async fn run() -> Result<(), String> {
    let config = Config::from_args(std::env::args().skip(1))?;
    // Checked before anything connects: a malformed key could never authenticate.
    let bootstrap_key = std::env::var("BOOTSTRAP_KEY").ok().filter(|key| !key.is_empty());
    if let Some(key) = &bootstrap_key {
        check_bootstrap_key(key)?;
    }
    let clock = SharedClock::default();
    let stores = match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => Stores::redis(&url).await?,
        _ => Stores::memory(clock.clone()),
    };
    let state = AppState::new(config.clone(), stores, clock);
    if let Some(key) = bootstrap(&state, bootstrap_key.as_deref()).await? {
        println!("bootstrap key: {key}");
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", config.listen))?;
    println!("messaging-api listening on http://{}", config.listen);
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            println!("shutting down");
        })
        .await
        .map_err(|error| format!("server error: {error}"))
}
