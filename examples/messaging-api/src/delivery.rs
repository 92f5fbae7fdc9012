//! Webhook delivery: `message.status` events — one for each status a live
//! message takes, `queued` then `sent`, in that order — POSTed to the
//! account's webhook URL in the background, signed twice — the seed's `X-Webhook-Signature`
//! (bare hex HMAC-SHA256 of the raw body) and Standard Webhooks headers — with
//! bounded retries and exponential backoff. A failing receiver never blocks
//! or fails the API request that caused the event.
//!
//! Connections go through a resolver that drops forbidden addresses, so a
//! host that passed the URL guard cannot be re-pointed at a private network
//! by DNS between the check and the delivery.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tollgate_core::unix_secs;
use tollgate_core::SharedClock;
use tollgate_webhook::{Scheme, Signer, WebhookSecret};

use crate::config::WebhookConfig;
use crate::history::{DeliveryHistory, DeliveryRecord, Outcome};
use crate::messages::{random_base62, Message};
use crate::time::rfc3339;
use crate::webhooks::{PreviousSecret, WebhookEndpoint};
use tollgate_core::alerts::Alert;

/// Decides whether a resolved address may be connected to.
pub type AddressFilter = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// One event to deliver.
#[derive(Debug, Clone)]
pub struct Event {
    /// The webhook id (`webhook-id`), unique per event.
    pub id: String,
    /// The account it is for (its delivery history).
    pub account_id: String,
    /// The receiver.
    pub url: String,
    /// The account's signing secret.
    pub secret: WebhookSecret,
    /// The secret a rotation replaced, signing too until its deadline.
    pub previous: Option<PreviousSecret>,
    /// The exact JSON bytes that are signed and sent.
    pub body: Bytes,
}

/// How one attempt went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver answered 2xx.
    Delivered(u16),
    /// The receiver answered something else.
    Refused(u16),
    /// No answer: connection, TLS or timeout.
    Failed,
}

impl Attempt {
    /// Whether the receiver took the event.
    pub fn is_delivered(self) -> bool {
        matches!(self, Attempt::Delivered(_))
    }

    /// The receiver's status, when it answered.
    pub fn status(self) -> Option<u16> {
        match self {
            Attempt::Delivered(status) | Attempt::Refused(status) => Some(status),
            Attempt::Failed => None,
        }
    }
}

impl Event {
    /// The event as `to` signs it now: its URL, secret and previous secret.
    pub fn for_endpoint(id: String, account_id: &str, to: &WebhookEndpoint, body: Bytes) -> Event {
        Event {
            id,
            account_id: account_id.to_owned(),
            url: to.url.clone(),
            secret: to.secret.clone(),
            previous: to.previous.clone(),
            body,
        }
    }

    /// The `message.status` event for `message` as it is now:
    /// `{"type":"message.status","data":{"id","status","to","created_at"}}`,
    /// with a fresh `evt_…` id.
    pub fn message_status(message: &Message, to: &WebhookEndpoint) -> Result<Event, getrandom::Error> {
        let event = serde_json::json!({
            "type": "message.status",
            "data": {"id": message.id, "status": message.status, "to": message.to, "created_at": message.created_at},
        });
        Ok(Event::for_endpoint(
            format!("evt_{}", random_base62(24)?),
            &message.account_id,
            to,
            serde_json::to_vec(&event).expect("JSON values serialise").into(),
        ))
    }
}

impl Event {
    /// The `key.alert` event for `alert`:
    /// `{"type":"key.alert","data":{"kind","key_id","account_id","at",…}}`,
    /// with the alert's own fields (`percent`, `limit` and `used` for a
    /// quota; `client_ip` and `network` for a new network; `created_at`
    /// for a rotation), and a fresh `evt_…` id. `None` for an alert about no
    /// key (a burst of failed authentications), which has no account to tell.
    pub fn key_alert(alert: &Alert, to: &WebhookEndpoint) -> Result<Option<Event>, getrandom::Error> {
        let (Some(key_id), Some(account_id)) = (alert.key_id(), alert.account_id()) else {
            return Ok(None);
        };
        let mut data = serde_json::json!({"kind": alert.kind(), "key_id": key_id, "account_id": account_id});
        let at = match alert {
            Alert::Quota {
                percent,
                limit,
                used,
                at,
                ..
            } => {
                data["percent"] = (*percent).into();
                data["limit"] = (*limit).into();
                data["used"] = (*used).into();
                *at
            }
            Alert::NewNetwork {
                client_ip, network, at, ..
            } => {
                data["client_ip"] = client_ip.to_string().into();
                data["network"] = network.to_string().into();
                *at
            }
            Alert::RotationDue { created_at, at, .. } => {
                data["created_at"] = rfc3339(*created_at).into();
                *at
            }
            Alert::AuthFailures { at, .. } => *at,
        };
        data["at"] = rfc3339(at).into();
        let event = serde_json::json!({"type": "key.alert", "data": data});
        Ok(Some(Event::for_endpoint(
            format!("evt_{}", random_base62(24)?),
            account_id,
            to,
            serde_json::to_vec(&event).expect("JSON values serialise").into(),
        )))
    }
}

/// Sends events. Clones share one connection pool.
#[derive(Clone)]
pub struct Deliverer {
    client: Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>,
    config: WebhookConfig,
    clock: SharedClock,
    history: Option<DeliveryHistory>,
}

impl Deliverer {
    /// A deliverer connecting only to addresses `allow` accepts.
    pub fn new(config: WebhookConfig, clock: SharedClock, allow: AddressFilter) -> Deliverer {
        let mut http = HttpConnector::new_with_resolver(GuardedResolver {
            inner: GaiResolver::new(),
            allow,
        });
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_millis(config.timeout_ms)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(https);
        Deliverer {
            client,
            config,
            clock,
            history: None,
        }
    }

    /// Records the outcome of each event [`deliver`](Deliverer::deliver)
    /// sends in `history` (the outbox records its own).
    pub fn history(mut self, history: DeliveryHistory) -> Deliverer {
        self.history = Some(history);
        self
    }

    /// Delivers in the background; returns at once.
    pub fn spawn(&self, event: Event) {
        let deliverer = self.clone();
        tokio::spawn(async move { deliverer.deliver(event).await });
    }

    /// Delivers in the background, one after the other in this order
    /// (each with its retries); returns at once.
    pub fn spawn_in_order(&self, events: Vec<Event>) {
        let deliverer = self.clone();
        tokio::spawn(async move {
            for event in events {
                deliverer.deliver(event).await;
            }
        });
    }

    /// Delivers with retries; true when the receiver answered 2xx.
    pub async fn deliver(&self, event: Event) -> bool {
        let mut backoff = Duration::from_millis(self.config.initial_backoff_ms);
        let attempts = self.config.max_attempts.max(1);
        for attempt in 1..=attempts {
            let outcome = self.attempt_once(&event, i64::from(attempt)).await;
            let outcome_name = match outcome {
                Attempt::Delivered(_) => Outcome::Delivered,
                _ if attempt == attempts => Outcome::Abandoned,
                _ => Outcome::Retrying,
            };
            self.record(&event, outcome_name, i64::from(attempt), outcome.status())
                .await;
            if outcome.is_delivered() {
                return true;
            }
            if attempt < attempts {
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
        }
        tracing::error!(webhook_id = %event.id, attempts = self.config.max_attempts, "webhook abandoned");
        false
    }

    async fn record(&self, event: &Event, outcome: Outcome, attempts: i64, status: Option<u16>) {
        if let Some(history) = &self.history {
            history
                .record(DeliveryRecord::of(event, outcome, attempts, status, self.clock.now()))
                .await;
        }
    }

    /// One attempt, no retry. The outbox ([`crate::outbox`]) schedules
    /// retries itself.
    pub async fn attempt_once(&self, event: &Event, attempt: i64) -> Attempt {
        match self.attempt(event).await {
            Ok(status) if status.is_success() => {
                tracing::info!(webhook_id = %event.id, attempt, %status, "webhook delivered");
                Attempt::Delivered(status.as_u16())
            }
            Ok(status) => {
                tracing::warn!(webhook_id = %event.id, attempt, %status, "webhook refused");
                Attempt::Refused(status.as_u16())
            }
            Err(error) => {
                tracing::warn!(webhook_id = %event.id, attempt, %error, "webhook delivery failed");
                Attempt::Failed
            }
        }
    }

    /// The configuration.
    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }

    async fn attempt(&self, event: &Event) -> Result<http::StatusCode, String> {
        let request = self.signed_request(event)?;
        let timeout = Duration::from_millis(self.config.timeout_ms);
        match tokio::time::timeout(timeout, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response.status()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }

    // Each attempt is signed afresh: Standard Webhooks receivers check the
    // timestamp. During a secret rotation's grace period the Standard
    // Webhooks header carries a signature by each secret (new first); the
    // seed's single-signature header is the new secret's.
    fn signed_request(&self, event: &Event) -> Result<Request<Full<Bytes>>, String> {
        let now = self.clock.now();
        let timestamp = unix_secs(now);
        let mut secrets = vec![event.secret.clone()];
        if let Some(previous) = event.previous.as_ref().filter(|previous| previous.until > now) {
            secrets.push(previous.secret.clone());
        }
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(&event.url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "messaging-api-webhooks/1")
            .body(Full::new(event.body.clone()))
            .map_err(|error| error.to_string())?;
        for scheme in [Scheme::hex(), Scheme::standard_webhooks()] {
            let signer = Signer::with_secrets(scheme, secrets.iter().cloned()).map_err(|error| error.to_string())?;
            let headers = signer
                .sign(&event.body, timestamp, &event.id)
                .map_err(|error| error.to_string())?;
            request.headers_mut().extend(headers);
        }
        Ok(request)
    }
}

/// Resolves with the system resolver, then keeps only allowed addresses.
#[derive(Clone)]
pub struct GuardedResolver {
    inner: GaiResolver,
    allow: AddressFilter,
}

impl tower::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow = self.allow.clone();
        let resolving = self.inner.call(name.clone());
        Box::pin(async move {
            let allowed: Vec<SocketAddr> = resolving.await?.filter(|addr| allow(addr.ip())).collect();
            if allowed.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("{name} resolves only to forbidden addresses"),
                ));
            }
            Ok(allowed.into_iter())
        })
    }
}
