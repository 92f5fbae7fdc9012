//! [`Throttle`]: the rate-limit decision, the gate [`Policy`] of
//! [`RateLimit`](crate::RateLimit), and [`AddHeaders`], its finishing step.
//!
//! Per request: the store key and the plan, the cost, one store check, and
//! what its answer means — call the inner service and write the
//! `RateLimit` headers on its response, or refuse.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Request, Response};
use http_body_util::Full;
use tollgate_core::alerts::Alerts;
use tollgate_core::gate::{Finish, Policy, Verdict};
use tollgate_core::metrics::{self, Layer as Metered};
use tollgate_core::rate_limit::{Decision, LimitKind, Plan, RateLimitStore};
use tollgate_core::usage::UsageRecorder;
use tollgate_core::{MaybeReady, Principal, Rejection, Renderer, StoreError, StoreFuture};

use crate::head::Head;
use crate::headers::RateLimitHeaders;
use crate::key::KeyExtractor;
use crate::plans::{PlanSource, ResolvedPlan};
use crate::rejections;

/// What to do with a request the key extractor finds no key for (no
/// [`Principal`] when keying by API key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingKey {
    /// Answer 401 `UNAUTHORIZED` (the default): a stack whose
    /// authentication layer is missing or misplaced must not be unlimited.
    #[default]
    Reject,
    /// Let the request through unlimited, for routes that are partly public.
    PassThrough,
}

/// What to do when the store fails ([`StoreError::is_unavailable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Answer 503 ([`Rejection::store_unavailable`]), the default: quotas
    /// hold even when the store is down.
    #[default]
    Closed,
    /// Let the request through, unlimited, with a warning in the logs.
    Open,
}

type CostFn = dyn Fn(&Parts, &Plan) -> u32 + Send + Sync;

/// Everything the decision reads, set by the
/// [`RateLimitLayer`](crate::RateLimitLayer)'s builders.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) store: Arc<dyn RateLimitStore>,
    pub(crate) key: KeyExtractor,
    pub(crate) plans: PlanSource,
    pub(crate) cost: Option<Arc<CostFn>>,
    pub(crate) missing_key: MissingKey,
    pub(crate) failure_policy: FailurePolicy,
    pub(crate) legacy_headers: bool,
    pub(crate) renderer: Renderer,
    pub(crate) usage: Option<UsageRecorder>,
    pub(crate) alerts: Option<Alerts>,
}

impl Config {
    fn cost(&self, head: &impl Head, plan: &Plan) -> u32 {
        match (&self.cost, head.parts()) {
            (Some(cost_of), Some(parts)) => cost_of(parts, plan),
            // Without a closure (the policy splits the request for one).
            _ => plan.cost,
        }
    }

    /// Whether a closure reads the request's `Parts`, so the request must be
    /// split for it. Splitting and rebuilding moves the whole head twice, so
    /// it is done only then.
    fn reads_parts(&self) -> bool {
        self.key.reads_parts() || self.plans.reads_parts() || self.cost.is_some()
    }

    // Key, plan and cost, the store's answer if it is already there, and
    // what it means for the request.
    fn step(&self, head: &impl Head) -> Step {
        // Looked up once for the key and the plan.
        let principal = head.extensions().get::<Principal>();
        let Some(key) = self.key.store_key(head, principal) else {
            return Step::Decided(match self.missing_key {
                MissingKey::Reject => {
                    metrics::unauthorized(Metered::RateLimit);
                    Outcome::Refuse(self.render(&Rejection::unauthorized("Missing API key."), head.headers()))
                }
                MissingKey::PassThrough => {
                    metrics::allowed_anonymous(Metered::RateLimit);
                    Outcome::Call(None)
                }
            });
        };
        let Some(plan) = self.plans.resolve(head, principal) else {
            tracing::error!("no rate-limit plan applies to the request and there is no fallback plan");
            return Step::Decided(Outcome::Refuse(self.render(&rejections::no_plan(), head.headers())));
        };
        let cost = self.cost(head, &plan.plan);
        // A memory store (or a cache hit) has answered already: decide now,
        // with nothing shared or boxed. Otherwise the answer is awaited.
        match self.store.check(key.as_str(), &plan.limits, cost).into_ready() {
            Ok(answer) => Step::Decided(self.judge(answer, &plan, head.headers(), principal)),
            Err(pending) => Step::Wait(pending, plan.into_shared()),
        }
    }

    /// What the store's answer means for the request; counted as the
    /// principal's usage, if usage is counted.
    fn judge(
        &self,
        answer: Result<Decision, StoreError>,
        plan: &ResolvedPlan,
        request_headers: &HeaderMap,
        principal: Option<&Principal>,
    ) -> Outcome {
        let limited = matches!(&answer, Ok(decision) if !decision.is_allowed());
        if let (Some(usage), Some(principal)) = (&self.usage, principal) {
            usage.record(principal.key_id(), limited);
        }
        let decision = match answer {
            Ok(decision) => decision,
            Err(error) if error.is_unavailable() => {
                metrics::store_unavailable(Metered::RateLimit);
                return match self.failure_policy {
                    FailurePolicy::Open => {
                        tracing::warn!(%error, "rate-limit store unavailable; letting the request through (fail open)");
                        Outcome::Call(None)
                    }
                    FailurePolicy::Closed => {
                        tracing::warn!(%error, "rate-limit store unavailable; refusing the request (fail closed)");
                        Outcome::Refuse(self.render(&Rejection::store_unavailable(), request_headers))
                    }
                };
            }
            Err(StoreError::CapacityReached { capacity }) => {
                tracing::warn!(
                    capacity,
                    "rate-limit store full of keys in debt; refusing a new key (fail closed)"
                );
                return Outcome::Refuse(self.render(&rejections::at_capacity(), request_headers));
            }
            Err(error) => {
                tracing::error!(%error, "rate-limit store failed");
                return Outcome::Refuse(self.render(&rejections::store_error(), request_headers));
            }
        };
        self.meter(&decision, principal);
        let headers = RateLimitHeaders::new(plan.policy.clone(), &plan.plan, &decision, self.legacy_headers);
        match rejections::rate_limited(&plan.plan, &decision) {
            None => Outcome::Call(Some(headers)),
            Some(rejection) => {
                let mut response = self.render(&rejection, request_headers);
                headers.write_to(response.headers_mut());
                Outcome::Refuse(response)
            }
        }
    }

    // The decision's metric, and its quota alerts.
    fn meter(&self, decision: &Decision, principal: Option<&Principal>) {
        let key_id = principal.map(Principal::key_id);
        match decision.refused_by() {
            None => metrics::request(Metered::RateLimit, metrics::Outcome::Allowed, key_id),
            Some(LimitKind::Daily) => metrics::daily_quota_exhausted(key_id),
            Some(LimitKind::PerSecond) => metrics::rate_limited(Metered::RateLimit, key_id),
        }
        if let (Some(alerts), Some(principal), Some(daily)) = (&self.alerts, principal, &decision.daily) {
            alerts.daily_usage(principal.account_id(), principal.key_id(), daily);
        }
    }

    fn render(&self, rejection: &Rejection, request_headers: &HeaderMap) -> Response<Full<Bytes>> {
        self.renderer.render(rejection, request_headers)
    }

    pub(crate) fn describe(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("key", &self.key)
            .field("plans", &self.plans)
            .field("custom_cost", &self.cost.is_some())
            .field("missing_key", &self.missing_key)
            .field("failure_policy", &self.failure_policy)
            .field("legacy_headers", &self.legacy_headers)
            .field("counts_usage", &self.usage.is_some())
            .field("alerts", &self.alerts.is_some())
            .finish_non_exhaustive()
    }
}

/// What is known once the request's head is read.
enum Step {
    Decided(Outcome),
    /// The store has not answered yet.
    Wait(StoreFuture<Decision>, Arc<ResolvedPlan>),
}

/// The decision, before the request is handed back.
enum Outcome {
    /// Call the inner service, adding these headers to its response.
    Call(Option<RateLimitHeaders>),
    Refuse(Response<Full<Bytes>>),
}

impl Outcome {
    fn into_verdict<B>(self, request: Request<B>) -> Verdict<B, AddHeaders, Full<Bytes>> {
        match self {
            Outcome::Call(headers) => Verdict::Proceed(request, AddHeaders(headers)),
            Outcome::Refuse(response) => Verdict::Respond(response),
        }
    }
}

/// The policy of [`RateLimit`](crate::RateLimit): checks and consumes the
/// request's cost against its key's limits, refuses with 429 when a limit
/// is spent, and otherwise lets it through with [`AddHeaders`]. Built by
/// [`RateLimitLayer`](crate::RateLimitLayer); clones share its store.
#[derive(Clone)]
pub struct Throttle {
    config: Arc<Config>,
}

impl Throttle {
    pub(crate) fn new(config: Config) -> Throttle {
        Throttle {
            config: Arc::new(config),
        }
    }

    // A decision made now is handed back at once; a pending check goes on
    // with the request (and the plan) until the store answers.
    fn settle<B: Send + 'static>(
        &self,
        step: Step,
        request: Request<B>,
    ) -> MaybeReady<Verdict<B, AddHeaders, Full<Bytes>>> {
        match step {
            Step::Decided(outcome) => MaybeReady::ready(outcome.into_verdict(request)),
            Step::Wait(check, plan) => {
                let config = Arc::clone(&self.config);
                check.map(move |answer| {
                    let principal = request.extensions().get::<Principal>();
                    config
                        .judge(answer, &plan, request.headers(), principal)
                        .into_verdict(request)
                })
            }
        }
    }
}

impl<B: Send + 'static> Policy<B> for Throttle {
    type Body = B;
    type Finish = AddHeaders;
    type Answer = Full<Bytes>;

    fn decide(&self, request: Request<B>) -> MaybeReady<Verdict<B, AddHeaders, Full<Bytes>>> {
        if self.config.reads_parts() {
            let (parts, body) = request.into_parts();
            let step = self.config.step(&parts);
            self.settle(step, Request::from_parts(parts, body))
        } else {
            let step = self.config.step(&request);
            self.settle(step, request)
        }
    }
}

impl fmt::Debug for Throttle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.describe("Throttle", f)
    }
}

/// The finishing step of [`Throttle`]: writes the decision's `RateLimit`
/// headers (and the legacy ones, if enabled) on the inner service's
/// response. Requests let through without a decision (no key under
/// [`MissingKey::PassThrough`], a store failure under
/// [`FailurePolicy::Open`]) get none.
#[derive(Debug)]
pub struct AddHeaders(Option<RateLimitHeaders>);

impl<ResBody, E> Finish<ResBody, E> for AddHeaders {
    type Body = ResBody;

    fn finish(self, result: Result<Response<ResBody>, E>) -> MaybeReady<Result<Response<ResBody>, E>> {
        MaybeReady::ready(result.map(|mut response| {
            if let Some(headers) = self.0 {
                headers.write_to(response.headers_mut());
            }
            response
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tollgate_core::conformance::{self, FakeStore};
    use tollgate_core::rate_limit::MemoryRateLimitStore;
    use tollgate_core::{KeyKind, ManualClock};
    use tower::{Layer, Service, ServiceExt};

    use crate::RateLimitLayer;

    use super::*;

    type Body = Full<Bytes>;

    fn memory() -> MemoryRateLimitStore {
        MemoryRateLimitStore::new().with_clock(ManualClock::at_unix_secs(1_700_000_000))
    }

    fn free_request() -> Request<Body> {
        let mut request = Request::new(Body::default());
        let principal = Principal::new("acct_1", "key_1", KeyKind::Production).with_plan("free");
        request.extensions_mut().insert(principal);
        request
    }

    // The handler, counting how often the gate clones it: it does so only
    // for a decision still pending when the request is called.
    #[derive(Default)]
    struct Handler {
        clones: Arc<AtomicUsize>,
    }

    impl Clone for Handler {
        fn clone(&self) -> Handler {
            self.clones.fetch_add(1, Ordering::SeqCst);
            Handler {
                clones: Arc::clone(&self.clones),
            }
        }
    }

    impl Service<Request<Body>> for Handler {
        type Response = Response<Body>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

        fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<Body>) -> Self::Future {
            std::future::ready(Ok(Response::new(Body::from("handled"))))
        }
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
        // Shared, answering asynchronously, or through an open gate.
        let open = conformance::Gate::closed();
        open.open();
        let gated = FakeStore::new(memory());
        gated.gate(Some(open));
        for layer in [
            RateLimitLayer::from_shared(Arc::new(memory())),
            RateLimitLayer::new(FakeStore::new(memory()).asynchronous()),
            RateLimitLayer::new(gated),
        ] {
            assert_eq!(twelve_answers(layer).await, expected);
        }
    }

    #[tokio::test]
    async fn counted_usage_is_every_decided_request_of_a_key_and_its_429s() {
        use tollgate_core::usage::{Day, DayUsage, MemoryUsageStore, UsageStore};
        let usage = MemoryUsageStore::new();
        let recorder = UsageRecorder::new(Arc::new(usage.clone()));
        let store = FakeStore::new(memory());
        let layer = RateLimitLayer::new(store.clone()).count_usage(recorder.clone());
        assert!(format!("{layer:?}").contains("counts_usage: true"));
        // 12 answered at once (10 admitted, 2 limited), 3 answered later
        // (limited), one failed store (503, a request), one without a key.
        let service = layer.layer(handler());
        for _ in 0..12 {
            service.clone().oneshot(free_request()).await.unwrap();
        }
        let asynchronous = store.clone().asynchronous();
        for _ in 0..3 {
            let response = service.clone().oneshot(free_request()).await.unwrap();
            assert_eq!(response.status(), 429);
        }
        asynchronous.fail_all();
        assert_eq!(service.clone().oneshot(free_request()).await.unwrap().status(), 503);
        asynchronous.heal();
        let anonymous = service.clone().oneshot(Request::new(Body::default())).await.unwrap();
        assert_eq!(anonymous.status(), 401);

        assert_eq!(recorder.unsent_requests(), 16);
        assert_eq!(recorder.flush().await.unwrap(), 1);
        let today = Day::from_unix_secs(tollgate_core::unix_secs(std::time::SystemTime::now()));
        assert_eq!(
            usage.days("key_1", today, today).await.unwrap(),
            vec![DayUsage {
                day: today,
                requests: 16,
                rate_limited: 5
            }]
        );
    }

    #[tokio::test]
    async fn a_ready_answer_is_taken_at_once_and_a_pending_one_later() {
        // A memory store answers at once: the gate calls the service that
        // `poll_ready` readied, never a clone of it. A fault answered at
        // once is a fault like any other.
        let store = FakeStore::new(memory());
        let mut service = RateLimitLayer::new(store.clone()).layer(Handler::default());
        let clones = Arc::clone(&service.get_ref().clones);
        let mut statuses = Vec::new();
        for _ in 0..12 {
            let response = service.ready().await.unwrap().call(free_request()).await.unwrap();
            statuses.push(response.status().as_u16());
        }
        assert_eq!(statuses, [[200; 10].as_slice(), &[429; 2]].concat());
        store.fail("check");
        let response = service.ready().await.unwrap().call(free_request()).await.unwrap();
        assert_eq!(response.status(), 503, "fail closed");
        assert_eq!(store.calls("check"), 13);
        assert_eq!(clones.load(Ordering::SeqCst), 0, "every answer was ready");

        // An answer still pending at `call` takes the readied service along.
        let gate = conformance::Gate::closed();
        store.heal();
        store.gate(Some(gate.clone()));
        let pending = service.ready().await.unwrap().call(free_request());
        gate.open();
        assert_eq!(pending.await.unwrap().status(), 429);
        assert_eq!(clones.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_check_still_pending_is_finished_by_the_response_future() {
        let (inner, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let store = FakeStore::new(memory());
        let gate = conformance::Gate::closed();
        store.gate(Some(gate.clone()));
        let mut service = tower_test::mock::Spawn::new(RateLimitLayer::new(store).layer(inner));
        handle.allow(1);
        tokio_test::assert_ready_ok!(service.poll_ready());
        let mut response = tokio_test::task::spawn(service.call(free_request()));
        tokio_test::assert_pending!(response.poll());
        if response.is_woken() {
            // The store's future yields once, as a network round trip does,
            // before it waits at the gate.
            tokio_test::assert_pending!(response.poll());
        }
        assert!(!response.is_woken());
        gate.open();
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
