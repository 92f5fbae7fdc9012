//! `cargo run -p grpc-messaging -- [--listen ADDR]` (default `127.0.0.1:50051`).
//!
//! In-memory stores; a bootstrap key for `acct_demo` is printed at start
//! (`bootstrap key: …`), or taken from the `BOOTSTRAP_KEY` environment variable.

#![forbid(unsafe_code)]

use std::net::SocketAddr;

use grpc_messaging::{bootstrap_key, serve_with_shutdown, AppState};
use tollgate_core::SharedClock;

const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
const USAGE: &str = "usage: grpc-messaging [--listen ADDR]";

#[tokio::main]
async fn main() {
    messaging_api::run_main("grpc-messaging", run()).await;
}

fn listen_address(mut args: impl Iterator<Item = String>) -> Result<SocketAddr, String> {
    let mut listen = DEFAULT_LISTEN.to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().ok_or(USAGE)?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    listen.parse().map_err(|error| format!("--listen {listen:?}: {error}"))
}

async fn run() -> Result<(), String> {
    let listen = listen_address(std::env::args().skip(1))?;
    let state = AppState::new(SharedClock::default());
    let chosen = std::env::var("BOOTSTRAP_KEY").ok().filter(|key| !key.is_empty());
    let key = bootstrap_key(&state, chosen.as_deref())
        .await
        .map_err(|error| format!("bootstrap key: {error}"))?;
    println!("bootstrap key: {key}");

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| format!("cannot listen on {listen}: {error}"))?;
    let bound = listener.local_addr().unwrap_or(listen);
    println!("grpc-messaging listening on http://{bound}");
    serve_with_shutdown(listener, state, async {
        let _ = tokio::signal::ctrl_c().await;
        println!("shutting down");
    })
    .await
    .map_err(|error| format!("server error: {error}"))
}
