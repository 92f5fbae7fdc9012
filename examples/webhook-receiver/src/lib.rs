//! A webhook receiver: every request to `POST /webhooks` must carry a valid
//! signature in the chosen scheme, checked by `WebhookSignatureLayer` before
//! the handler sees the body. Accepted events are printed and, for tests,
//! published on a channel.
//!
//! ```sh
//! WEBHOOK_SECRET=whsec_... cargo run -p webhook-receiver -- --scheme seed
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod serve;

use std::net::SocketAddr;

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use tokio::sync::broadcast;
use tollgate_core::replay::MemoryReplayStore;
use tollgate_webhook::{Scheme, Verifier, WebhookSecret, WebhookSignatureLayer};

pub use serve::{serve, HttpLimits};

/// The receiver's settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen.
    pub listen: SocketAddr,
    /// `seed`, `github`, `stripe` or `standard`.
    pub scheme: String,
    /// The shared secret.
    pub secret: WebhookSecret,
    /// HTTP limits (`--header-read-timeout SECS`, `--idle-timeout SECS`,
    /// `--request-timeout SECS`, `--max-connections N`, `--max-header-bytes N`).
    pub limits: HttpLimits,
}

impl Options {
    /// Reads `--listen ADDR`, `--scheme NAME` and the `WEBHOOK_SECRET` environment variable.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut listen: SocketAddr = ([127, 0, 0, 1], 8081).into();
        let mut scheme = "seed".to_owned();
        let mut limits = HttpLimits::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
            match arg.as_str() {
                "--listen" => listen = value("--listen")?.parse().map_err(|_| "invalid --listen address")?,
                "--scheme" => scheme = value("--scheme")?,
                "--header-read-timeout" => limits.header_read_timeout = seconds(&value(&arg)?, &arg)?,
                "--idle-timeout" => limits.idle_timeout = seconds(&value(&arg)?, &arg)?,
                "--request-timeout" => limits.request_timeout = seconds(&value(&arg)?, &arg)?,
                "--max-connections" => limits.max_connections = number(&value(&arg)?, &arg)?,
                "--max-header-bytes" => limits.max_header_bytes = number(&value(&arg)?, &arg)?,
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        let secret = std::env::var("WEBHOOK_SECRET").map_err(|_| format!("set WEBHOOK_SECRET\n{USAGE}"))?;
        scheme_named(&scheme)?;
        Ok(Options {
            listen,
            scheme,
            secret: WebhookSecret::new(secret),
            limits,
        })
    }
}

fn number(text: &str, flag: &str) -> Result<usize, String> {
    match text.parse() {
        Ok(0) | Err(_) => Err(format!("{flag} needs a positive number")),
        Ok(n) => Ok(n),
    }
}

fn seconds(text: &str, flag: &str) -> Result<std::time::Duration, String> {
    number(text, flag).map(|secs| std::time::Duration::from_secs(secs as u64))
}

const USAGE: &str = "usage: WEBHOOK_SECRET=... webhook-receiver [--listen ADDR] [--scheme seed|github|stripe|standard] [--header-read-timeout SECS] [--idle-timeout SECS] [--request-timeout SECS] [--max-connections N] [--max-header-bytes N]";

/// The scheme for a command-line name.
pub fn scheme_named(name: &str) -> Result<Scheme, String> {
    match name {
        "seed" => Ok(Scheme::hex()),
        "github" => Ok(Scheme::github()),
        "stripe" => Ok(Scheme::stripe()),
        "standard" => Ok(Scheme::standard_webhooks()),
        other => Err(format!(
            "unknown scheme {other:?}: use seed, github, stripe or standard"
        )),
    }
}

/// The receiver's router; every accepted body is sent on `events`.
pub fn router(options: &Options, events: broadcast::Sender<Bytes>) -> Result<Router, String> {
    let verifier = Verifier::new(scheme_named(&options.scheme)?, options.secret.clone()).map_err(|e| e.to_string())?;
    let layer = WebhookSignatureLayer::new(verifier).replay_store(MemoryReplayStore::new());
    Ok(Router::new()
        .route("/webhooks", post(accept))
        .layer(layer)
        .with_state(events))
}

async fn accept(State(events): State<broadcast::Sender<Bytes>>, body: Bytes) -> &'static str {
    println!("webhook accepted: {}", String::from_utf8_lossy(&body));
    // Nobody listening is fine: the channel exists for tests.
    let _ = events.send(body);
    "ok"
}
