//! What the layers report, through the [`metrics`](::metrics) facade: one
//! counter of requests by layer and outcome, store latency histograms, and
//! the alert pipeline's counters. Nothing is recorded until the application
//! installs a recorder (`metrics-exporter-prometheus`, or any other), and
//! then each report is one registry lookup of a key built at compile time.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | [`REQUESTS`] `tollgate_requests_total` | counter | `layer`, `outcome` (an [`Outcome`]), `reason` for `webhook_rejected`, `key_id` only [if enabled](set_key_id_labels) |
//! | [`STORE_DURATION`] `tollgate_store_duration_seconds` | histogram | `store` (`redis`, …), `operation` (`check`, `find_by_hash`, …) |
//! | [`ALERTS`] `tollgate_alerts_total` | counter | `kind` (see [`crate::alerts::Alert::kind`]) |
//! | [`ALERTS_DROPPED`] `tollgate_alerts_dropped_total` | counter | — |
//!
//! Label values come from fixed sets, so the number of series is bounded:
//! never a key's value, a path or an address. Key ids are unbounded in a
//! large deployment, so they are labels only when the application opts in
//! with [`set_key_id_labels`].
//!
//! Each layer reports one outcome per request it decides, with one call:
//!
//! ```
//! use tollgate_core::metrics::{self, Layer};
//!
//! metrics::allowed(Layer::Auth, "key_1");
//! metrics::unauthorized(Layer::Auth);
//! metrics::webhook_rejected("bad_signature");
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use ::metrics::Counter;

/// Requests by layer and outcome: a counter.
pub const REQUESTS: &str = "tollgate_requests_total";
/// Store operation latency in seconds: a histogram.
pub const STORE_DURATION: &str = "tollgate_store_duration_seconds";
/// Alerts handed to the sink, by kind: a counter.
pub const ALERTS: &str = "tollgate_alerts_total";
/// Alerts dropped because the sink's queue was full: a counter.
pub const ALERTS_DROPPED: &str = "tollgate_alerts_dropped_total";

static KEY_ID_LABELS: AtomicBool = AtomicBool::new(false);

/// Whether request counters carry a `key_id` label (default `false`).
/// Process-wide, like the recorder itself: set it once at start-up, next to
/// installing the recorder, when the number of keys is small enough for one
/// series per key and outcome. Key values are never labels.
pub fn set_key_id_labels(enabled: bool) {
    KEY_ID_LABELS.store(enabled, Ordering::Relaxed);
}

/// Whether [`set_key_id_labels`] is on.
pub fn key_id_labels() -> bool {
    KEY_ID_LABELS.load(Ordering::Relaxed)
}

static KEEP_HANDLES: AtomicBool = AtomicBool::new(false);

const LAYERS: usize = Layer::Webhook as usize + 1;
const OUTCOMES: usize = Outcome::StoreUnavailable as usize + 1;

// One request counter per layer and outcome, taken from the recorder at its
// first use once [`keep_handles`] is on.
static HANDLES: [OnceLock<Counter>; LAYERS * OUTCOMES] = [const { OnceLock::new() }; LAYERS * OUTCOMES];

/// Keeps each request counter's handle from its first use on, so that a
/// report is an atomic add instead of a lookup in the recorder's registry:
/// with `metrics-exporter-prometheus`, a lookup is about 480 instructions
/// and an allocation per report, and a stack of layers makes up to five
/// reports per request (figures in BENCHMARKS.md).
///
/// Process-wide and for good, like the recorder itself: call it once at
/// start-up, right after installing the global recorder. A handle belongs
/// to the recorder that was current at the counter's first use, so do not
/// combine this with local recorders (`metrics::with_local_recorder`).
/// Counters labelled with key ids ([`set_key_id_labels`]) are looked up
/// each time, as before.
pub fn keep_handles() {
    KEEP_HANDLES.store(true, Ordering::Relaxed);
}

/// The layer reporting an outcome: the `layer` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// Bearer authentication (`auth`).
    Auth,
    /// The IP allowlist (`ip`).
    Ip,
    /// Rate limits and daily quotas (`rate_limit`).
    RateLimit,
    /// Idempotency (`idempotency`).
    Idempotency,
    /// Signed webhook verification (`webhook`).
    Webhook,
}

impl Layer {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Layer::Auth => "auth",
            Layer::Ip => "ip",
            Layer::RateLimit => "rate_limit",
            Layer::Idempotency => "idempotency",
            Layer::Webhook => "webhook",
        }
    }
}

/// What a layer decided about a request: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Let through (`allowed`).
    Allowed,
    /// 401: no, unreadable, unknown, revoked or expired key (`unauthorized`).
    Unauthorized,
    /// 403: the key may not do this (`forbidden`).
    Forbidden,
    /// 403: the client address is not in an allowlist (`ip_denied`).
    IpDenied,
    /// 429: the per-second limit, or too many failed authentications (`rate_limited`).
    RateLimited,
    /// 429: the daily quota is spent (`daily_quota_exhausted`).
    DailyQuotaExhausted,
    /// A stored response replayed (`idempotent_replay`).
    IdempotentReplay,
    /// 409/422: the idempotency key is in use or was used for another request (`idempotency_conflict`).
    IdempotencyConflict,
    /// A webhook refused; the `reason` label says why (`webhook_rejected`).
    WebhookRejected,
    /// 503: a store failed (`store_unavailable`).
    StoreUnavailable,
}

impl Outcome {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Forbidden => "forbidden",
            Outcome::IpDenied => "ip_denied",
            Outcome::RateLimited => "rate_limited",
            Outcome::DailyQuotaExhausted => "daily_quota_exhausted",
            Outcome::IdempotentReplay => "idempotent_replay",
            Outcome::IdempotencyConflict => "idempotency_conflict",
            Outcome::WebhookRejected => "webhook_rejected",
            Outcome::StoreUnavailable => "store_unavailable",
        }
    }
}

// One counter increment with the name and every label a literal, so the
// macro builds the key once, statically, and the recorder's lookup hashes
// nothing new. The name is spelled out because `metrics` makes a static key
// only from literals: with the `REQUESTS` constant it built and hashed the
// key on every request (about 220 of 516 instructions). The
// `key_id` variant allocates, and exists only for those who opted in.
macro_rules! count {
    ($layer:expr, $outcome:literal, $key_id:expr) => {{
        let key_id: Option<&str> = $key_id;
        match key_id {
            Some(key_id) if key_id_labels() => {
                ::metrics::counter!("tollgate_requests_total", "layer" => $layer.as_str(), "outcome" => $outcome, "key_id" => key_id.to_owned())
                    .increment(1)
            }
            _ => match $layer {
                Layer::Auth => ::metrics::counter!("tollgate_requests_total", "layer" => "auth", "outcome" => $outcome).increment(1),
                Layer::Ip => ::metrics::counter!("tollgate_requests_total", "layer" => "ip", "outcome" => $outcome).increment(1),
                Layer::RateLimit => {
                    ::metrics::counter!("tollgate_requests_total", "layer" => "rate_limit", "outcome" => $outcome).increment(1)
                }
                Layer::Idempotency => {
                    ::metrics::counter!("tollgate_requests_total", "layer" => "idempotency", "outcome" => $outcome).increment(1)
                }
                Layer::Webhook => ::metrics::counter!("tollgate_requests_total", "layer" => "webhook", "outcome" => $outcome).increment(1),
            },
        }
    }};
}

/// Counts one request of `layer` with `outcome`; `key_id` becomes a label
/// only when [`set_key_id_labels`] is on. The per-outcome functions below
/// are shorthands for this one.
pub fn request(layer: Layer, outcome: Outcome, key_id: Option<&str>) {
    if KEEP_HANDLES.load(Ordering::Relaxed) && (key_id.is_none() || !key_id_labels()) {
        return HANDLES[layer as usize * OUTCOMES + outcome as usize]
            .get_or_init(|| ::metrics::counter!(REQUESTS, "layer" => layer.as_str(), "outcome" => outcome.as_str()))
            .increment(1);
    }
    match outcome {
        Outcome::Allowed => count!(layer, "allowed", key_id),
        Outcome::Unauthorized => count!(layer, "unauthorized", key_id),
        Outcome::Forbidden => count!(layer, "forbidden", key_id),
        Outcome::IpDenied => count!(layer, "ip_denied", key_id),
        Outcome::RateLimited => count!(layer, "rate_limited", key_id),
        Outcome::DailyQuotaExhausted => count!(layer, "daily_quota_exhausted", key_id),
        Outcome::IdempotentReplay => count!(layer, "idempotent_replay", key_id),
        Outcome::IdempotencyConflict => count!(layer, "idempotency_conflict", key_id),
        Outcome::WebhookRejected => count!(layer, "webhook_rejected", key_id),
        Outcome::StoreUnavailable => count!(layer, "store_unavailable", key_id),
    }
}

/// A request `layer` let through, made with `key_id`.
#[inline]
pub fn allowed(layer: Layer, key_id: &str) {
    request(layer, Outcome::Allowed, Some(key_id));
}

/// A request `layer` let through without a key (a public route).
#[inline]
pub fn allowed_anonymous(layer: Layer) {
    request(layer, Outcome::Allowed, None);
}

/// A 401.
#[inline]
pub fn unauthorized(layer: Layer) {
    request(layer, Outcome::Unauthorized, None);
}

/// A 403 for a key not allowed to do this.
#[inline]
pub fn forbidden(layer: Layer, key_id: Option<&str>) {
    request(layer, Outcome::Forbidden, key_id);
}

/// A 403 from the IP allowlist.
#[inline]
pub fn ip_denied(key_id: Option<&str>) {
    request(Layer::Ip, Outcome::IpDenied, key_id);
}

/// A 429 from a per-second (burst) limit.
#[inline]
pub fn rate_limited(layer: Layer, key_id: Option<&str>) {
    request(layer, Outcome::RateLimited, key_id);
}

/// A 429 from the daily quota.
#[inline]
pub fn daily_quota_exhausted(key_id: Option<&str>) {
    request(Layer::RateLimit, Outcome::DailyQuotaExhausted, key_id);
}

/// A stored response replayed for a repeated idempotency key.
#[inline]
pub fn idempotent_replay(key_id: Option<&str>) {
    request(Layer::Idempotency, Outcome::IdempotentReplay, key_id);
}

/// An idempotency key in use, or reused for another request.
#[inline]
pub fn idempotency_conflict(key_id: Option<&str>) {
    request(Layer::Idempotency, Outcome::IdempotencyConflict, key_id);
}

/// A webhook refused for `reason`, one of a fixed set the webhook layer
/// names (`missing_signature`, `bad_signature`, `expired`, `replayed`, …).
#[inline]
pub fn webhook_rejected(reason: &'static str) {
    ::metrics::counter!("tollgate_requests_total", "layer" => "webhook", "outcome" => "webhook_rejected", "reason" => reason)
        .increment(1);
}

/// A 503 because `layer`'s store failed.
#[inline]
pub fn store_unavailable(layer: Layer) {
    request(layer, Outcome::StoreUnavailable, None);
}

/// How long one operation of a store took, successful or not.
pub fn store_latency(store: &'static str, operation: &'static str, elapsed: Duration) {
    ::metrics::histogram!(STORE_DURATION, "store" => store, "operation" => operation).record(elapsed.as_secs_f64());
}

/// An alert of `kind` handed to the sink.
pub fn alert_sent(kind: &'static str) {
    ::metrics::counter!(ALERTS, "kind" => kind).increment(1);
}

/// An alert dropped because the queue to the sink was full.
pub fn alert_dropped() {
    ::metrics::counter!(ALERTS_DROPPED).increment(1);
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use metrics_util::{CompositeKey, MetricKind};

    use super::*;

    fn counters(
        snapshot: Vec<(
            CompositeKey,
            Option<metrics::Unit>,
            Option<metrics::SharedString>,
            DebugValue,
        )>,
    ) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = snapshot
            .into_iter()
            .filter(|(key, ..)| key.kind() == MetricKind::Counter)
            .map(|(key, _, _, value)| {
                let key = key.key();
                let mut labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
                labels.sort();
                let DebugValue::Counter(count) = value else {
                    unreachable!()
                };
                (format!("{}{{{}}}", key.name(), labels.join(",")), count)
            })
            .collect();
        out.sort();
        out
    }

    // The key-id switch is process-wide: tests that count keyed outcomes
    // take turns.
    static SWITCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn outcomes_are_counted_by_layer_with_bounded_labels() {
        let _switch = SWITCH.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            allowed(Layer::Auth, "key_1");
            allowed(Layer::Auth, "key_2");
            unauthorized(Layer::Auth);
            ip_denied(Some("key_1"));
            daily_quota_exhausted(Some("key_1"));
            webhook_rejected("bad_signature");
            store_unavailable(Layer::RateLimit);
            alert_dropped();
        });
        assert_eq!(
            counters(snapshotter.snapshot().into_vec()),
            [
                ("tollgate_alerts_dropped_total{}".to_owned(), 1),
                ("tollgate_requests_total{layer=auth,outcome=allowed}".to_owned(), 2),
                ("tollgate_requests_total{layer=auth,outcome=unauthorized}".to_owned(), 1),
                ("tollgate_requests_total{layer=ip,outcome=ip_denied}".to_owned(), 1),
                (
                    "tollgate_requests_total{layer=rate_limit,outcome=daily_quota_exhausted}".to_owned(),
                    1
                ),
                (
                    "tollgate_requests_total{layer=rate_limit,outcome=store_unavailable}".to_owned(),
                    1
                ),
                (
                    "tollgate_requests_total{layer=webhook,outcome=webhook_rejected,reason=bad_signature}".to_owned(),
                    1
                ),
            ]
        );
    }

    #[test]
    fn key_ids_are_labels_only_when_enabled() {
        let _switch = SWITCH.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            set_key_id_labels(true);
            allowed(Layer::RateLimit, "key_1");
            set_key_id_labels(false);
            allowed(Layer::RateLimit, "key_1");
        });
        assert_eq!(
            counters(snapshotter.snapshot().into_vec()),
            [
                (
                    "tollgate_requests_total{key_id=key_1,layer=rate_limit,outcome=allowed}".to_owned(),
                    1
                ),
                (
                    "tollgate_requests_total{layer=rate_limit,outcome=allowed}".to_owned(),
                    1
                ),
            ]
        );
    }

    #[test]
    fn store_latency_is_a_histogram_per_operation() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            store_latency("redis", "check", Duration::from_millis(2));
        });
        let snapshot = snapshotter.snapshot().into_vec();
        let (key, _, _, value) = &snapshot[0];
        assert_eq!(key.kind(), MetricKind::Histogram);
        assert_eq!(key.key().name(), STORE_DURATION);
        assert_eq!(value, &DebugValue::Histogram(vec![0.002.into()]));
    }
}
