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
use crate::messages::{random_base62, Message};
use crate::time::rfc3339;
use crate::webhooks::WebhookEndpoint;
use tollgate_core::alerts::Alert;

/// Decides whether a resolved address may be connected to.
pub type AddressFilter = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// One event to deliver.
#[derive(Debug, Clone)]
pub struct Event {
    /// The webhook id (`webhook-id`), unique per event.
    pub id: String,
    /// The receiver.
    pub url: String,
    /// The account's signing secret.
    pub secret: WebhookSecret,
    /// The exact JSON bytes that are signed and sent.
    pub body: Bytes,
}

impl Event {
    /// The `message.status` event for `message` as it is now:
    /// `{"type":"message.status","data":{"id","status","to","created_at"}}`,
    /// with a fresh `evt_…` id.
    pub fn message_status(message: &Message, to: &WebhookEndpoint) -> Result<Event, getrandom::Error> {
        let event = serde_json::json!({
            "type": "message.status",
            "data": {"id": message.id, "status": message.status, "to": message.to, "created_at": message.created_at},
        });
        Ok(Event {
            id: format!("evt_{}", random_base62(24)?),
            url: to.url.clone(),
            secret: to.secret.clone(),
            body: serde_json::to_vec(&event).expect("JSON values serialise").into(),
        })
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
        Ok(Some(Event {
            id: format!("evt_{}", random_base62(24)?),
            url: to.url.clone(),
            secret: to.secret.clone(),
            body: serde_json::to_vec(&event).expect("JSON values serialise").into(),
        }))
    }
}

/// Sends events. Clones share one connection pool.
#[derive(Clone)]
pub struct Deliverer {
    client: Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>,
    config: WebhookConfig,
    clock: SharedClock,
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
        Deliverer { client, config, clock }
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
        for attempt in 1..=self.config.max_attempts.max(1) {
            match self.attempt(&event).await {
                Ok(status) if status.is_success() => {
                    tracing::info!(webhook_id = %event.id, attempt, %status, "webhook delivered");
                    return true;
                }
                Ok(status) => tracing::warn!(webhook_id = %event.id, attempt, %status, "webhook refused"),
                Err(error) => tracing::warn!(webhook_id = %event.id, attempt, %error, "webhook delivery failed"),
            }
            if attempt < self.config.max_attempts {
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
        }
        tracing::error!(webhook_id = %event.id, attempts = self.config.max_attempts, "webhook abandoned");
        false
    }

    /// One attempt, no retry: true when the receiver answered 2xx. The
    /// outbox ([`crate::outbox`]) schedules retries itself.
    pub async fn attempt_once(&self, event: &Event, attempt: i64) -> bool {
        match self.attempt(event).await {
            Ok(status) if status.is_success() => {
                tracing::info!(webhook_id = %event.id, attempt, %status, "webhook delivered");
                true
            }
            Ok(status) => {
                tracing::warn!(webhook_id = %event.id, attempt, %status, "webhook refused");
                false
            }
            Err(error) => {
                tracing::warn!(webhook_id = %event.id, attempt, %error, "webhook delivery failed");
                false
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

    // Each attempt is signed afresh: Standard Webhooks receivers check the timestamp.
    fn signed_request(&self, event: &Event) -> Result<Request<Full<Bytes>>, String> {
        let timestamp = unix_secs(self.clock.now());
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(&event.url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "messaging-api-webhooks/1")
            .body(Full::new(event.body.clone()))
            .map_err(|error| error.to_string())?;
        for scheme in [Scheme::hex(), Scheme::standard_webhooks()] {
            let signer = Signer::new(scheme, event.secret.clone()).map_err(|error| error.to_string())?;
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
