//! [`Idempotency`]: the service that [`IdempotencyLayer`] wraps around an inner service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Either;
use tollgate_core::idempotency::IdempotencyStore;
use tower_service::Service;

use crate::config::{Config, Plan};
use crate::flow::prepare;
use crate::future::ResponseFuture;
use crate::{IdempotencyBody, IdempotencyLayer, RequestBody};

/// Runs each keyed request once and replays its response to retries.
/// See the [crate documentation](crate) for the behaviour.
///
/// The inner service receives [`RequestBody<B>`](RequestBody): the original
/// body untouched for requests the layer does not deduplicate, the buffered
/// bytes (the same bytes) for those it does.
pub struct Idempotency<S, St> {
    inner: S,
    store: Arc<St>,
    config: Arc<Config>,
}

impl<S, St: IdempotencyStore> Idempotency<S, St> {
    /// Wraps `inner` with the default settings and `store`.
    pub fn new(inner: S, store: St) -> Idempotency<S, St> {
        Idempotency {
            inner,
            store: Arc::new(store),
            config: Arc::new(Config::default()),
        }
    }

    /// A layer deduplicating requests in `store` (see [`IdempotencyLayer`]).
    pub fn layer(store: St) -> IdempotencyLayer<St> {
        IdempotencyLayer::new(store)
    }

    pub(crate) fn from_parts(inner: S, store: Arc<St>, config: Arc<Config>) -> Idempotency<S, St> {
        Idempotency { inner, store, config }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, St> Clone for Idempotency<S, St> {
    fn clone(&self) -> Self {
        Idempotency {
            inner: self.inner.clone(),
            store: self.store.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: fmt::Debug, St> fmt::Debug for Idempotency<S, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotency")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S, St, ReqBody, ResBody> Service<Request<ReqBody>> for Idempotency<S, St>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    St: IdempotencyStore,
    ReqBody: Body<Data = Bytes> + Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send,
{
    type Response = Response<IdempotencyBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, St, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        match self.config.plan(&request) {
            Plan::PassThrough => ResponseFuture::pass_through(self.inner.call(request.map(Either::Left))),
            Plan::Reject(rejection) => {
                ResponseFuture::respond(self.config.renderer.render(&rejection, request.headers()))
            }
            Plan::Deduplicate(key) => {
                // The inner service is called only after the store answers:
                // take the instance that `poll_ready` readied, leave a clone.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                let (parts, body) = request.into_parts();
                let prepare = prepare(self.store.clone(), self.config.clone(), key, parts, body);
                ResponseFuture::deduplicate(inner, self.config.clone(), Box::pin(prepare))
            }
        }
    }
}
