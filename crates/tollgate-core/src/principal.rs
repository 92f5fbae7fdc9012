//! Who is calling: the [`Principal`] that authentication puts in request
//! extensions for every later layer and for handlers.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// The seed API's key types. Each kind maps to default scopes and to an
/// access rule that the bearer-auth layer enforces before any route runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// Full access to the live environment.
    Production,
    /// Full access, but only to the sandbox environment.
    Sandbox,
    /// `GET` and `HEAD` requests only.
    ReadOnly,
}

impl KeyKind {
    /// Every kind, in a stable order.
    pub const ALL: [KeyKind; 3] = [KeyKind::Production, KeyKind::Sandbox, KeyKind::ReadOnly];

    /// The wire name used in JSON and configuration: `production`, `sandbox`, `read_only`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Production => "production",
            KeyKind::Sandbox => "sandbox",
            KeyKind::ReadOnly => "read_only",
        }
    }

    /// Parses a wire name (see [`KeyKind::as_str`]).
    pub fn parse(name: &str) -> Option<KeyKind> {
        KeyKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// The environment a key of this kind acts in.
    pub fn environment(self) -> Environment {
        match self {
            KeyKind::Sandbox => Environment::Sandbox,
            KeyKind::Production | KeyKind::ReadOnly => Environment::Live,
        }
    }

    /// The scopes a key of this kind is granted when none are given explicitly.
    pub fn default_scopes(self) -> Vec<Scope> {
        match self {
            KeyKind::Production | KeyKind::Sandbox => vec![Scope::ALL],
            KeyKind::ReadOnly => vec![Scope::READ],
        }
    }

    /// Whether a key of this kind may make a request with this method at all.
    /// Read-only keys are limited to safe methods; the other kinds are not.
    pub fn allows_method(self, method: &http::Method) -> bool {
        match self {
            KeyKind::ReadOnly => method == http::Method::GET || method == http::Method::HEAD,
            KeyKind::Production | KeyKind::Sandbox => true,
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which world a request acts on: live traffic or the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Environment {
    /// Real traffic.
    #[default]
    Live,
    /// Test traffic that must never reach the outside world.
    Sandbox,
}

impl Environment {
    /// `live` or `sandbox`.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Live => "live",
            Environment::Sandbox => "sandbox",
        }
    }
}

/// A permission granted to a key, such as `messages:write`.
///
/// [`Scope::ALL`] (`*`) grants every scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(Cow<'static, str>);

impl Scope {
    /// Grants every scope.
    pub const ALL: Scope = Scope(Cow::Borrowed("*"));
    /// The scope of read-only keys.
    pub const READ: Scope = Scope(Cow::Borrowed("read"));

    /// A scope from a string.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Scope {
        Scope(name.into())
    }

    /// The scope's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The authenticated caller: which account, which key, what it may do.
///
/// Cheap to clone (one reference count), so every layer and handler can hold
/// its own copy. Holds no secret: the key's id is public, its value is not
/// here at all.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal(Arc<PrincipalData>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct PrincipalData {
    account_id: Arc<str>,
    key_id: Arc<str>,
    kind: KeyKind,
    scopes: Vec<Scope>,
    plan: Arc<str>,
    environment: Environment,
}

impl Principal {
    /// A principal for `key_id` of `account_id`, with the kind's default
    /// scopes and environment and the plan `free`.
    pub fn new(account_id: impl Into<Arc<str>>, key_id: impl Into<Arc<str>>, kind: KeyKind) -> Principal {
        Principal(Arc::new(PrincipalData {
            account_id: account_id.into(),
            key_id: key_id.into(),
            kind,
            scopes: kind.default_scopes(),
            plan: Arc::from("free"),
            environment: kind.environment(),
        }))
    }

    fn data_mut(&mut self) -> &mut PrincipalData {
        // Builder methods run while the principal is being made, when this
        // is the only reference; `make_mut` clones only if it is not.
        Arc::make_mut(&mut self.0)
    }

    /// Replaces the scopes.
    pub fn with_scopes(mut self, scopes: impl IntoIterator<Item = Scope>) -> Principal {
        self.data_mut().scopes = scopes.into_iter().collect();
        self
    }

    /// Sets the plan name, which rate limiting maps to limits.
    pub fn with_plan(mut self, plan: impl Into<Arc<str>>) -> Principal {
        self.data_mut().plan = plan.into();
        self
    }

    /// Sets the environment.
    pub fn with_environment(mut self, environment: Environment) -> Principal {
        self.data_mut().environment = environment;
        self
    }

    /// The account the key belongs to.
    pub fn account_id(&self) -> &str {
        &self.0.account_id
    }

    /// The key's public id (never its secret value).
    pub fn key_id(&self) -> &str {
        &self.0.key_id
    }

    /// The key's kind.
    pub fn kind(&self) -> KeyKind {
        self.0.kind
    }

    /// The granted scopes.
    pub fn scopes(&self) -> &[Scope] {
        &self.0.scopes
    }

    /// Whether the principal holds `scope`, directly or through [`Scope::ALL`].
    pub fn has_scope(&self, scope: &str) -> bool {
        self.0
            .scopes
            .iter()
            .any(|granted| granted.as_str() == scope || *granted == Scope::ALL)
    }

    /// The plan name.
    pub fn plan(&self) -> &str {
        &self.0.plan
    }

    /// The environment the key acts in.
    pub fn environment(&self) -> Environment {
        self.0.environment
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("account_id", &self.account_id())
            .field("key_id", &self.key_id())
            .field("kind", &self.kind())
            .field("scopes", &self.scopes())
            .field("plan", &self.plan())
            .field("environment", &self.environment())
            .finish()
    }
}

#[cfg(feature = "axum")]
mod extract {
    use super::Principal;
    use crate::rejection::Rejection;
    use axum::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum::response::{IntoResponse, Response};
    use http::request::Parts;

    /// Extracts the principal that `BearerAuthLayer` inserted. A handler
    /// reached without it is a wiring mistake, answered with 401 rather
    /// than a panic.
    impl<S: Send + Sync> FromRequestParts<S> for Principal {
        type Rejection = Response;

        async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
            parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
                Rejection::unauthorized("Missing API key.")
                    .render_default(&parts.headers)
                    .into_response()
            })
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
        type Rejection = std::convert::Infallible;

        async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
            Ok(parts.extensions.get::<Principal>().cloned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_their_wire_names() {
        for kind in KeyKind::ALL {
            assert_eq!(KeyKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(KeyKind::parse("admin"), None);
    }

    #[test]
    fn read_only_keys_allow_only_safe_methods() {
        use http::Method;
        assert!(KeyKind::ReadOnly.allows_method(&Method::GET));
        assert!(KeyKind::ReadOnly.allows_method(&Method::HEAD));
        for method in [
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ] {
            assert!(!KeyKind::ReadOnly.allows_method(&method), "{method}");
            assert!(KeyKind::Production.allows_method(&method));
            assert!(KeyKind::Sandbox.allows_method(&method));
        }
    }

    #[test]
    fn sandbox_keys_act_in_the_sandbox() {
        assert_eq!(
            Principal::new("a", "k", KeyKind::Sandbox).environment(),
            Environment::Sandbox
        );
        assert_eq!(
            Principal::new("a", "k", KeyKind::Production).environment(),
            Environment::Live
        );
    }

    #[test]
    fn the_all_scope_grants_everything() {
        let production = Principal::new("a", "k", KeyKind::Production);
        assert!(production.has_scope("messages:write"));
        let narrow = production.clone().with_scopes([Scope::new("messages:read")]);
        assert!(narrow.has_scope("messages:read"));
        assert!(!narrow.has_scope("messages:write"));
        let read_only = Principal::new("a", "k", KeyKind::ReadOnly);
        assert!(read_only.has_scope("read"));
        assert!(!read_only.has_scope("messages:write"));
    }
}
