//! Which [`Plan`] applies to a request: the [`Plans`] table, looked up by
//! the caller's [`Principal::plan`], or a closure.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use http::request::Parts;
use http::HeaderValue;
use tollgate_core::rate_limit::{Limits, Plan};
use tollgate_core::Principal;

use crate::head::Head;
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
    by_name: HashMap<String, Arc<ResolvedPlan>, BuildHasherDefault<PlanNameHasher>>,
    // The same plans in a list while there are few, searched instead of the
    // map: comparing a handful of short names beats hashing one.
    listed: Vec<Arc<ResolvedPlan>>,
    fallback: Option<Arc<ResolvedPlan>>,
}

// Up to this many plans, a lookup scans the list.
const SCANNED_PLANS: usize = 8;

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
            by_name: HashMap::default(),
            listed: Vec::new(),
            fallback: None,
        }
    }

    /// Adds `plan`, replacing one of the same name.
    pub fn with(mut self, plan: Plan) -> Plans {
        let resolved = Arc::new(ResolvedPlan::new(plan));
        self.by_name.insert(resolved.plan.name.clone(), resolved);
        self.listed = if self.by_name.len() <= SCANNED_PLANS {
            self.by_name.values().cloned().collect()
        } else {
            Vec::new()
        };
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

    /// The plan of the request's `principal`.
    pub(crate) fn resolve(&self, principal: Option<&Principal>) -> Option<&Arc<ResolvedPlan>> {
        if let Some(principal) = principal {
            let name = principal.plan();
            let found = if self.by_name.len() <= SCANNED_PLANS {
                self.listed.iter().find(|listed| listed.plan.name == name)
            } else {
                self.by_name.get(name)
            };
            if let Some(plan) = found {
                return Some(plan);
            }
            tracing::warn!(
                plan = principal.plan(),
                key_id = principal.key_id(),
                "unknown rate-limit plan; using the fallback plan"
            );
        }
        self.fallback.as_ref()
    }
}

// FNV-1a. Plan names come from the operator's configuration and from keys
// the server issued, never from a client, so the table needs no keyed hash;
// this one costs a few instructions a byte where SipHash costs dozens.
struct PlanNameHasher(u64);

impl Default for PlanNameHasher {
    fn default() -> PlanNameHasher {
        PlanNameHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for PlanNameHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
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
    /// Once per plan of a table, or per request for a plan from a closure.
    pub(crate) fn new(plan: Plan) -> ResolvedPlan {
        ResolvedPlan {
            limits: plan.limits(),
            policy: headers::policy(&plan),
            plan,
        }
    }
}

/// A request's plan: borrowed from the table, or made for it by a closure.
/// Shared (an `Arc`) only if the request has to wait for the store.
pub(crate) enum PlanRef<'a> {
    Shared(&'a Arc<ResolvedPlan>),
    Owned(ResolvedPlan),
}

impl PlanRef<'_> {
    pub(crate) fn into_shared(self) -> Arc<ResolvedPlan> {
        match self {
            PlanRef::Shared(plan) => plan.clone(),
            PlanRef::Owned(plan) => Arc::new(plan),
        }
    }
}

impl Deref for PlanRef<'_> {
    type Target = ResolvedPlan;

    fn deref(&self) -> &ResolvedPlan {
        match self {
            PlanRef::Shared(plan) => plan,
            PlanRef::Owned(plan) => plan,
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
    /// The plan of a request; `principal` is the request's.
    pub(crate) fn resolve(&self, head: &impl Head, principal: Option<&Principal>) -> Option<PlanRef<'_>> {
        match self {
            PlanSource::Table(plans) => plans.resolve(principal).map(PlanRef::Shared),
            // The layer splits the request whenever a closure is configured.
            PlanSource::Custom(plan_for) => plan_for(head.parts()?).map(|plan| PlanRef::Owned(ResolvedPlan::new(plan))),
        }
    }

    /// Whether this is a closure, which reads the request's `Parts`.
    pub(crate) fn reads_parts(&self) -> bool {
        matches!(self, PlanSource::Custom(_))
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

    #[test]
    fn the_principal_plan_picks_the_plan_and_unknown_plans_fall_back() {
        let plans = Plans::seed();
        let premium = Principal::new("acct", "key", KeyKind::Production).with_plan("premium");
        assert_eq!(plans.resolve(Some(&premium)).unwrap().plan.name, "premium");
        let unknown = Principal::new("acct", "key", KeyKind::Production).with_plan("gold");
        assert_eq!(plans.resolve(Some(&unknown)).unwrap().plan.name, "free");
        assert_eq!(plans.resolve(None).unwrap().plan.name, "free");
        assert!(Plans::empty().resolve(None).is_none());
    }

    #[test]
    fn many_plans_are_found_by_name_and_replaced_by_name() {
        let plans = (1..=20).fold(Plans::empty(), |plans, i| plans.with(Plan::new(format!("tier_{i}"), i)));
        let plans = plans.with(Plan::new("tier_7", 700));
        for i in 1..=20 {
            let principal = Principal::new("acct", "key", KeyKind::Production).with_plan(format!("tier_{i}"));
            let expected = if i == 7 { 700 } else { i };
            assert_eq!(plans.resolve(Some(&principal)).unwrap().plan.per_second, expected);
        }
        let few = Plans::seed().with(Plan::new("free", 3));
        let free = Principal::new("acct", "key", KeyKind::Production);
        assert_eq!(few.resolve(Some(&free)).unwrap().plan.per_second, 3);
        assert_eq!(few.listed.len(), 3);
        assert!(plans.listed.is_empty(), "20 plans are looked up in the map");
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
