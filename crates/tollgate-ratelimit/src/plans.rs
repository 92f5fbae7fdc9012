//! Which [`Plan`] applies to a request: the [`Plans`] table, looked up by
//! the caller's [`Principal::plan`], or a closure.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use http::request::Parts;
use http::HeaderValue;
use tollgate_core::rate_limit::{Limits, Plan};
use tollgate_core::Principal;

use crate::headers;

/// Plans by name, with a fallback for callers whose plan is not listed (or
/// who have no [`Principal`], when keying by IP).
///
/// The default holds the seed's plans — `free`, `premium`, and `enterprise`
/// at 1,000/s — and falls back to `free`, so an unknown plan name is
/// limited, never unlimited.
///
/// ```
/// use tollgate_core::rate_limit::Plan;
/// use tollgate_ratelimit::Plans;
///
/// let plans = Plans::default()
///     .with(Plan::enterprise(250).with_burst(500))
///     .with(Plan::new("partner", 50).with_daily_quota(Some(20_000)));
/// assert_eq!(plans.get("enterprise").unwrap().per_second, 250);
/// assert_eq!(plans.get("free").unwrap().daily_quota, Some(1_000));
/// ```
#[derive(Clone)]
pub struct Plans {
    by_name: HashMap<String, Arc<ResolvedPlan>>,
    fallback: Option<Arc<ResolvedPlan>>,
}

impl Plans {
    /// The seed's three plans, falling back to `free`.
    pub fn seed() -> Plans {
        Plans::empty()
            .with(Plan::free())
            .with(Plan::premium())
            .with(Plan::enterprise(Plan::ENTERPRISE_MAX_PER_SECOND))
            .with_fallback(Some(Plan::free()))
    }

    /// No plans and no fallback: every request needs a listed plan.
    pub fn empty() -> Plans {
        Plans {
            by_name: HashMap::new(),
            fallback: None,
        }
    }

    /// Adds `plan`, replacing one of the same name.
    pub fn with(mut self, plan: Plan) -> Plans {
        self.by_name
            .insert(plan.name.clone(), Arc::new(ResolvedPlan::new(plan)));
        self
    }

    /// The plan for callers whose plan is not listed; `None` answers them
    /// with 500, as a configuration error.
    pub fn with_fallback(mut self, plan: Option<Plan>) -> Plans {
        self.fallback = plan.map(|plan| Arc::new(ResolvedPlan::new(plan)));
        self
    }

    /// The plan called `name`.
    pub fn get(&self, name: &str) -> Option<&Plan> {
        self.by_name.get(name).map(|resolved| &resolved.plan)
    }

    /// The fallback plan.
    pub fn fallback(&self) -> Option<&Plan> {
        self.fallback.as_ref().map(|resolved| &resolved.plan)
    }

    pub(crate) fn resolve(&self, parts: &Parts) -> Option<Arc<ResolvedPlan>> {
        if let Some(principal) = parts.extensions.get::<Principal>() {
            if let Some(plan) = self.by_name.get(principal.plan()) {
                return Some(plan.clone());
            }
            tracing::warn!(
                plan = principal.plan(),
                key_id = principal.key_id(),
                "unknown rate-limit plan; using the fallback plan"
            );
        }
        self.fallback.clone()
    }
}

impl Default for Plans {
    fn default() -> Plans {
        Plans::seed()
    }
}

/// Plans from configuration (e.g. a deserialised `Vec<Plan>`), with no
/// fallback until [`with_fallback`](Plans::with_fallback) sets one.
impl FromIterator<Plan> for Plans {
    fn from_iter<I: IntoIterator<Item = Plan>>(plans: I) -> Plans {
        plans.into_iter().fold(Plans::empty(), Plans::with)
    }
}

impl fmt::Debug for Plans {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("Plans")
            .field("plans", &names)
            .field("fallback", &self.fallback().map(|plan| &plan.name))
            .finish()
    }
}

/// A plan with what every request under it needs, computed once.
#[derive(Debug)]
pub(crate) struct ResolvedPlan {
    pub(crate) plan: Plan,
    pub(crate) limits: Limits,
    pub(crate) policy: HeaderValue,
}

impl ResolvedPlan {
    pub(crate) fn new(plan: Plan) -> ResolvedPlan {
        ResolvedPlan {
            limits: plan.limits(),
            policy: headers::policy(&plan),
            plan,
        }
    }
}

type PlanFn = dyn Fn(&Parts) -> Option<Plan> + Send + Sync;

/// Where the layer gets a request's plan.
#[derive(Clone)]
pub(crate) enum PlanSource {
    Table(Plans),
    Custom(Arc<PlanFn>),
}

impl PlanSource {
    pub(crate) fn resolve(&self, parts: &Parts) -> Option<Arc<ResolvedPlan>> {
        match self {
            PlanSource::Table(plans) => plans.resolve(parts),
            PlanSource::Custom(plan_for) => plan_for(parts).map(|plan| Arc::new(ResolvedPlan::new(plan))),
        }
    }
}

impl fmt::Debug for PlanSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanSource::Table(plans) => plans.fmt(f),
            PlanSource::Custom(_) => f.write_str("PlanSource::Custom"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::KeyKind;

    fn parts_with(principal: Option<Principal>) -> Parts {
        let mut request = http::Request::new(());
        if let Some(principal) = principal {
            request.extensions_mut().insert(principal);
        }
        request.into_parts().0
    }

    #[test]
    fn the_principal_plan_picks_the_plan_and_unknown_plans_fall_back() {
        let plans = Plans::seed();
        let premium = Principal::new("acct", "key", KeyKind::Production).with_plan("premium");
        assert_eq!(plans.resolve(&parts_with(Some(premium))).unwrap().plan.name, "premium");
        let unknown = Principal::new("acct", "key", KeyKind::Production).with_plan("gold");
        assert_eq!(plans.resolve(&parts_with(Some(unknown))).unwrap().plan.name, "free");
        assert_eq!(plans.resolve(&parts_with(None)).unwrap().plan.name, "free");
        assert!(Plans::empty().resolve(&parts_with(None)).is_none());
    }

    #[test]
    fn plans_collect_from_configuration() {
        let config: Vec<Plan> =
            serde_json::from_str(r#"[{"name":"free","per_second":2},{"name":"pro","per_second":20}]"#).unwrap();
        let plans: Plans = config.into_iter().collect();
        assert_eq!(plans.get("free").unwrap().per_second, 2);
        assert_eq!(plans.get("pro").unwrap().burst, 20);
        assert_eq!(plans.fallback(), None);
        let plans = plans.with_fallback(Some(Plan::new("free", 2)));
        assert_eq!(
            format!("{plans:?}"),
            r#"Plans { plans: ["free", "pro"], fallback: Some("free") }"#
        );
    }
}
