//! The server's configuration: command line, environment and an optional
//! TOML file (`--config FILE`). Secrets come from the environment or the
//! file, never from source code.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

/// Everything the server needs to start.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where to listen (`--listen`, `LISTEN_ADDR`).
    pub listen: SocketAddr,
    /// Where the admin listener serves `GET /metrics` (`--admin-listen`,
    /// `ADMIN_LISTEN`): loopback by default, never the public listener.
    pub admin_listen: SocketAddr,
    /// Whether request metrics carry a `key_id` label (one series per key
    /// and outcome: only for deployments with few keys).
    pub metrics_key_id_labels: bool,
    /// Days after which a key in use is due for rotation (`rotation_due`
    /// in `GET /v1/keys`, and a `rotation_due` alert once a day).
    pub rotation_age_days: u64,
    /// Plans by name; the seed's `free`, `premium` and `enterprise` unless overridden.
    pub plans: BTreeMap<String, PlanConfig>,
    /// Accounts and their plans. `acct_demo` is always ensured.
    pub accounts: Vec<AccountConfig>,
    /// Most active keys an account may hold.
    pub max_keys_per_account: usize,
    /// How long a rotated key keeps working, in seconds.
    pub rotation_grace_secs: u64,
    /// Proxies whose forwarding headers are believed (CIDRs). Empty: the peer is the client.
    pub trusted_proxies: Vec<IpNet>,
    /// Networks allowed to call the API at all. Empty: everyone.
    pub global_allowlist: Vec<IpNet>,
    /// Failed authentications (401s) allowed per client address (IPv4
    /// address or IPv6 /64) per minute; past it the address gets 429 until
    /// the minute ends, good keys included.
    pub failed_auth_per_minute: u32,
    /// Webhook delivery settings.
    pub webhooks: WebhookConfig,
    /// Accept `http://` and private-network webhook URLs (local testing only).
    pub allow_private_webhook_urls: bool,
    /// HTTP server limits.
    pub server: ServerConfig,
    /// How long messages are kept.
    pub retention: RetentionConfig,
    /// The browser dashboard under `/dashboard`.
    pub dashboard: DashboardConfig,
}

/// The dashboard's sessions.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardConfig {
    /// A session ends this long after sign-in, in seconds, however busy.
    pub session_ttl_secs: u64,
    /// A session unused for this long ends, in seconds.
    pub idle_timeout_secs: u64,
    /// Always mark the session cookie `Secure` (behind a TLS-terminating
    /// proxy that is not in `trusted_proxies`). The cookie is `Secure`
    /// anyway when a trusted proxy says the request came over HTTPS.
    pub secure_cookies: bool,
}

impl Default for DashboardConfig {
    fn default() -> DashboardConfig {
        DashboardConfig {
            session_ttl_secs: 12 * 3600,
            idle_timeout_secs: 3600,
            secure_cookies: false,
        }
    }
}

/// The HTTP server's limits: every one bounded by default.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Time a client has to send a request's headers, in seconds.
    pub header_read_timeout_secs: u64,
    /// A keep-alive connection with no request for this long is closed, in seconds.
    pub idle_timeout_secs: u64,
    /// Time a request has to be answered (503 past it), in seconds.
    pub request_timeout_secs: u64,
    /// Connections served at once; past it new ones wait to be accepted.
    pub max_connections: usize,
    /// Largest request head (request line and headers), in bytes.
    pub max_header_bytes: usize,
    /// Largest request body, in bytes (413 `PAYLOAD_TOO_LARGE` past it).
    pub max_body_bytes: usize,
    /// Time a call to the database (or Redis) may take before the request fails with 503, in milliseconds.
    pub database_timeout_ms: u64,
    /// Time in-flight requests get to finish after SIGTERM, in seconds.
    pub shutdown_grace_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            request_timeout_secs: 30,
            max_connections: 10_000,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
            database_timeout_ms: 2_000,
            shutdown_grace_secs: 20,
        }
    }
}

/// Message retention: a message is deleted once it is older than
/// `max_age_days`, or once `max_messages` newer ones are stored.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days a message is kept.
    pub max_age_days: u64,
    /// Messages kept at most, every account together.
    pub max_messages: u64,
    /// How often old messages are deleted, in seconds.
    pub prune_interval_secs: u64,
    /// Days an audit log entry is kept.
    pub audit_max_age_days: u64,
}

impl Default for RetentionConfig {
    fn default() -> RetentionConfig {
        RetentionConfig {
            max_age_days: 30,
            max_messages: 1_000_000,
            prune_interval_secs: 60,
            audit_max_age_days: 365,
        }
    }
}

/// One plan's limits.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests that may arrive at once; the per-second rate when absent.
    pub burst: Option<u32>,
    /// Requests per UTC day; unlimited when absent.
    pub daily: Option<u64>,
}

/// An account.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// The account id, such as `acct_demo`.
    pub id: String,
    /// The plan's name.
    #[serde(default = "default_plan")]
    pub plan: String,
    /// Where message events are delivered.
    pub webhook_url: Option<String>,
    /// The webhook signing secret (`whsec_…`); generated when absent.
    pub webhook_secret: Option<String>,
    /// The account's IP allowlist.
    #[serde(default)]
    pub ip_allowlist: Vec<IpNet>,
}

// By hand, so the webhook secret never reaches a log.
impl std::fmt::Debug for AccountConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountConfig")
            .field("id", &self.id)
            .field("plan", &self.plan)
            .field("webhook_url", &self.webhook_url)
            .field("webhook_secret", &self.webhook_secret.as_ref().map(|_| "<redacted>"))
            .field("ip_allowlist", &self.ip_allowlist)
            .finish()
    }
}

/// Webhook delivery.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Attempts per event, the first included.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles each time.
    pub initial_backoff_ms: u64,
    /// Time allowed for one attempt.
    pub timeout_ms: u64,
    /// When not empty, the only networks a webhook URL (`PUT /v1/webhooks`,
    /// `X-Webhook-URL`) may resolve to, and the only addresses deliveries
    /// connect to: on top of the URL guard, never instead of it.
    pub allowed_networks: Vec<ipnet::IpNet>,
    /// After `POST /v1/webhooks/secret/rotate`, how long deliveries are
    /// signed with the old secret too, in seconds.
    pub secret_rotation_grace_secs: u64,
}

fn default_plan() -> String {
    "free".into()
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            metrics_key_id_labels: false,
            rotation_age_days: tollgate_core::alerts::DEFAULT_ROTATION_AGE.as_secs() / 86_400,
            plans: BTreeMap::new(),
            accounts: Vec::new(),
            max_keys_per_account: 10,
            rotation_grace_secs: 24 * 3600,
            trusted_proxies: Vec::new(),
            global_allowlist: Vec::new(),
            failed_auth_per_minute: tollgate_auth::DEFAULT_FAILED_AUTH_LIMIT,
            webhooks: WebhookConfig::default(),
            allow_private_webhook_urls: false,
            server: ServerConfig::default(),
            retention: RetentionConfig::default(),
            dashboard: DashboardConfig::default(),
        }
    }
}

impl Default for WebhookConfig {
    fn default() -> WebhookConfig {
        WebhookConfig {
            max_attempts: 5,
            initial_backoff_ms: 500,
            timeout_ms: 5000,
            allowed_networks: Vec::new(),
            secret_rotation_grace_secs: 24 * 3600,
        }
    }
}

impl Config {
    /// The account every fresh server has.
    pub const DEMO_ACCOUNT: &'static str = "acct_demo";

    /// Parses a TOML document.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|error| error.to_string())
    }

    /// The configuration from a command line (as [`crate::cli::Cli`] parses
    /// it, environment variables included); `args` excludes the program name.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Config, String> {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(std::iter::once("messaging-api".to_owned()).chain(args))
            .map_err(|error| error.to_string())?;
        cli.config()
    }

    /// Checks what serde cannot: plans that accounts name exist, limits are positive.
    pub fn validate(&self) -> Result<(), String> {
        for (name, plan) in &self.plans {
            if plan.per_second == 0 || plan.burst == Some(0) || plan.daily == Some(0) {
                return Err(format!("plan {name:?}: limits must be positive"));
            }
        }
        for account in &self.accounts {
            if !self.plans.contains_key(&account.plan)
                && !["free", "premium", "enterprise"].contains(&account.plan.as_str())
            {
                return Err(format!(
                    "account {:?} names unknown plan {:?}",
                    account.id, account.plan
                ));
            }
        }
        if self.failed_auth_per_minute == 0 {
            return Err("failed_auth_per_minute must be at least 1".into());
        }
        if self.rotation_age_days == 0 {
            return Err("rotation_age_days must be at least 1".into());
        }
        if self.max_keys_per_account == 0 {
            return Err("max_keys_per_account must be at least 1".into());
        }
        let server = &self.server;
        if server.header_read_timeout_secs == 0
            || server.idle_timeout_secs == 0
            || server.request_timeout_secs == 0
            || server.max_connections == 0
            || server.database_timeout_ms == 0
        {
            return Err("server timeouts and max_connections must be positive".into());
        }
        if server.max_header_bytes < 8192 {
            return Err("server.max_header_bytes must be at least 8192".into());
        }
        if self.retention.max_age_days == 0
            || self.retention.max_messages == 0
            || self.retention.prune_interval_secs == 0
            || self.retention.audit_max_age_days == 0
        {
            return Err("retention limits must be positive".into());
        }
        if self.dashboard.session_ttl_secs == 0 || self.dashboard.idle_timeout_secs == 0 {
            return Err("dashboard session limits must be positive".into());
        }
        Ok(())
    }

    /// The rotation grace period.
    pub fn rotation_grace(&self) -> Duration {
        Duration::from_secs(self.rotation_grace_secs)
    }

    /// How long a rotated webhook secret keeps signing deliveries.
    pub fn webhook_secret_grace(&self) -> Duration {
        Duration::from_secs(self.webhooks.secret_rotation_grace_secs)
    }

    /// The age past which a key is due for rotation.
    pub fn rotation_age(&self) -> Duration {
        Duration::from_secs(self.rotation_age_days.saturating_mul(86_400))
    }

    /// The configured account, if any.
    pub fn account(&self, id: &str) -> Option<&AccountConfig> {
        self.accounts.iter().find(|account| account.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_listen_on_loopback_8080() {
        let config = Config::from_args(Vec::<String>::new()).unwrap();
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.admin_listen, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(config.rotation_age(), Duration::from_secs(90 * 86_400));
        assert!(!config.metrics_key_id_labels);
        assert_eq!(config.max_keys_per_account, 10);
    }

    #[test]
    fn flags_and_toml_combine() {
        let dir = std::env::temp_dir().join(format!("messaging-api-config-{}", std::process::id()));
        std::fs::write(
            &dir,
            r#"
            max_keys_per_account = 3
            [plans.tiny]
            per_second = 2
            daily = 5
            [[accounts]]
            id = "acct_demo"
            plan = "tiny"
            "#,
        )
        .unwrap();
        let args = [
            "--listen=127.0.0.1:9000",
            "--config",
            dir.to_str().unwrap(),
            "--allow-private-webhook-urls",
        ];
        let config = Config::from_args(args.map(String::from)).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.max_keys_per_account, 3);
        assert_eq!(
            config.plans["tiny"],
            PlanConfig {
                per_second: 2,
                burst: None,
                daily: Some(5)
            }
        );
        assert_eq!(config.account("acct_demo").unwrap().plan, "tiny");
        assert!(config.allow_private_webhook_urls);
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let config = Config::from_toml(include_str!("../config.example.toml")).unwrap();
        config.validate().unwrap();
        assert_eq!(config.account(Config::DEMO_ACCOUNT).unwrap().plan, "startup");
        assert_eq!(
            config.plans["startup"],
            PlanConfig {
                per_second: 20,
                burst: Some(40),
                daily: Some(10_000)
            }
        );
    }

    #[test]
    fn debug_output_hides_webhook_secrets() {
        let config = Config::from_toml(
            "[[accounts]]\nid = 'a'\nwebhook_url = 'https://x.example/'\nwebhook_secret = 'whsec_topsecret'",
        )
        .unwrap();
        let printed = format!("{config:?}");
        assert!(
            printed.contains("<redacted>") && !printed.contains("topsecret"),
            "{printed}"
        );
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        assert!(Config::from_args(["--bogus".to_string()])
            .unwrap_err()
            .contains("unexpected argument '--bogus'"));
        assert!(Config::from_args(["--listen".to_string()])
            .unwrap_err()
            .contains("a value is required for '--listen <ADDR>'"));
        assert!(Config::from_toml("max_keys_per_account = 'x'").is_err());
        let unknown_plan = Config::from_toml("[[accounts]]\nid = 'a'\nplan = 'gold'").unwrap();
        assert!(unknown_plan.validate().unwrap_err().contains("unknown plan"));
    }

    #[test]
    fn webhook_networks_parse_and_bad_ones_are_refused() {
        let config = Config::from_toml("[webhooks]\nallowed_networks = ['127.0.0.0/8', '::1/128']").unwrap();
        let networks: Vec<String> = config
            .webhooks
            .allowed_networks
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(networks, ["127.0.0.0/8", "::1/128"]);
        assert!(Config::default().webhooks.allowed_networks.is_empty());
        assert!(Config::from_toml("[webhooks]\nallowed_networks = ['loopback']").is_err());
    }
}
