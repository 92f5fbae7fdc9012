//! [`RateLimitLayer`]: the configuration, and the policies it chooses between.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::request::Parts;
use tollgate_core::rate_limit::{Decision, Limits, Plan, RateLimitStore};
use tollgate_core::{MemoryRateLimitStore, Renderer, StoreError};
use tower_layer::Layer;

use crate::head::Head;
use crate::key::KeyExtractor;
use crate::plans::{PlanSource, Plans};
use crate::service::RateLimit;

/// What to do with a request the key extractor finds no key for (no
/// [`Principal`](tollgate_core::Principal) when keying by API key).
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
    /// Answer 503 ([`Rejection::store_unavailable`](tollgate_core::Rejection::store_unavailable)),
    /// the default: quotas hold even when the store is down.
    #[default]
    Closed,
    /// Let the request through, unlimited, with a warning in the logs.
    Open,
}

pub(crate) type CheckFuture = Pin<Box<dyn Future<Output = Result<Decision, StoreError>> + Send>>;

/// A store's answer: at once, or a future to wait on.
pub(crate) enum Answer {
    Now(Result<Decision, StoreError>),
    Later(CheckFuture),
}

// A store with its `impl Future` erased, so the layer is not generic over it.
trait DynStore: Send + Sync + 'static {
    fn check(&self, key: &str, limits: &Limits, cost: u32) -> Answer;
}

// Any store behind an `Arc`, so a pending check's boxed future can own it.
struct Erased<St>(Arc<St>);

impl<St: RateLimitStore> DynStore for Erased<St> {
    fn check(&self, key: &str, limits: &Limits, cost: u32) -> Answer {
        // A store that decides in-process (the memory store, or a wrapper
        // around one) answers here: nothing is copied or boxed.
        if let Some(answer) = self.0.check_now(key, limits, cost) {
            return Answer::Now(answer);
        }
        let store = self.0.clone();
        let key = key.to_owned();
        let limits = *limits;
        Answer::Later(Box::pin(async move { store.check(&key, &limits, cost).await }))
    }
}

fn erase<St: RateLimitStore>(store: St) -> Arc<dyn DynStore> {
    Arc::new(Erased(Arc::new(store)))
}

type CostFn = dyn Fn(&Parts, &Plan) -> u32 + Send + Sync;

#[derive(Clone)]
pub(crate) struct Config {
    store: Arc<dyn DynStore>,
    pub(crate) key: KeyExtractor,
    pub(crate) plans: PlanSource,
    pub(crate) cost: Option<Arc<CostFn>>,
    pub(crate) missing_key: MissingKey,
    pub(crate) failure_policy: FailurePolicy,
    pub(crate) legacy_headers: bool,
    pub(crate) renderer: Renderer,
}

impl Config {
    pub(crate) fn check(&self, key: &str, limits: &Limits, cost: u32) -> Answer {
        self.store.check(key, limits, cost)
    }

    pub(crate) fn cost(&self, head: &impl Head, plan: &Plan) -> u32 {
        match (&self.cost, head.parts()) {
            (Some(cost_of), Some(parts)) => cost_of(parts, plan),
            // Without a closure (the layer splits the request for one).
            _ => plan.cost,
        }
    }

    /// Whether a closure reads the request's `Parts`, so the request must be
    /// split for it.
    pub(crate) fn reads_parts(&self) -> bool {
        self.key.reads_parts() || self.plans.reads_parts() || self.cost.is_some()
    }
}

/// Limits each key per plan: a per-second rate with a burst, and a daily
/// quota. See the [crate docs](crate) for the whole picture.
///
/// Defaults: keyed by the [`Principal`](tollgate_core::Principal)'s API key
/// id, plans from [`Plans::seed`] by the principal's plan name, cost from
/// the plan, 401 without a key, 503 when the store fails, IETF headers only.
#[derive(Clone)]
pub struct RateLimitLayer {
    config: Config,
}

impl RateLimitLayer {
    /// A layer keeping its state in `store`; share the store (or use one
    /// Redis) across instances so they share quotas.
    pub fn new(store: impl RateLimitStore) -> RateLimitLayer {
        RateLimitLayer {
            config: Config {
                store: erase(store),
                key: KeyExtractor::default(),
                plans: PlanSource::Table(Plans::default()),
                cost: None,
                missing_key: MissingKey::default(),
                failure_policy: FailurePolicy::default(),
                legacy_headers: false,
                renderer: Renderer::default(),
            },
        }
    }

    /// A layer with its own [`MemoryRateLimitStore`] on the system clock.
    pub fn in_memory() -> RateLimitLayer {
        RateLimitLayer::new(MemoryRateLimitStore::new())
    }

    /// Counts limits against this key instead of the API key.
    pub fn key(mut self, key: KeyExtractor) -> RateLimitLayer {
        self.config.key = key;
        self
    }

    /// Counts limits against the key a closure derives from the request's head.
    pub fn key_fn(self, key_for: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> RateLimitLayer {
        self.key(KeyExtractor::from_fn(key_for))
    }

    /// Uses this plan table, looked up by the principal's plan name.
    pub fn plans(mut self, plans: Plans) -> RateLimitLayer {
        self.config.plans = PlanSource::Table(plans);
        self
    }

    /// Chooses the plan with a closure; `None` answers 500 (no plan applies).
    pub fn plan_fn(mut self, plan_for: impl Fn(&Parts) -> Option<Plan> + Send + Sync + 'static) -> RateLimitLayer {
        self.config.plans = PlanSource::Custom(Arc::new(plan_for));
        self
    }

    /// Sets each request's cost (default: the plan's `cost`), for endpoints
    /// that weigh more than one request, such as a batch send.
    pub fn cost_fn(mut self, cost_of: impl Fn(&Parts, &Plan) -> u32 + Send + Sync + 'static) -> RateLimitLayer {
        self.config.cost = Some(Arc::new(cost_of));
        self
    }

    /// What to do with requests that have no key.
    pub fn missing_key(mut self, missing_key: MissingKey) -> RateLimitLayer {
        self.config.missing_key = missing_key;
        self
    }

    /// What to do when the store fails.
    pub fn failure_policy(mut self, failure_policy: FailurePolicy) -> RateLimitLayer {
        self.config.failure_policy = failure_policy;
        self
    }

    /// Also writes `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
    /// `X-RateLimit-Reset` (seconds from now), for older clients.
    pub fn legacy_headers(mut self, enabled: bool) -> RateLimitLayer {
        self.config.legacy_headers = enabled;
        self
    }

    /// Renders refusals with this renderer.
    pub fn renderer(mut self, renderer: Renderer) -> RateLimitLayer {
        self.config.renderer = renderer;
        self
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit::new(inner, Arc::new(self.config.clone()))
    }
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.fmt(f)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("key", &self.key)
            .field("plans", &self.plans)
            .field("custom_cost", &self.cost.is_some())
            .field("missing_key", &self.missing_key)
            .field("failure_policy", &self.failure_policy)
            .field("legacy_headers", &self.legacy_headers)
            .finish_non_exhaustive()
    }
}
