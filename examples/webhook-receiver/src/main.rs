//! `cargo run -p webhook-receiver -- [--listen ADDR] [--scheme seed|github|stripe|standard]`
//! with the secret in `WEBHOOK_SECRET`.

#![forbid(unsafe_code)]

use tokio::sync::broadcast;
use webhook_receiver::{router, serve, Options};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let options = match Options::from_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let (events, _) = broadcast::channel(64);
    let app = match router(&options, events) {
        Ok(app) => app,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(options.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {}: {error}", options.listen);
            std::process::exit(1);
        }
    };
    println!(
        "webhook-receiver listening on {} (scheme {})",
        options.listen, options.scheme
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if let Err(error) = serve(listener, app, options.limits.clone(), shutdown).await {
        eprintln!("server error: {error}");
        std::process::exit(1);
    }
}
