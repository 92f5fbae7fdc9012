//! [`IdempotencyLayer`]: the settings, and the layer that applies them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use http::{Method, Uri};
use tollgate_core::gate::Gate;
use tollgate_core::idempotency::IdempotencyStore;
use tollgate_core::Renderer;
use tower_layer::Layer;

use crate::config::{Config, Requirement};
use crate::policy::Deduplicate;

/// The service made by [`IdempotencyLayer`]: `S` behind [`Deduplicate`].
/// It runs each keyed request once and replays its response to retries;
/// see the [crate documentation](crate) for the behaviour.
pub type Idempotency<S> = Gate<S, Deduplicate>;

/// Deduplicates requests by idempotency key: one execution per key, replays
/// of its response, 409 while it runs, 422 for another request under the
/// same key. See the [crate documentation](crate) for the whole behaviour.
///
/// Defaults: key header `X-Request-ID`; `POST` and `PATCH`; key optional;
/// requests without a [`Principal`](tollgate_core::Principal) pass through;
/// request and stored response bodies up to 1 MiB; responses kept 24 hours;
/// claims expire after 60 seconds; 5xx responses stored; `Retry-After: 1`
/// on 409; fail closed (503) when the store is down.
///
/// ```
/// use std::time::Duration;
/// use http::Method;
/// use tollgate_core::idempotency::MemoryIdempotencyStore;
/// use tollgate_idempotency::{IdempotencyLayer, IDEMPOTENCY_KEY, X_REQUEST_ID};
///
/// let layer = IdempotencyLayer::new(MemoryIdempotencyStore::new())
///     .headers([X_REQUEST_ID, IDEMPOTENCY_KEY])
///     .methods([Method::POST, Method::PUT, Method::PATCH])
///     .require_key_when(|method, uri| method == Method::POST && uri.path() == "/v1/messages")
///     .ttl(Duration::from_secs(12 * 3600));
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct IdempotencyLayer {
    config: Config,
}

impl IdempotencyLayer {
    /// A layer keeping keys and responses in `store`, with the defaults.
    pub fn new(store: impl IdempotencyStore) -> IdempotencyLayer {
        IdempotencyLayer::from_shared(Arc::new(store))
    }

    /// Like [`IdempotencyLayer::new`], for a store already shared.
    pub fn from_shared(store: Arc<dyn IdempotencyStore>) -> IdempotencyLayer {
        IdempotencyLayer {
            config: Config::new(store),
        }
    }

    /// Reads the key from this header only (default [`X_REQUEST_ID`](crate::X_REQUEST_ID)).
    pub fn header(self, name: HeaderName) -> Self {
        self.headers([name])
    }

    /// Reads the key from any of these headers, such as
    /// [`X_REQUEST_ID`](crate::X_REQUEST_ID) and [`IDEMPOTENCY_KEY`](crate::IDEMPOTENCY_KEY).
    /// A request may send several of them only if they carry the same key.
    /// The first one names the header in error messages. An empty list is
    /// ignored.
    pub fn headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        let names: Vec<HeaderName> = names.into_iter().collect();
        if !names.is_empty() {
            self.config.headers = names;
        }
        self
    }

    /// Deduplicates requests with these methods (default `POST` and `PATCH`);
    /// the others pass through untouched, their bodies not buffered.
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.config.methods = methods.into_iter().collect();
        self
    }

    /// Deduplicates only the requests (of the deduplicated methods) for
    /// which `predicate(method, uri)` holds; the others pass through
    /// untouched, their bodies not buffered, never refused for a missing key.
    ///
    /// Use it to keep out what must not be buffered, such as streaming gRPC
    /// methods (a bidirectional stream whose client waits for a reply before
    /// ending its requests would wait forever), or what gains nothing from
    /// deduplication:
    ///
    /// ```
    /// use tollgate_core::idempotency::MemoryIdempotencyStore;
    /// use tollgate_idempotency::IdempotencyLayer;
    ///
    /// let layer = IdempotencyLayer::new(MemoryIdempotencyStore::new())
    ///     .only_when(|_, uri| uri.path() == "/messaging.v1.Messaging/SendMessage");
    /// # let _ = layer;
    /// ```
    pub fn only_when(mut self, predicate: impl Fn(&Method, &Uri) -> bool + Send + Sync + 'static) -> Self {
        self.config.only_when = Some(Arc::new(predicate));
        self
    }

    /// Refuses requests of the deduplicated methods that carry no key, with
    /// 400 `IDEMPOTENCY_KEY_MISSING`. Requests the layer lets through
    /// untouched (other methods, excluded by [`only_when`](Self::only_when),
    /// no principal and no fallback scope) are never refused for it.
    pub fn require_key(mut self) -> Self {
        self.config.requirement = Requirement::Always;
        self
    }

    /// Refuses requests of the deduplicated methods that carry no key when
    /// `predicate(method, uri)` holds, with 400 `IDEMPOTENCY_KEY_MISSING`.
    pub fn require_key_when(mut self, predicate: impl Fn(&Method, &Uri) -> bool + Send + Sync + 'static) -> Self {
        self.config.requirement = Requirement::When(Arc::new(predicate));
        self
    }

    /// Deduplicates requests without a [`Principal`](tollgate_core::Principal)
    /// too, all in this one shared scope. Without it (the default) they pass
    /// through untouched: sharing a scope between callers who cannot be told
    /// apart lets one see another's response, so it is opt-in, for services
    /// that authenticate some other way.
    pub fn fallback_scope(mut self, scope: impl Into<Arc<str>>) -> Self {
        self.config.fallback_scope = Some(scope.into());
        self
    }

    /// The longest request body buffered (default 1 MiB); a longer one is
    /// refused with 413 `PAYLOAD_TOO_LARGE`, before reading it when its
    /// `Content-Length` says so.
    pub fn max_request_body(mut self, bytes: usize) -> Self {
        self.config.max_request_body = bytes;
        self
    }

    /// The longest response body stored (default 1 MiB), its trailers'
    /// names and values included. A longer response still reaches the
    /// client, whole, but is not stored: its claim is released, so a retry
    /// runs the request again.
    pub fn max_response_body(mut self, bytes: usize) -> Self {
        self.config.max_response_body = bytes;
        self
    }

    /// How long a response is replayed (default 24 hours).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.config.ttl = ttl;
        self
    }

    /// How long a claim holds its key when its holder never completes or
    /// releases it, because its instance crashed (default 60 seconds). Make
    /// it longer than the slowest handler: a claim that expires mid-request
    /// lets a retry run concurrently.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.config.lock_timeout = timeout;
        self
    }

    /// Whether 5xx responses are stored and replayed (default `true`, as
    /// Stripe does: the request may have had effects before failing). With
    /// `false`, a 5xx releases the claim and a retry runs again; so does a
    /// gRPC response whose `grpc-status` is a server failure (`UNKNOWN`,
    /// `DEADLINE_EXCEEDED`, `UNIMPLEMENTED`, `INTERNAL`, `UNAVAILABLE`,
    /// `DATA_LOSS`).
    pub fn store_server_errors(mut self, store: bool) -> Self {
        self.config.store_server_errors = store;
        self
    }

    /// The `Retry-After` of a 409 `IDEMPOTENCY_IN_PROGRESS` (default 1 s,
    /// whole seconds, at least 1).
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.config.retry_after = retry_after;
        self
    }

    /// When the store fails: `false` (the default) refuses with 503, `true`
    /// runs the request without deduplication. Either way it is logged.
    pub fn fail_open(mut self, fail_open: bool) -> Self {
        self.config.fail_open = fail_open;
        self
    }

    /// Renders refusals (default: the seed's JSON, gRPC statuses for gRPC).
    pub fn renderer(mut self, renderer: Renderer) -> Self {
        self.config.renderer = renderer;
        self
    }
}

impl fmt::Debug for IdempotencyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyLayer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = Idempotency<S>;

    fn layer(&self, inner: S) -> Idempotency<S> {
        Gate::new(inner, Deduplicate::new(Arc::new(self.config.clone())))
    }
}
