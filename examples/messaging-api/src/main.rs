//! `cargo run -p messaging-api -- --help` lists every flag and its
//! environment variable.
//!
//! With no configuration, one node: keys, allowlists, accounts, webhook
//! endpoints, messages, pending deliveries, usage and idempotency records
//! in the SQLite file `./messaging-api.db`. A fleet: `DATABASE_URL=postgres://…`
//! and `REDIS_URL=redis://…` on every instance. `BOOTSTRAP_KEY`, when set,
//! must be a well-formed production key (`tg_live_…`, see
//! `tollgate_auth::KeyFormat`); otherwise start-up fails. SIGTERM (or
//! Ctrl-C) stops accepting, lets in-flight requests finish, writes what is
//! written behind, and exits.

#![forbid(unsafe_code)]

use clap::Parser;
use messaging_api::bootstrap::{bootstrap, check_bootstrap_key};
use messaging_api::cli::Cli;
use messaging_api::stores::Stores;
use messaging_api::{router, AppState};
use tollgate_core::SharedClock;

#[tokio::main]
async fn main() {
    // `--help` and `--version` print and exit 0; a bad flag exits 2.
    let cli = Cli::parse();
    messaging_api::run_main("messaging-api", run(cli)).await;
}

async fn run(cli: Cli) -> Result<(), String> {
    let config = cli.config()?;
    // Checked before anything connects: a malformed key could never authenticate.
    let bootstrap_key = std::env::var("BOOTSTRAP_KEY").ok().filter(|key| !key.is_empty());
    if let Some(key) = &bootstrap_key {
        check_bootstrap_key(key)?;
    }
    // Before anything reports: the layers' metrics go to this recorder.
    let metrics = messaging_api::admin::install_prometheus(config.metrics_key_id_labels)?;
    let clock = SharedClock::default();
    let stores = Stores::open(&cli.deployment(&config), clock.clone()).await?;
    let service = stores.service.clone();
    let state = AppState::new(config.clone(), stores, clock);
    if let Some(key) = bootstrap(&state, bootstrap_key.as_deref()).await? {
        println!("bootstrap key: {key}");
    }
    state.start_background();

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", config.listen))?;
    let local = listener.local_addr().map_err(|error| error.to_string())?;
    println!("messaging-api listening on http://{local}");
    let admin = tokio::net::TcpListener::bind(config.admin_listen)
        .await
        .map_err(|error| format!("cannot listen on {} (--admin-listen): {error}", config.admin_listen))?;
    let admin_local = admin.local_addr().map_err(|error| error.to_string())?;
    println!("messaging-api admin listening on http://{admin_local}");
    let admin_limits = config.server.clone();
    // Ends with the process: the admin listener has nothing to drain.
    tokio::spawn(async move {
        let app = messaging_api::admin::router(metrics);
        if let Err(error) = messaging_api::server::serve(admin, app, &admin_limits, std::future::pending()).await {
            tracing::error!(%error, "admin server failed");
        }
    });
    messaging_api::server::serve(listener, router(state.clone()), &config.server, shutdown_signal())
        .await
        .map_err(|error| format!("server error: {error}"))?;
    if let Err(error) = state.usage().flush().await {
        tracing::warn!(%error, "usage counts not written at shutdown");
    }
    if let Some(service) = service {
        if let Some(quota) = &service.quota {
            if let Err(error) = quota.flush().await {
                tracing::warn!(%error, "daily quota counts not written at shutdown");
            }
        }
        if let Err(error) = service.sql.flush().await {
            tracing::warn!(%error, "key last-use times not written at shutdown");
        }
        service.sql.close().await;
        service.database.close().await;
    }
    println!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    println!("shutting down");
}
