//! [`RateLimitLayer`]: the rate limit's configuration and its builders; the
//! decision itself is the [`Throttle`] policy.

use std::fmt;
use std::sync::Arc;

use http::request::Parts;
use tollgate_core::gate::Gate;
use tollgate_core::rate_limit::{MemoryRateLimitStore, Plan, RateLimitStore};
use tollgate_core::usage::UsageRecorder;
use tollgate_core::Renderer;
use tower_layer::Layer;

use crate::key::KeyExtractor;
use crate::plans::{PlanSource, Plans};
use crate::policy::{Config, FailurePolicy, MissingKey, Throttle};

/// Rate limits requests before they reach `S`; built by [`RateLimitLayer`].
///
/// Clones share the layer's store, so they never split a quota. Readiness
/// is the inner service's: limits are enforced by refusing with 429, never
/// by back-pressure.
pub type RateLimit<S> = Gate<S, Throttle>;

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
        RateLimitLayer::from_shared(Arc::new(store))
    }

    /// A layer keeping its state in a store that is shared already, such as
    /// one chosen at start-up.
    pub fn from_shared(store: Arc<dyn RateLimitStore>) -> RateLimitLayer {
        RateLimitLayer {
            config: Config {
                store,
                key: KeyExtractor::default(),
                plans: PlanSource::Table(Plans::default()),
                cost: None,
                missing_key: MissingKey::default(),
                failure_policy: FailurePolicy::default(),
                legacy_headers: false,
                renderer: Renderer::default(),
                usage: None,
                alerts: None,
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

    /// Counts every request the layer decides for an authenticated key in
    /// `recorder`: one request for the [`Principal`](tollgate_core::Principal)'s
    /// key id, rate limited when refused for a limit or quota (429). Requests
    /// without a principal are not counted; a request let through or
    /// refused because the store failed counts as a request, not rate
    /// limited. Costs one in-memory count per request (see
    /// [`UsageRecorder`]); the recorder's flush sends them to the usage store.
    pub fn count_usage(mut self, recorder: UsageRecorder) -> RateLimitLayer {
        self.config.usage = Some(recorder);
        self
    }

    /// Raises the daily-quota alerts (80% and 100% of a key's quota, once
    /// per key and day) from each decision's remaining daily count.
    pub fn alerts(mut self, alerts: tollgate_core::alerts::Alerts) -> RateLimitLayer {
        self.config.alerts = Some(alerts);
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
        Gate::new(inner, Throttle::new(self.config.clone()))
    }
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.describe("RateLimitLayer", f)
    }
}
