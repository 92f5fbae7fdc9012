//! [`RateLimit`]: the service, and its [`ResponseFuture`].

use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use tollgate_core::rate_limit::{Decision, RateLimitStore};
use tollgate_core::{Principal, Rejection, ResponseBody, StoreError};
use tower_service::Service;

use crate::head::Head;
use crate::headers::RateLimitHeaders;
use crate::layer::{Answer, CheckFuture, Config, FailurePolicy, MissingKey, RateLimitLayer};
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
        // Each branch hands the request to the inner service where it lies.
        if self.config.reads_parts() {
            let (parts, body) = request.into_parts();
            match self.config.step(&parts) {
                Step::Decided(Next::Call(headers)) => {
                    ResponseFuture::calling(self.inner.call(Request::from_parts(parts, body)), headers)
                }
                Step::Decided(Next::Refuse(response)) => ResponseFuture::refused(response),
                Step::Wait(check, plan) => self.wait(check, plan, Request::from_parts(parts, body)),
            }
        } else {
            match self.config.step(&request) {
                Step::Decided(Next::Call(headers)) => ResponseFuture::calling(self.inner.call(request), headers),
                Step::Decided(Next::Refuse(response)) => ResponseFuture::refused(response),
                Step::Wait(check, plan) => self.wait(check, plan, request),
            }
        }
    }
}

impl<S> RateLimit<S> {
    // The store has not answered yet: the ready service goes into the
    // future, to be called once it has; this service keeps a fresh clone.
    fn wait<B>(&mut self, check: CheckFuture, plan: Arc<ResolvedPlan>, request: Request<B>) -> ResponseFuture<S, B>
    where
        S: Service<Request<B>> + Clone,
    {
        let clone = self.inner.clone();
        let inner = mem::replace(&mut self.inner, clone);
        ResponseFuture {
            state: State::Checking {
                check,
                waiting: Some(Box::new(Waiting {
                    inner,
                    request,
                    plan,
                    config: self.config.clone(),
                })),
            },
        }
    }
}

/// What to do with a request once its head is read.
enum Step {
    Decided(Next),
    /// The store has not answered yet.
    Wait(CheckFuture, Arc<ResolvedPlan>),
}

impl Config {
    // Key, plan and cost, the store's answer if it comes at once, and what
    // it means for the request.
    fn step(&self, head: &impl Head) -> Step {
        // Looked up once for the key and the plan.
        let principal = head.extensions().get::<Principal>();
        let Some(key) = self.key.store_key(head, principal) else {
            return match self.missing_key {
                MissingKey::Reject => Step::Decided(Next::Refuse(
                    self.renderer
                        .render(&Rejection::unauthorized("Missing API key."), head.headers()),
                )),
                MissingKey::PassThrough => Step::Decided(Next::Call(None)),
            };
        };
        let Some(plan) = self.plans.resolve(head, principal) else {
            tracing::error!("no rate-limit plan applies to the request and there is no fallback plan");
            return Step::Decided(Next::Refuse(
                self.renderer.render(&rejections::no_plan(), head.headers()),
            ));
        };
        let cost = self.cost(head, &plan.plan);
        let mut check = match self.check(key.as_str(), &plan.limits, cost) {
            Answer::Now(answer) => return Step::Decided(decide(answer, &plan, self, head.headers())),
            Answer::Later(check) => check,
        };
        // Most stores answer at once, or nearly: poll once here, so the
        // inner service, made ready by `poll_ready`, is called directly
        // instead of through a clone. A check still pending goes on in the
        // response future; its caller always polls it after `call`, so
        // nothing waits for a wake-up sent to the no-op waker.
        match check.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(answer) => Step::Decided(decide(answer, &plan, self, head.headers())),
            Poll::Pending => Step::Wait(check, plan.into_shared()),
        }
    }
}

pin_project! {
    /// The response future of [`RateLimit`]: waits for the store (if it
    /// did not answer at once), then either calls the inner service and
    /// adds the rate-limit headers to its response, or answers with the
    /// refusal.
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
        // A store check still pending (boxed: a store's future type cannot
        // be named).
        Checking {
            check: CheckFuture,
            waiting: Option<Box<Waiting<S, B>>>,
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

// What a pending check's response future holds until the store answers;
// boxed so that this rarer state does not make every response future as
// large as a request.
struct Waiting<S, B> {
    inner: S,
    request: Request<B>,
    plan: Arc<ResolvedPlan>,
    config: Arc<Config>,
}

impl<S: Service<Request<B>>, B> ResponseFuture<S, B> {
    fn refused(response: Response<Full<Bytes>>) -> ResponseFuture<S, B> {
        ResponseFuture {
            state: State::Refused {
                response: Some(response),
            },
        }
    }

    fn calling(future: S::Future, headers: Option<RateLimitHeaders>) -> ResponseFuture<S, B> {
        ResponseFuture {
            state: State::Calling { future, headers },
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
                StateProj::Checking { check, waiting } => {
                    let answer = ready!(check.as_mut().poll(cx));
                    let Waiting {
                        mut inner,
                        request,
                        plan,
                        config,
                    } = *waiting.take().expect(POLLED_AFTER_COMPLETION);
                    let next = match decide(answer, &plan, &config, request.headers()) {
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

/// What the store's answer means for the request.
enum Next {
    /// Call the inner service, adding these headers to its response.
    Call(Option<RateLimitHeaders>),
    Refuse(Response<Full<Bytes>>),
}

fn decide(
    answer: Result<Decision, StoreError>,
    plan: &ResolvedPlan,
    config: &Config,
    request_headers: &HeaderMap,
) -> Next {
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
                    Next::Refuse(config.renderer.render(&Rejection::store_unavailable(), request_headers))
                }
            };
        }
        Err(error) => {
            tracing::error!(%error, "rate-limit store failed");
            return Next::Refuse(config.renderer.render(&rejections::store_error(), request_headers));
        }
    };
    let headers = RateLimitHeaders::new(plan.policy.clone(), &plan.plan, &decision, config.legacy_headers);
    match rejections::rate_limited(&plan.plan, &decision) {
        None => Next::Call(Some(headers)),
        Some(rejection) => {
            let mut response = config.renderer.render(&rejection, request_headers);
            headers.write_to(response.headers_mut());
            Next::Refuse(response)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Mutex;

    use http_body_util::BodyExt;
    use tollgate_core::rate_limit::Limits;
    use tollgate_core::{EitherStore, KeyKind, ManualClock, MemoryRateLimitStore};
    use tower::{Layer, ServiceExt};

    use super::*;

    type Body = Full<Bytes>;

    // A memory store whose checks wait until the gate opens; the wake-up
    // goes to the waker of the last poll.
    #[derive(Clone)]
    struct GatedStore {
        inner: MemoryRateLimitStore,
        gate: Arc<Mutex<(bool, Option<Waker>)>>,
    }

    impl GatedStore {
        fn new(open: bool) -> GatedStore {
            GatedStore {
                inner: MemoryRateLimitStore::new().with_clock(ManualClock::at_unix_secs(1_700_000_000)),
                gate: Arc::new(Mutex::new((open, None))),
            }
        }

        fn open(&self) {
            let mut gate = self.gate.lock().unwrap();
            gate.0 = true;
            if let Some(waker) = gate.1.take() {
                waker.wake();
            }
        }
    }

    impl RateLimitStore for GatedStore {
        fn check(
            &self,
            key: &str,
            limits: &Limits,
            cost: u32,
        ) -> impl Future<Output = Result<Decision, StoreError>> + Send {
            let gate = self.gate.clone();
            let inner = self.inner.clone();
            let (key, limits) = (key.to_owned(), *limits);
            async move {
                std::future::poll_fn(|cx| {
                    let mut gate = gate.lock().unwrap();
                    if gate.0 {
                        Poll::Ready(())
                    } else {
                        gate.1 = Some(cx.waker().clone());
                        Poll::Pending
                    }
                })
                .await;
                inner.check(&key, &limits, cost).await
            }
        }
    }

    // A store that decides only synchronously: its future panics, so a
    // test passes only if the layer never asks for it.
    #[derive(Clone)]
    struct SyncOnlyStore {
        inner: MemoryRateLimitStore,
        failing: bool,
    }

    impl SyncOnlyStore {
        fn new(inner: MemoryRateLimitStore) -> SyncOnlyStore {
            SyncOnlyStore { inner, failing: false }
        }
    }

    impl RateLimitStore for SyncOnlyStore {
        async fn check(&self, _key: &str, _limits: &Limits, _cost: u32) -> Result<Decision, StoreError> {
            panic!("the layer took the async path of a store that answers synchronously")
        }

        fn check_now(&self, key: &str, limits: &Limits, cost: u32) -> Option<Result<Decision, StoreError>> {
            if self.failing {
                return Some(Err(StoreError::backend("connection refused")));
            }
            self.inner.check_now(key, limits, cost)
        }
    }

    fn free_request() -> Request<Body> {
        let mut request = Request::new(Body::default());
        let principal = Principal::new("acct_1", "key_1", KeyKind::Production).with_plan("free");
        request.extensions_mut().insert(principal);
        request
    }

    fn handler() -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send> + Clone {
        tower::service_fn(|_: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::from("handled"))) })
    }

    // Status, `RateLimit` and `RateLimit-Policy` of 12 requests in one instant.
    async fn twelve_answers(layer: RateLimitLayer) -> Vec<(u16, String, String)> {
        let service = layer.layer(handler());
        let mut answers = Vec::new();
        for _ in 0..12 {
            let response = service.clone().oneshot(free_request()).await.unwrap();
            let header = |name| response.headers()[name].to_str().unwrap().to_owned();
            answers.push((
                response.status().as_u16(),
                header("ratelimit"),
                header("ratelimit-policy"),
            ));
        }
        answers
    }

    #[tokio::test]
    async fn every_kind_of_store_gets_the_same_answers() {
        let clock = || ManualClock::at_unix_secs(1_700_000_000);
        let memory = || MemoryRateLimitStore::new().with_clock(clock());
        let expected = twelve_answers(RateLimitLayer::new(memory())).await;
        let policy = r#""per-second";q=10;w=1, "daily";q=1000;w=86400"#;
        assert_eq!(
            expected[0],
            (200, r#""per-second";r=9;t=1"#.to_owned(), policy.to_owned())
        );
        assert_eq!(
            expected[9],
            (200, r#""per-second";r=0;t=1"#.to_owned(), policy.to_owned())
        );
        assert_eq!(
            expected[10],
            (429, r#""per-second";r=0;t=1"#.to_owned(), policy.to_owned())
        );
        // Synchronously or through the (boxed) future, polled at once.
        let either: EitherStore<MemoryRateLimitStore, GatedStore> = EitherStore::Left(memory());
        let either_gated: EitherStore<MemoryRateLimitStore, GatedStore> = EitherStore::Right(GatedStore::new(true));
        for layer in [
            RateLimitLayer::new(Arc::new(memory())),
            RateLimitLayer::new(either),
            RateLimitLayer::new(either_gated),
            RateLimitLayer::new(GatedStore::new(true)),
            RateLimitLayer::new(SyncOnlyStore::new(memory())),
        ] {
            assert_eq!(twelve_answers(layer).await, expected);
        }
    }

    #[tokio::test]
    async fn a_store_that_answers_synchronously_is_never_asked_for_a_future() {
        // Wrapped or not: the layer asks `check_now` first, and `SyncOnlyStore`
        // panics if its future is ever made. A fault answered synchronously
        // is a fault like any other.
        let clock = ManualClock::at_unix_secs(1_700_000_000);
        let store = || SyncOnlyStore::new(MemoryRateLimitStore::new().with_clock(clock.clone()));
        let wrapped: EitherStore<GatedStore, Arc<SyncOnlyStore>> = EitherStore::Right(Arc::new(store()));
        for layer in [RateLimitLayer::new(store()), RateLimitLayer::new(wrapped)] {
            let answers = twelve_answers(layer).await;
            let statuses: Vec<u16> = answers.iter().map(|(status, _, _)| *status).collect();
            assert_eq!(statuses, [[200; 10].as_slice(), &[429; 2]].concat());
        }
        let failing = SyncOnlyStore {
            failing: true,
            ..store()
        };
        let service = RateLimitLayer::new(failing).layer(handler());
        let response = service.oneshot(free_request()).await.unwrap();
        assert_eq!(response.status(), 503, "fail closed");
    }

    #[tokio::test]
    async fn a_check_still_pending_is_finished_by_the_response_future() {
        let (inner, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let store = GatedStore::new(false);
        let mut service = tower_test::mock::Spawn::new(RateLimitLayer::new(store.clone()).layer(inner));
        handle.allow(1);
        tokio_test::assert_ready_ok!(service.poll_ready());
        let mut response = tokio_test::task::spawn(service.call(free_request()));
        tokio_test::assert_pending!(response.poll());
        assert!(!response.is_woken());
        store.open();
        assert!(
            response.is_woken(),
            "the store wakes the task that polled the response future"
        );
        // The ready inner service went into the future; calling it there must not panic.
        tokio_test::assert_pending!(response.poll());
        let (request, reply) = handle.next_request().await.expect("the inner service is called");
        assert_eq!(
            request.extensions().get::<Principal>().map(Principal::key_id),
            Some("key_1")
        );
        reply.send_response(Response::new(Body::from("inner")));
        let response = tokio_test::assert_ready_ok!(response.poll());
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["ratelimit"], r#""per-second";r=9;t=1"#);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "inner");
    }
}
