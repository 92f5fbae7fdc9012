//! [`RateLimit`]: the service, and its [`ResponseFuture`].

use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use tollgate_core::rate_limit::{Decision, RateLimitStore};
use tollgate_core::{Rejection, ResponseBody, StoreError};
use tower_service::Service;

use crate::headers::RateLimitHeaders;
use crate::layer::{CheckFuture, Config, FailurePolicy, MissingKey, RateLimitLayer};
use crate::plans::ResolvedPlan;
use crate::rejections;

/// Rate limits requests before they reach `S`; built by [`RateLimitLayer`].
///
/// Clones share the layer's store, so they never split a quota. Readiness
/// is the inner service's: limits are enforced by refusing with 429, never
/// by back-pressure.
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> RateLimit<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> RateLimit<S> {
        RateLimit { inner, config }
    }

    /// A [`RateLimitLayer`] keeping its state in `store`.
    pub fn layer(store: impl RateLimitStore) -> RateLimitLayer {
        RateLimitLayer::new(store)
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        let (parts, body) = request.into_parts();
        let Some(key) = config.key.extract(&parts) else {
            return match config.missing_key {
                MissingKey::Reject => ResponseFuture::refused(
                    config
                        .renderer
                        .render(&Rejection::unauthorized("Missing API key."), &parts.headers),
                ),
                MissingKey::PassThrough => ResponseFuture::calling(self.inner.call(Request::from_parts(parts, body))),
            };
        };
        let Some(plan) = config.plans.resolve(&parts) else {
            tracing::error!("no rate-limit plan applies to the request and there is no fallback plan");
            return ResponseFuture::refused(config.renderer.render(&rejections::no_plan(), &parts.headers));
        };
        let cost = config.cost(&parts, &plan.plan);
        let check = config.check(key, plan.limits, cost);
        // The ready service goes into the future, to be called once the
        // store has answered; this service keeps a fresh clone.
        let clone = self.inner.clone();
        let inner = mem::replace(&mut self.inner, clone);
        ResponseFuture {
            state: State::Checking {
                check,
                inner: Some(inner),
                request: Some(Request::from_parts(parts, body)),
                plan,
                config: config.clone(),
            },
        }
    }
}

pin_project! {
    /// The response future of [`RateLimit`]: waits for the store, then
    /// either calls the inner service and adds the rate-limit headers to its
    /// response, or answers with the refusal.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S::Future, S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, B> {
        Checking {
            check: CheckFuture,
            inner: Option<S>,
            request: Option<Request<B>>,
            plan: Arc<ResolvedPlan>,
            config: Arc<Config>,
        },
        Calling {
            #[pin]
            future: F,
            headers: Option<RateLimitHeaders>,
        },
        Refused {
            response: Option<Response<Full<Bytes>>>,
        },
    }
}

impl<S: Service<Request<B>>, B> ResponseFuture<S, B> {
    fn refused(response: Response<Full<Bytes>>) -> ResponseFuture<S, B> {
        ResponseFuture {
            state: State::Refused {
                response: Some(response),
            },
        }
    }

    fn calling(future: S::Future) -> ResponseFuture<S, B> {
        ResponseFuture {
            state: State::Calling { future, headers: None },
        }
    }
}

const POLLED_AFTER_COMPLETION: &str = "ResponseFuture polled after completion";

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Checking {
                    check,
                    inner,
                    request,
                    plan,
                    config,
                } => {
                    let answer = ready!(check.as_mut().poll(cx));
                    let request = request.take().expect(POLLED_AFTER_COMPLETION);
                    let mut inner = inner.take().expect(POLLED_AFTER_COMPLETION);
                    let next = match decide(answer, plan, config, &request) {
                        Next::Call(headers) => State::Calling {
                            future: inner.call(request),
                            headers,
                        },
                        Next::Refuse(response) => State::Refused {
                            response: Some(response),
                        },
                    };
                    state.set(next);
                }
                StateProj::Calling { future, headers } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(headers) = headers.take() {
                        headers.write_to(response.headers_mut());
                    }
                    return Poll::Ready(Ok(response.map(Either::Left)));
                }
                StateProj::Refused { response } => {
                    let response = response.take().expect(POLLED_AFTER_COMPLETION);
                    return Poll::Ready(Ok(response.map(Either::Right)));
                }
            }
        }
    }
}

enum Next {
    Call(Option<RateLimitHeaders>),
    Refuse(Response<Full<Bytes>>),
}

fn decide<B>(answer: Result<Decision, StoreError>, plan: &ResolvedPlan, config: &Config, request: &Request<B>) -> Next {
    let decision = match answer {
        Ok(decision) => decision,
        Err(error) if error.is_unavailable() => {
            return match config.failure_policy {
                FailurePolicy::Open => {
                    tracing::warn!(%error, "rate-limit store unavailable; letting the request through (fail open)");
                    Next::Call(None)
                }
                FailurePolicy::Closed => {
                    tracing::warn!(%error, "rate-limit store unavailable; refusing the request (fail closed)");
                    Next::Refuse(
                        config
                            .renderer
                            .render(&Rejection::store_unavailable(), request.headers()),
                    )
                }
            };
        }
        Err(error) => {
            tracing::error!(%error, "rate-limit store failed");
            return Next::Refuse(config.renderer.render(&rejections::store_error(), request.headers()));
        }
    };
    let headers = RateLimitHeaders::new(plan.policy.clone(), &plan.plan, &decision, config.legacy_headers);
    match rejections::rate_limited(&plan.plan, &decision) {
        None => Next::Call(Some(headers)),
        Some(rejection) => {
            let mut response = config.renderer.render(&rejection, request.headers());
            headers.write_to(response.headers_mut());
            Next::Refuse(response)
        }
    }
}
