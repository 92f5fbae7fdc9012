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
//! | a working key | the inner service, with the `Principal` in extensions |
//!
//! It also records when each key was last used, at most once per
//! [`last_use_resolution`](BearerAuthLayer::last_use_resolution).
//! Per-route permissions are [`RequireScopeLayer`](crate::RequireScopeLayer)'s job.
//!
//! ```
//! use http::{header::AUTHORIZATION, Request, Response, StatusCode};
//! use http_body_util::Full;
//! use bytes::Bytes;
//! use tollgate_auth::{BearerAuthLayer, KeyManager, NewKey};
//! use tollgate_core::{KeyKind, MemoryKeyStore, Principal};
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
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;
use tollgate_core::{
    KeyHash, KeyRecord, KeyStore, Principal, Rejection, Renderer, ResponseBody, SharedClock, StoreError,
};
use tower_layer::Layer;
use tower_service::Service;

use crate::key_format::{hash_key_bytes, KeyFormat};
use crate::parse::{bearer_token_bytes, DEFAULT_MAX_TOKEN_LEN};
use crate::rejections;

/// How often, at most, the layer records that a key was used, by default.
pub const DEFAULT_LAST_USE_RESOLUTION: Duration = Duration::from_secs(60);

/// Authenticates requests by bearer API key. See the [module docs](self).
pub struct BearerAuthLayer<S> {
    state: Arc<AuthState<S>>,
}

struct AuthState<S> {
    store: Arc<S>,
    clock: SharedClock,
    renderer: Renderer,
    max_token_len: usize,
    enforce_key_kind: bool,
    last_use_resolution: Duration,
    checksum: Option<KeyFormat>,
}

// Written by hand: the store is behind an `Arc`, so `S` need not be `Clone`.
impl<S> Clone for AuthState<S> {
    fn clone(&self) -> AuthState<S> {
        AuthState {
            store: self.store.clone(),
            clock: self.clock.clone(),
            renderer: self.renderer.clone(),
            max_token_len: self.max_token_len,
            enforce_key_kind: self.enforce_key_kind,
            last_use_resolution: self.last_use_resolution,
            checksum: self.checksum.clone(),
        }
    }
}

impl<S: KeyStore> BearerAuthLayer<S> {
    /// Authenticates against `store`, with the defaults: tokens up to 256
    /// characters, the key-kind rule enforced, last use recorded at most
    /// once a minute, no checksum required, the system clock, the seed's JSON.
    pub fn new(store: S) -> BearerAuthLayer<S> {
        BearerAuthLayer::from_shared(Arc::new(store))
    }

    /// Like [`BearerAuthLayer::new`], for a store already shared.
    pub fn from_shared(store: Arc<S>) -> BearerAuthLayer<S> {
        BearerAuthLayer {
            state: Arc::new(AuthState {
                store,
                clock: SharedClock::default(),
                renderer: Renderer::default(),
                max_token_len: DEFAULT_MAX_TOKEN_LEN,
                enforce_key_kind: true,
                last_use_resolution: DEFAULT_LAST_USE_RESOLUTION,
                checksum: None,
            }),
        }
    }
}

impl<S> BearerAuthLayer<S> {
    fn state_mut(&mut self) -> &mut AuthState<S> {
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

impl<S> Clone for BearerAuthLayer<S> {
    fn clone(&self) -> Self {
        BearerAuthLayer {
            state: self.state.clone(),
        }
    }
}

impl<S> fmt::Debug for BearerAuthLayer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.state.fmt(f)
    }
}

impl<S> fmt::Debug for AuthState<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuth")
            .field("max_token_len", &self.max_token_len)
            .field("enforce_key_kind", &self.enforce_key_kind)
            .field("last_use_resolution", &self.last_use_resolution)
            .field("checksum", &self.checksum)
            .finish_non_exhaustive()
    }
}

impl<S, Inner> Layer<Inner> for BearerAuthLayer<S> {
    type Service = BearerAuth<S, Inner>;

    fn layer(&self, inner: Inner) -> Self::Service {
        BearerAuth {
            inner,
            state: self.state.clone(),
        }
    }
}

/// The service made by [`BearerAuthLayer`].
pub struct BearerAuth<S, Inner> {
    inner: Inner,
    state: Arc<AuthState<S>>,
}

impl<S, Inner: Clone> Clone for BearerAuth<S, Inner> {
    fn clone(&self) -> Self {
        BearerAuth {
            inner: self.inner.clone(),
            state: self.state.clone(),
        }
    }
}

impl<S, Inner: fmt::Debug> fmt::Debug for BearerAuth<S, Inner> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuth")
            .field("inner", &self.inner)
            .field("config", &self.state)
            .finish()
    }
}

impl<S, Inner> BearerAuth<S, Inner> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &Inner {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut Inner {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> Inner {
        self.inner
    }
}

impl<S, Inner, ReqBody, ResBody> Service<Request<ReqBody>> for BearerAuth<S, Inner>
where
    S: KeyStore,
    Inner: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = Inner::Error;
    type Future = ResponseFuture<Inner, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let state = &self.state;
        let token = match bearer_token_bytes(request.headers(), state.max_token_len) {
            Ok(token) => token,
            Err(error) => return ResponseFuture::rejected(state.render(rejections::unreadable(error), &request)),
        };
        if let Some(format) = &state.checksum {
            if !std::str::from_utf8(token).is_ok_and(|token| format.is_well_formed(token)) {
                return ResponseFuture::rejected(state.render(rejections::invalid_key(), &request));
            }
        }
        let hash = hash_key_bytes(token);
        // A store that answers in-process (memory, a cache hit) is judged
        // here, with nothing boxed.
        if let Some(found) = state.store.find_by_hash_now(&hash) {
            let Judgement { outcome, last_use } = state.judge_found(found, &hash, request.method());
            let Some(last_use) = last_use else {
                return self.finish(outcome, request);
            };
            if let Some(recorded) = state.store.record_last_use_now(&last_use.key_id, last_use.at) {
                log_last_use_failure(&last_use.key_id, recorded);
                return self.finish(outcome, request);
            }
            // The store writes only asynchronously (a cache over Redis, say):
            // the write is awaited as on the async path, which happens at
            // most once per key per `last_use_resolution`.
            let shared = self.state.clone();
            let check: CheckFuture = Box::pin(async move {
                shared.record_use(last_use).await;
                outcome
            });
            return self.run(check, request);
        }
        let shared = self.state.clone();
        let method = request.method().clone();
        let check: CheckFuture = Box::pin(async move { shared.authenticate(hash, &method).await });
        self.run(check, request)
    }
}

impl<S: KeyStore, Inner> BearerAuth<S, Inner> {
    // Most lookups complete at once (a cache hit): poll once here, and the
    // inner service, made ready by `poll_ready`, is called directly instead
    // of through a clone. A lookup still pending goes on in the response
    // future; its caller always polls it after `call`, so nothing waits for
    // a wake-up sent to the no-op waker.
    fn run<ReqBody, ResBody>(
        &mut self,
        mut check: CheckFuture,
        request: Request<ReqBody>,
    ) -> ResponseFuture<Inner, ReqBody>
    where
        Inner: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    {
        match check.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(outcome) => self.finish(outcome, request),
            Poll::Pending => {
                // The service that was made ready goes to the future; this
                // one keeps a fresh clone (the usual pattern for calling
                // after an await).
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::authenticating(
                    check,
                    Waiting {
                        request,
                        inner,
                        renderer: self.state.renderer.clone(),
                    },
                )
            }
        }
    }

    // Calls the inner service with the principal, or renders the refusal.
    fn finish<ReqBody, ResBody>(
        &mut self,
        outcome: Result<Principal, Refusal>,
        mut request: Request<ReqBody>,
    ) -> ResponseFuture<Inner, ReqBody>
    where
        Inner: Service<Request<ReqBody>, Response = Response<ResBody>>,
    {
        match outcome {
            Ok(principal) => {
                request.extensions_mut().insert(principal);
                ResponseFuture::calling(self.inner.call(request))
            }
            Err(refusal) => ResponseFuture::rejected(self.state.render(refusal.rejection(), &request)),
        }
    }
}

// A record's verdict, and its use to record (`None`: not due).
struct Judgement {
    outcome: Result<Principal, Refusal>,
    last_use: Option<LastUse>,
}

impl Judgement {
    fn refused(refusal: Refusal) -> Judgement {
        Judgement {
            outcome: Err(refusal),
            last_use: None,
        }
    }
}

// Due at most once per `last_use_resolution` per key, so the copied id is rare.
struct LastUse {
    key_id: String,
    at: SystemTime,
}

/// Why a key found (or not) in the store does not admit the request. Small
/// and `Copy`, so the boxed lookup stays small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    InvalidKey,
    ReadOnly,
    StoreUnavailable,
}

impl Refusal {
    pub(crate) fn rejection(self) -> &'static Rejection {
        match self {
            Refusal::InvalidKey => rejections::invalid_key(),
            Refusal::ReadOnly => rejections::read_only(),
            Refusal::StoreUnavailable => rejections::store_unavailable(),
        }
    }
}

impl<S: KeyStore> AuthState<S> {
    async fn authenticate(&self, hash: KeyHash, method: &Method) -> Result<Principal, Refusal> {
        let found = self.store.find_by_hash(&hash).await;
        let Judgement { outcome, last_use } = self.judge_found(found, &hash, method);
        if let Some(last_use) = last_use {
            // Awaited here so the write finishes with the request.
            self.record_use(last_use).await;
        }
        outcome
    }

    // A failure only loses a timestamp, so the request goes on.
    async fn record_use(&self, LastUse { key_id, at }: LastUse) {
        let recorded = self.store.record_last_use(&key_id, at).await;
        log_last_use_failure(&key_id, recorded);
    }

    // What a lookup's answer means for a request with `method`.
    fn judge_found(
        &self,
        found: Result<Option<Arc<KeyRecord>>, StoreError>,
        hash: &KeyHash,
        method: &Method,
    ) -> Judgement {
        match found {
            Ok(Some(record)) => self.judge(&record, hash, method),
            Ok(None) => Judgement::refused(Refusal::InvalidKey),
            Err(error) => {
                tracing::warn!(%error, "API key lookup failed; refusing the request");
                Judgement::refused(Refusal::StoreUnavailable)
            }
        }
    }

    // What a record found for `hash` means for a request with `method`, and
    // whether its use is due to be recorded.
    fn judge(&self, record: &KeyRecord, hash: &KeyHash, method: &Method) -> Judgement {
        // A store keyed by something else than the full hash (a cache by
        // prefix, a misbehaving backend) must not let a near miss in.
        if record.hash != *hash {
            tracing::warn!(key_id = record.id(), "key store returned a record with another hash");
            return Judgement::refused(Refusal::InvalidKey);
        }
        // Revocation and expiry are ordered exactly against the system clock
        // (a key revoked a microsecond ago is refused); most keys have neither.
        if (record.revoked_at.is_some() || record.expires_at.is_some()) && !record.is_valid_at(self.clock.now()) {
            return Judgement::refused(Refusal::InvalidKey);
        }
        // Last use is bookkeeping at a resolution of a minute: the cheaper
        // reading will do.
        let now = self.clock.approximate_now();
        // Recorded even when the method is then refused: the key was used.
        let last_use = self.use_is_due(record, now).then(|| LastUse {
            key_id: record.id().to_owned(),
            at: now,
        });
        let outcome = if self.enforce_key_kind && !record.principal.kind().allows_method(method) {
            Err(Refusal::ReadOnly)
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

    fn render<B>(&self, rejection: &Rejection, request: &Request<B>) -> Response<Full<Bytes>> {
        self.renderer.render(rejection, request.headers())
    }
}

fn log_last_use_failure(key_id: &str, recorded: Result<(), StoreError>) {
    if let Err(error) = recorded {
        tracing::warn!(key_id, %error, "recording an API key's last use failed");
    }
}

mod future;

pub use future::ResponseFuture;
use future::{CheckFuture, Waiting};

// Service-level tests are long, so they live in `bearer/tests.rs`.
#[cfg(test)]
mod tests;
