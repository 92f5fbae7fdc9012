//! [`Deduplicate`]: the gate [`Policy`] of [`Idempotency`](crate::Idempotency).
//!
//! Per request: whether the layer deduplicates it at all (method, scope,
//! key) or refuses it from its headers; then the body read whole, the
//! fingerprint, and one atomic `begin` — whose answer is a replay, a
//! refusal, or a claim that the request runs under and that its
//! [`Completion`] completes or releases.

use std::fmt;
use std::sync::Arc;

use axum_core::body::Body;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Request, StatusCode};
use tollgate_core::body::read_body;
use tollgate_core::gate::{Policy, Verdict};
use tollgate_core::idempotency::{BeginOutcome, IdempotencyKey};
use tollgate_core::metrics::{self, Layer as Metered};
use tollgate_core::{BoxError, MaybeReady, Rejection, StoreError};

use crate::body::{request_bytes, ReplayBody, RequestBodyError, WholeBody};
use crate::claim::ClaimGuard;
use crate::complete::Completion;
use crate::config::{Config, Plan};
use crate::fingerprint::fingerprint;
use crate::rejections;
use crate::replay::replay;

/// The policy of [`Idempotency`](crate::Idempotency): runs each keyed
/// request once under a claim on its key and answers retries with the
/// stored response. Built by [`IdempotencyLayer`](crate::IdempotencyLayer);
/// clones share its store.
///
/// The inner service receives an `axum_core::body::Body` (axum's `Body`):
/// the original body for requests the layer does not deduplicate (not
/// boxed again when it is one already), the buffered bytes for those it does.
#[derive(Clone)]
pub struct Deduplicate {
    config: Arc<Config>,
}

impl Deduplicate {
    pub(crate) fn new(config: Arc<Config>) -> Deduplicate {
        Deduplicate { config }
    }
}

impl fmt::Debug for Deduplicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deduplicate")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

type Decision = MaybeReady<Verdict<Body, Completion, ReplayBody>>;

impl<B> Policy<B> for Deduplicate
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Body = Body;
    type Finish = Completion;
    type Answer = ReplayBody;

    fn decide(&self, request: Request<B>) -> Decision {
        let key = match self.config.plan(&request) {
            Plan::PassThrough => {
                return MaybeReady::ready(Verdict::Proceed(request.map(Body::new), Completion::untouched()));
            }
            Plan::Reject(rejection) => return MaybeReady::ready(refuse(&self.config, &rejection, request.headers())),
            Plan::Deduplicate(key) => key,
        };
        let (parts, body) = request.into_parts();
        let config = self.config.clone();
        read_body(Body::new(body), config.max_request_body)
            .then(move |read| begin(config, key, parts, request_bytes(read)))
    }
}

// Fingerprints the request read whole and begins its key.
fn begin(config: Arc<Config>, key: IdempotencyKey, parts: Parts, body: Result<Bytes, RequestBodyError>) -> Decision {
    let body = match body {
        Ok(body) => body,
        Err(error) => {
            let rejection = match error {
                RequestBodyError::TooLarge => rejections::payload_too_large(config.max_request_body),
                RequestBodyError::Trailers => rejections::trailers_unsupported(),
                RequestBodyError::Unreadable => rejections::unreadable_body(),
            };
            return MaybeReady::ready(refuse(&config, &rejection, &parts.headers));
        }
    };
    let fingerprint = fingerprint(&parts.method, &parts.uri, &body);
    let beginning = config.store.begin(&key, fingerprint, config.lock_timeout);
    beginning.map(move |outcome| judge(config, outcome, key, Request::from_parts(parts, body)))
}

// What `begin`'s answer means for the request.
fn judge(
    config: Arc<Config>,
    outcome: Result<BeginOutcome, StoreError>,
    key: IdempotencyKey,
    request: Request<Bytes>,
) -> Verdict<Body, Completion, ReplayBody> {
    let finish = match outcome {
        Ok(BeginOutcome::Claimed(token)) => {
            Completion::claimed(ClaimGuard::new(config.store.clone(), key, token), config.clone())
        }
        Ok(BeginOutcome::InProgress) => {
            return refuse(&config, &rejections::in_progress(config.retry_after), request.headers());
        }
        Ok(BeginOutcome::FingerprintMismatch) => {
            return refuse(&config, &rejections::key_reused(), request.headers());
        }
        Ok(BeginOutcome::Completed(stored)) => {
            return match replay(stored) {
                Some(response) => {
                    metrics::idempotent_replay(None);
                    Verdict::Respond(response.map(WholeBody::into_replay))
                }
                None => {
                    tracing::error!(scope = key.scope(), "the idempotency store returned a corrupt response");
                    refuse(&config, &Rejection::store_unavailable(), request.headers())
                }
            };
        }
        Err(error) if config.fail_open => {
            tracing::warn!(%error, "idempotency store unavailable; running the request without deduplication");
            metrics::store_unavailable(Metered::Idempotency);
            Completion::untouched()
        }
        Err(error) => {
            tracing::error!(%error, "idempotency store unavailable; refusing the request");
            return refuse(&config, &Rejection::store_unavailable(), request.headers());
        }
    };
    metrics::allowed_anonymous(Metered::Idempotency);
    Verdict::Proceed(request.map(Body::from), finish)
}

fn refuse<B, F>(config: &Config, rejection: &Rejection, headers: &HeaderMap) -> Verdict<B, F, ReplayBody> {
    match rejection.status() {
        StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY => metrics::idempotency_conflict(None),
        StatusCode::SERVICE_UNAVAILABLE => metrics::store_unavailable(Metered::Idempotency),
        _ => {}
    }
    Verdict::Respond(config.renderer.render(rejection, headers).map(ReplayBody::refusal))
}
