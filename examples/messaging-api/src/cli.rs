//! The command line: every flag also read from its environment variable
//! (the flag wins). Secrets (`SECRETS_KEY`, `BOOTSTRAP_KEY`) are read from
//! the environment only, never from flags that `ps` would show.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::config::Config;
use crate::stores::Deployment;

/// The StartMessaging-style API server. With no flags: one node, every
/// record in the SQLite file ./messaging-api.db. A fleet: every instance
/// with the same --database postgres://… and --redis redis://….
#[derive(Debug, Clone, Parser)]
#[command(name = "messaging-api", version)]
#[command(next_line_help = false)]
pub struct Cli {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "LISTEN_ADDR", hide_env_values = true, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Address of the admin listener, serving GET /metrics (Prometheus) [default: 127.0.0.1:9090].
    #[arg(long, env = "ADMIN_LISTEN", hide_env_values = true, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// A SQLite file (created if missing) or a postgres:// URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        value_name = "URL",
        default_value = "./messaging-api.db"
    )]
    pub database: String,
    /// A redis:// URL: quotas, idempotency and usage counts shared by a fleet.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_name = "URL")]
    pub redis: Option<String>,
    /// Prefix of every Redis key (several deployments on one Redis).
    #[arg(long, env = "REDIS_PREFIX", hide_env_values = true, value_name = "PREFIX")]
    pub redis_prefix: Option<String>,
    /// A TOML configuration file (see config.example.toml).
    #[arg(long, env = "MESSAGING_API_CONFIG", hide_env_values = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Accept http:// and private-network webhook URLs (local testing only).
    #[arg(long, env = "ALLOW_PRIVATE_WEBHOOK_URLS", hide_env_values = true)]
    pub allow_private_webhook_urls: bool,
    /// File holding the base64 key that seals webhook signing secrets
    /// (SECRETS_KEY, from the environment, takes precedence). A single node
    /// creates <database>.key when neither is given.
    #[arg(long, env = "SECRETS_KEY_FILE", hide_env_values = true, value_name = "FILE")]
    pub secrets_key_file: Option<PathBuf>,
    /// Time a database or Redis call may take before the request fails with 503 [default: 2000].
    #[arg(long, env = "DATABASE_TIMEOUT_MS", hide_env_values = true, value_name = "MS")]
    pub database_timeout_ms: Option<u64>,
    /// Time a client has to send its request headers [default: 10].
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECS", hide_env_values = true, value_name = "SECS")]
    pub header_read_timeout_secs: Option<u64>,
    /// An idle keep-alive connection is closed after this long [default: 60].
    #[arg(long, env = "IDLE_TIMEOUT_SECS", hide_env_values = true, value_name = "SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Time a request has to be answered [default: 30].
    #[arg(long, env = "REQUEST_TIMEOUT_SECS", hide_env_values = true, value_name = "SECS")]
    pub request_timeout_secs: Option<u64>,
    /// Connections served at once [default: 10000].
    #[arg(long, env = "MAX_CONNECTIONS", hide_env_values = true, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Largest request head in bytes [default: 16384].
    #[arg(long, env = "MAX_HEADER_BYTES", hide_env_values = true, value_name = "BYTES")]
    pub max_header_bytes: Option<usize>,
    /// Largest request body in bytes; larger is 413 PAYLOAD_TOO_LARGE [default: 65536].
    #[arg(long, env = "MAX_BODY_BYTES", hide_env_values = true, value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Time in-flight requests get to finish after SIGTERM [default: 20].
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", hide_env_values = true, value_name = "SECS")]
    pub shutdown_grace_secs: Option<u64>,
}

impl Cli {
    /// The configuration: the file's, or the defaults, with the flags applied, validated.
    pub fn config(&self) -> Result<Config, String> {
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
                Config::from_toml(&text).map_err(|error| format!("{}: {error}", path.display()))?
            }
            None => Config::default(),
        };
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(admin_listen) = self.admin_listen {
            config.admin_listen = admin_listen;
        }
        config.allow_private_webhook_urls |= self.allow_private_webhook_urls;
        let server = &mut config.server;
        let overrides = [
            (&mut server.database_timeout_ms, self.database_timeout_ms),
            (&mut server.header_read_timeout_secs, self.header_read_timeout_secs),
            (&mut server.idle_timeout_secs, self.idle_timeout_secs),
            (&mut server.request_timeout_secs, self.request_timeout_secs),
            (&mut server.shutdown_grace_secs, self.shutdown_grace_secs),
        ];
        for (field, value) in overrides {
            if let Some(value) = value {
                *field = value;
            }
        }
        for (field, value) in [
            (&mut server.max_connections, self.max_connections),
            (&mut server.max_header_bytes, self.max_header_bytes),
            (&mut server.max_body_bytes, self.max_body_bytes),
        ] {
            if let Some(value) = value {
                *field = value;
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Where the stores are. `SECRETS_KEY` comes from the environment.
    pub fn deployment(&self, config: &Config) -> Deployment {
        Deployment {
            database: self.database.clone(),
            redis: self.redis.clone().filter(|url| !url.is_empty()),
            secrets_key: std::env::var("SECRETS_KEY").ok().filter(|key| !key.is_empty()),
            secrets_key_file: self.secrets_key_file.clone(),
            database_timeout: Duration::from_millis(config.server.database_timeout_ms),
            redis_prefix: self.redis_prefix.clone(),
        }
    }
}
