//! [`BearerAuthLayer`]: authenticates `Authorization: Bearer <key>` against
//! a [`KeyStore`] and puts the key's [`Principal`] in request extensions.
//!
//! For every request the layer reads one bearer token, hashes it with
//! SHA-256, looks the hash up, re-checks the stored hash in constant time,
//! and checks the key is neither revoked (a rotated key keeps working until
//! its grace period ends) nor expired. Then:
//!
//! | outcome | response |
//! |---|---|
//! | no `Authorization` header, several, another scheme, or `Bearer` alone | 401 `UNAUTHORIZED`, `WWW-Authenticate: Bearer` |
//! | a token too long or with characters outside visible ASCII | 401 `UNAUTHORIZED`, `WWW-Authenticate: Bearer error="invalid_token"` |
//! | an unknown, revoked or expired key (or one failing a [required checksum](BearerAuthLayer::require_checksum)) | the same 401 with one message for all, so nobody learns whether a key exists |
//! | a read-only key on a method other than `GET`/`HEAD` | 403 `FORBIDDEN`, `WWW-Authenticate: Bearer error="insufficient_scope"` |
//! | the key store fails | 503 `SERVICE_UNAVAILABLE` (and a `tracing` warning) |
//! | with [`limit_failures`](BearerAuthLayer::limit_failures): an address past its failed-authentication limit | 429 `RATE_LIMITED` with `Retry-After`, before the header is read |
//! | a working key | the inner service, with the `Principal` in extensions |
//!
//! It also records when each key was last used, at most once per
//! [`last_use_resolution`](BearerAuthLayer::last_use_resolution).
//! Per-route permissions are [`RequireScopeLayer`](crate::RequireScopeLayer)'s job.
//!
//! The service is a [`Gate`] over the [`Authenticate`] policy: a store
//! that answers at once (memory, a cache hit) is judged inside `call`, with
//! nothing boxed; a lookup still pending is finished by the response future.
//!
//! ```
//! use http::{header::AUTHORIZATION, Request, Response, StatusCode};
//! use http_body_util::Full;
//! use bytes::Bytes;
//! use tollgate_auth::{BearerAuthLayer, KeyManager, NewKey};
//! use tollgate_core::keys::MemoryKeyStore;
//! use tollgate_core::{KeyKind, Principal};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = MemoryKeyStore::new();
//! let created = KeyManager::new(store.clone())
//!     .create(NewKey::new("acct_1", KeyKind::Production).label("Production Server"))
//!     .await
//!     .unwrap();
//!
//! let service = ServiceBuilder::new()
//!     .layer(BearerAuthLayer::new(store))
//!     .service(service_fn(|request: Request<Full<Bytes>>| async move {
//!         let principal = request.extensions().get::<Principal>().expect("set by the layer");
//!         let body = format!("hello {}", principal.account_id());
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(body))))
//!     }));
//!
//! let request = Request::get("/v1/messages")
//!     .header(AUTHORIZATION, format!("Bearer {}", created.secret.expose_secret()))
//!     .body(Full::default())
//!     .unwrap();
//! let response = service.clone().oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! let anonymous = Request::get("/v1/messages").body(Full::default()).unwrap();
//! let response = service.oneshot(anonymous).await.unwrap();
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.headers()["www-authenticate"], "Bearer");
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use tollgate_core::alerts::Alerts;
use tollgate_core::gate::{Gate, Policy, Verdict};
use tollgate_core::keys::{KeyHash, KeyRecord, KeyStore};
use tollgate_core::metrics::{self, Layer as Metered};
use tollgate_core::{ClientIp, MaybeReady, Principal, Rejection, Renderer, SharedClock, StoreError};
use tower_layer::Layer;

use crate::failures::FailedAuthLimit;
use crate::key_format::KeyFormat;
use crate::parse::{bearer_token_bytes, DEFAULT_MAX_TOKEN_LEN};
use crate::rejections;
use crate::secret::hash_key_bytes;

/// How often, at most, the layer records that a key was used, by default.
pub const DEFAULT_LAST_USE_RESOLUTION: Duration = Duration::from_secs(60);

/// The service made by [`BearerAuthLayer`]: `S` behind [`Authenticate`].
pub type BearerAuth<S> = Gate<S, Authenticate>;

/// Authenticates requests by bearer API key. See the [module docs](self).
#[derive(Clone)]
pub struct BearerAuthLayer {
    state: Arc<AuthState>,
}

/// The policy of [`BearerAuthLayer`]: who is calling, judged from the
/// bearer key and the key store's record of it. Request bodies must be
/// `Send + 'static` (hyper's, axum's and tonic's are): a lookup still
/// pending carries the request along.
#[derive(Clone)]
pub struct Authenticate {
    state: Arc<AuthState>,
}

#[derive(Clone)]
struct AuthState {
    store: Arc<dyn KeyStore>,
    clock: SharedClock,
    renderer: Renderer,
    max_token_len: usize,
    enforce_key_kind: bool,
    last_use_resolution: Duration,
    checksum: Option<KeyFormat>,
    failures: Option<FailedAuthLimit>,
    alerts: Option<Alerts>,
}

impl BearerAuthLayer {
    /// Authenticates against `store`, with the defaults: tokens up to 256
    /// characters, the key-kind rule enforced, last use recorded at most
    /// once a minute, no checksum required, the system clock, the seed's JSON.
    pub fn new(store: impl KeyStore) -> BearerAuthLayer {
        BearerAuthLayer::from_shared(Arc::new(store))
    }

    /// Like [`BearerAuthLayer::new`], for a store already shared.
    pub fn from_shared(store: Arc<dyn KeyStore>) -> BearerAuthLayer {
        BearerAuthLayer {
            state: Arc::new(AuthState {
                store,
                clock: SharedClock::default(),
                renderer: Renderer::default(),
                max_token_len: DEFAULT_MAX_TOKEN_LEN,
                enforce_key_kind: true,
                last_use_resolution: DEFAULT_LAST_USE_RESOLUTION,
                checksum: None,
                failures: None,
                alerts: None,
            }),
        }
    }

    fn state_mut(&mut self) -> &mut AuthState {
        // Builders run before the layer is shared; this clones only if it was.
        Arc::make_mut(&mut self.state)
    }

    /// The longest token accepted; longer ones are refused before hashing.
    pub fn max_token_len(mut self, max: usize) -> Self {
        self.state_mut().max_token_len = max;
        self
    }

    /// Whether a read-only key is refused (403) on methods other than
    /// `GET` and `HEAD` (default `true`). Turn it off only when every route
    /// checks scopes itself.
    pub fn enforce_key_kind(mut self, enforce: bool) -> Self {
        self.state_mut().enforce_key_kind = enforce;
        self
    }

    /// Records a key's use only when its recorded last use is at least this
    /// old (default one minute), so busy keys do not write on every request.
    pub fn last_use_resolution(mut self, resolution: Duration) -> Self {
        self.state_mut().last_use_resolution = resolution;
        self
    }

    /// Refuses tokens that fail `format`'s checksum before any store lookup,
    /// so garbage costs no round trip. Off by default because imported keys
    /// (a bootstrap key from an environment variable) may have any format.
    pub fn require_checksum(mut self, format: KeyFormat) -> Self {
        self.state_mut().checksum = Some(format);
        self
    }

    /// Counts the 401s this layer gives per client address (the
    /// [`ClientIp`] extension that tollgate-ip's `ClientIpLayer` sets) and,
    /// past `limit`, answers that address 429 `RATE_LIMITED` with
    /// `Retry-After` before reading its key, so no hash and no lookup is
    /// spent on it until its window ends. Off by default; a request without
    /// a `ClientIp` is never limited. 403s and 503s are not counted.
    pub fn limit_failures(mut self, limit: FailedAuthLimit) -> Self {
        self.state_mut().failures = Some(limit);
        self
    }

    /// Raises alerts: a burst of 401s from one client address, a key used
    /// from a network it has not used in 30 days, a key past its rotation
    /// age still in use. Off by default; raising costs the request path a
    /// check, and at most a queued alert.
    pub fn alerts(mut self, alerts: Alerts) -> Self {
        self.state_mut().alerts = Some(alerts);
        self
    }

    /// The clock that decides expiry, revocation and last use. Expiry and
    /// revocation are judged on its exact time; last use is recorded with
    /// its [`approximate_now`](SharedClock::approximate_now), within about a
    /// millisecond on the system clock and exact on any other.
    pub fn clock(mut self, clock: impl Into<SharedClock>) -> Self {
        self.state_mut().clock = clock.into();
        self
    }

    /// How refusals are rendered.
    pub fn renderer(mut self, renderer: Renderer) -> Self {
        self.state_mut().renderer = renderer;
        self
    }
}

impl<S> Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Gate::new(
            inner,
            Authenticate {
                state: self.state.clone(),
            },
        )
    }
}

impl fmt::Debug for BearerAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.state.fmt(f)
    }
}

impl fmt::Debug for Authenticate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.state.fmt(f)
    }
}

// Configuration only: never the store's contents.
impl fmt::Debug for AuthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuth")
            .field("max_token_len", &self.max_token_len)
            .field("enforce_key_kind", &self.enforce_key_kind)
            .field("last_use_resolution", &self.last_use_resolution)
            .field("checksum", &self.checksum)
            .field("failures", &self.failures)
            .field("alerts", &self.alerts.is_some())
            .finish_non_exhaustive()
    }
}

type Decision<B> = MaybeReady<Verdict<B, (), Full<Bytes>>>;

impl<B: Send + 'static> Policy<B> for Authenticate {
    type Body = B;
    type Finish = ();
    type Answer = Full<Bytes>;

    fn decide(&self, request: Request<B>) -> Decision<B> {
        let state = &self.state;
        if let Some(retry_after) = state.limited(&request) {
            metrics::rate_limited(Metered::Auth, None);
            let rejection = FailedAuthLimit::rejection(retry_after);
            return MaybeReady::ready(Verdict::Respond(state.renderer.render(&rejection, request.headers())));
        }
        let token = match bearer_token_bytes(request.headers(), state.max_token_len) {
            Ok(token) => token,
            Err(error) => return state.refuse(rejections::unreadable(error), &request),
        };
        if let Some(format) = &state.checksum {
            if !std::str::from_utf8(token).is_ok_and(|token| format.is_well_formed(token)) {
                return state.refuse(rejections::invalid_key(), &request);
            }
        }
        let hash = hash_key_bytes(token);
        // A store that answers in-process (memory, a cache hit) is judged
        // here, with nothing boxed; a pending lookup is judged when it ends.
        match state.store.find_by_hash(&hash).into_ready() {
            Ok(found) => state.admit(found, &hash, request),
            Err(lookup) => {
                let state = self.state.clone();
                lookup.then(move |found| state.admit(found, &hash, request))
            }
        }
    }
}

// A record's verdict, and its use to record (`None`: not due).
struct Judgement {
    outcome: Result<Principal, &'static Rejection>,
    last_use: Option<LastUse>,
}

impl Judgement {
    fn refused(rejection: &'static Rejection) -> Judgement {
        Judgement {
            outcome: Err(rejection),
            last_use: None,
        }
    }
}

// Due at most once per `last_use_resolution` per key, so the copied id is rare.
struct LastUse {
    key_id: String,
    at: SystemTime,
}

impl AuthState {
    // Lets the request through with the key's principal or refuses it,
    // once the key's last use is written if one is due. Inlined into
    // `decide`, so the request is moved once less on the hot path.
    #[inline]
    fn admit<B: Send + 'static>(
        &self,
        found: Result<Option<Arc<KeyRecord>>, StoreError>,
        hash: &KeyHash,
        mut request: Request<B>,
    ) -> Decision<B> {
        let client_ip = request.extensions().get::<ClientIp>().map(|ip| ip.ip());
        let Judgement { outcome, last_use } = self.judge_found(found, hash, request.method(), client_ip);
        let verdict = match outcome {
            Ok(principal) => {
                metrics::allowed(Metered::Auth, principal.key_id());
                request.extensions_mut().insert(principal);
                Verdict::Proceed(request, ())
            }
            Err(rejection) => {
                self.count_failure(rejection, &request);
                Verdict::Respond(self.renderer.render(rejection, request.headers()))
            }
        };
        let Some(LastUse { key_id, at }) = last_use else {
            return MaybeReady::ready(verdict);
        };
        // The request waits for the write, so it finishes with the request;
        // that happens at most once per key per `last_use_resolution`. A
        // failure only loses a timestamp, so the request goes on.
        match self.store.record_last_use(&key_id, at).into_ready() {
            Ok(recorded) => {
                log_last_use_failure(&key_id, recorded);
                MaybeReady::ready(verdict)
            }
            Err(write) => write.map(move |recorded| {
                log_last_use_failure(&key_id, recorded);
                verdict
            }),
        }
    }

    // What a lookup's answer means for a request with `method`.
    fn judge_found(
        &self,
        found: Result<Option<Arc<KeyRecord>>, StoreError>,
        hash: &KeyHash,
        method: &Method,
        client_ip: Option<std::net::IpAddr>,
    ) -> Judgement {
        match found {
            Ok(Some(record)) => self.judge(&record, hash, method, client_ip),
            Ok(None) => Judgement::refused(rejections::invalid_key()),
            Err(error) => {
                tracing::warn!(%error, "API key lookup failed; refusing the request");
                Judgement::refused(rejections::store_unavailable())
            }
        }
    }

    // What a record found for `hash` means for a request with `method`, and
    // whether its use is due to be recorded.
    fn judge(
        &self,
        record: &KeyRecord,
        hash: &KeyHash,
        method: &Method,
        client_ip: Option<std::net::IpAddr>,
    ) -> Judgement {
        // A store keyed by something else than the full hash (a cache by
        // prefix, a misbehaving backend) must not let a near miss in.
        if record.hash != *hash {
            tracing::warn!(key_id = record.id(), "key store returned a record with another hash");
            return Judgement::refused(rejections::invalid_key());
        }
        // Revocation and expiry are ordered exactly against the system clock
        // (a key revoked a microsecond ago is refused); most keys have neither.
        if (record.revoked_at.is_some() || record.expires_at.is_some()) && !record.is_valid_at(self.clock.now()) {
            return Judgement::refused(rejections::invalid_key());
        }
        // Last use is bookkeeping at a resolution of a minute: the cheaper
        // reading will do.
        let now = self.clock.approximate_now();
        if let Some(alerts) = &self.alerts {
            alerts.key_used(record, client_ip, now);
        }
        // Recorded even when the method is then refused: the key was used.
        let last_use = self.use_is_due(record, now).then(|| LastUse {
            key_id: record.id().to_owned(),
            at: now,
        });
        let outcome = if self.enforce_key_kind && !record.principal.kind().allows_method(method) {
            metrics::forbidden(Metered::Auth, Some(record.id()));
            Err(rejections::read_only())
        } else {
            Ok(record.principal.clone())
        };
        Judgement { outcome, last_use }
    }

    fn use_is_due(&self, record: &KeyRecord, now: SystemTime) -> bool {
        match record.last_used_at {
            None => true,
            // A recorded use in the future (the clock stepped back) is not due.
            Some(last) => now
                .duration_since(last)
                .is_ok_and(|elapsed| elapsed >= self.last_use_resolution),
        }
    }

    // A refusal made from the request's headers alone, before any lookup.
    fn refuse<B>(&self, rejection: &Rejection, request: &Request<B>) -> Decision<B> {
        self.count_failure(rejection, request);
        MaybeReady::ready(Verdict::Respond(self.renderer.render(rejection, request.headers())))
    }
}

impl AuthState {
    // How long the request's address must wait, if it is past its limit.
    fn limited<B>(&self, request: &Request<B>) -> Option<Duration> {
        let limit = self.failures.as_ref()?;
        let ip = *request.extensions().get::<ClientIp>()?;
        limit.retry_after(ip, || self.clock.now())
    }

    // Counts a 401 against the request's address; other refusals are not
    // failed authentications.
    // Also meters every refusal but 403 (metered where the key is known).
    fn count_failure<B>(&self, rejection: &Rejection, request: &Request<B>) {
        match rejection.status() {
            http::StatusCode::UNAUTHORIZED => metrics::unauthorized(Metered::Auth),
            http::StatusCode::SERVICE_UNAVAILABLE => metrics::store_unavailable(Metered::Auth),
            _ => {}
        }
        if rejection.status() != http::StatusCode::UNAUTHORIZED {
            return;
        }
        let Some(ip) = request.extensions().get::<ClientIp>() else {
            return;
        };
        if let Some(limit) = &self.failures {
            limit.record_failure(*ip, self.clock.now());
        }
        if let Some(alerts) = &self.alerts {
            alerts.auth_failure(ip.ip());
        }
    }
}

fn log_last_use_failure(key_id: &str, recorded: Result<(), StoreError>) {
    if let Err(error) = recorded {
        tracing::warn!(key_id, %error, "recording an API key's last use failed");
    }
}

// Service-level tests are long, so they live in `bearer/tests.rs`.
#[cfg(test)]
mod tests;
