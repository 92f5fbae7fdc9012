//! The layer's settings, and the decision each request gets from them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, CONTENT_LENGTH};
use http::{Method, Request, Uri};
use http_body::Body;
use tollgate_core::idempotency::{IdempotencyKey, IdempotencyStore};
use tollgate_core::{Principal, Rejection, Renderer};

use crate::key::{read_key, KeyError};
use crate::rejections;

/// The seed API's key header.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The header of the IETF draft and of Stripe.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// A predicate on a request's method and URI: whether a key is required,
/// whether the request is deduplicated at all.
pub(crate) type RequestPredicate = Arc<dyn Fn(&Method, &Uri) -> bool + Send + Sync>;

#[derive(Clone)]
pub(crate) enum Requirement {
    Optional,
    Always,
    When(RequestPredicate),
}

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) store: Arc<dyn IdempotencyStore>,
    pub(crate) headers: Vec<HeaderName>,
    pub(crate) methods: Vec<Method>,
    pub(crate) only_when: Option<RequestPredicate>,
    pub(crate) requirement: Requirement,
    pub(crate) fallback_scope: Option<Arc<str>>,
    pub(crate) max_request_body: usize,
    pub(crate) max_response_body: usize,
    pub(crate) ttl: Duration,
    pub(crate) lock_timeout: Duration,
    pub(crate) store_server_errors: bool,
    pub(crate) retry_after: Duration,
    pub(crate) fail_open: bool,
    pub(crate) renderer: Renderer,
}

impl Config {
    /// The defaults, keeping keys and responses in `store`.
    pub(crate) fn new(store: Arc<dyn IdempotencyStore>) -> Config {
        Config {
            store,
            headers: vec![X_REQUEST_ID],
            methods: vec![Method::POST, Method::PATCH],
            only_when: None,
            requirement: Requirement::Optional,
            fallback_scope: None,
            max_request_body: 1024 * 1024,
            max_response_body: 1024 * 1024,
            ttl: Duration::from_secs(24 * 3600),
            lock_timeout: Duration::from_secs(60),
            store_server_errors: true,
            retry_after: Duration::from_secs(1),
            fail_open: false,
            renderer: Renderer::default(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let requirement = match self.requirement {
            Requirement::Optional => "optional",
            Requirement::Always => "always",
            Requirement::When(_) => "when(predicate)",
        };
        f.debug_struct("Config")
            .field("headers", &self.headers)
            .field("methods", &self.methods)
            .field("only_when", &self.only_when.as_ref().map(|_| "predicate"))
            .field("requirement", &requirement)
            .field("fallback_scope", &self.fallback_scope)
            .field("max_request_body", &self.max_request_body)
            .field("max_response_body", &self.max_response_body)
            .field("ttl", &self.ttl)
            .field("lock_timeout", &self.lock_timeout)
            .field("store_server_errors", &self.store_server_errors)
            .field("retry_after", &self.retry_after)
            .field("fail_open", &self.fail_open)
            .finish()
    }
}

/// What the layer does with one request.
pub(crate) enum Plan {
    /// Not the layer's business: hand the request on untouched.
    PassThrough,
    /// Refuse before reading the body.
    Reject(Rejection),
    /// Deduplicate under this key.
    Deduplicate(IdempotencyKey),
}

impl Config {
    pub(crate) fn plan<B: Body>(&self, request: &Request<B>) -> Plan {
        if !self.methods.contains(request.method()) || !self.selects(request.method(), request.uri()) {
            return Plan::PassThrough;
        }
        let Some(scope) = self.scope(request) else {
            return Plan::PassThrough;
        };
        let key = match read_key(request.headers(), &self.headers) {
            Ok(Some(key)) => key,
            Ok(None) if self.requires_key(request.method(), request.uri()) => {
                return Plan::Reject(rejections::missing_key(&self.headers[0]));
            }
            Ok(None) => return Plan::PassThrough,
            Err(KeyError::Invalid(header)) => return Plan::Reject(rejections::invalid_key(&header)),
            Err(KeyError::Ambiguous) => return Plan::Reject(rejections::ambiguous_key()),
        };
        if announced_length(request) > self.max_request_body as u64 {
            return Plan::Reject(rejections::payload_too_large(self.max_request_body));
        }
        Plan::Deduplicate(IdempotencyKey::new(scope, key))
    }

    // Account and environment: a sandbox key's retries never replay a live
    // response, and every key of the account shares its idempotency keys
    // (a retry after a key rotation still deduplicates).
    fn scope<B>(&self, request: &Request<B>) -> Option<String> {
        match request.extensions().get::<Principal>() {
            Some(principal) => Some(format!(
                "account:{}:{}",
                principal.account_id(),
                principal.environment().as_str()
            )),
            None => self.fallback_scope.as_ref().map(|scope| format!("fallback:{scope}")),
        }
    }

    fn selects(&self, method: &Method, uri: &Uri) -> bool {
        self.only_when.as_ref().is_none_or(|predicate| predicate(method, uri))
    }

    fn requires_key(&self, method: &Method, uri: &Uri) -> bool {
        match &self.requirement {
            Requirement::Optional => false,
            Requirement::Always => true,
            Requirement::When(predicate) => predicate(method, uri),
        }
    }
}

// The larger of Content-Length and the body's own lower bound, so an
// oversized body is refused before a byte of it is read.
fn announced_length<B: Body>(request: &Request<B>) -> u64 {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.trim().parse::<u64>().ok())
        .unwrap_or(0);
    declared.max(request.body().size_hint().lower())
}
