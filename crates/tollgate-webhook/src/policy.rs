//! [`VerifySignature`]: the gate [`Policy`] of
//! [`WebhookSignature`](crate::WebhookSignature), and [`ForgetOnFailure`],
//! its finishing step.
//!
//! Per request: the announced length and the signature headers (and the
//! timestamp) are judged before a byte of body is read; then the body is
//! read whole, its signature checked, and with a replay store its id
//! remembered — the inner service runs only for a first sighting.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum_core::body::Body;
use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderMap, Request, Response};
use http_body_util::{Collected, Full, LengthLimitError};
use tollgate_core::body::read_body;
use tollgate_core::gate::{Finish, Policy, Verdict};
use tollgate_core::metrics::{self, Layer as Metered};
use tollgate_core::replay::ReplayStore;
use tollgate_core::{unix_secs, BoxError, MaybeReady, Rejection, Renderer, SharedClock};

use crate::rejections;
use crate::scheme::Presented;
use crate::verify::{VerifiedWebhook, Verifier};

/// Everything the decision reads, set by the
/// [`WebhookSignatureLayer`](crate::WebhookSignatureLayer)'s builders.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) verifier: Verifier,
    pub(crate) clock: SharedClock,
    pub(crate) renderer: Renderer,
    pub(crate) max_body_size: usize,
    pub(crate) replay: Option<Arc<dyn ReplayStore>>,
    pub(crate) replay_scope: Arc<str>,
    pub(crate) fail_open: bool,
    pub(crate) forget_on_server_error: bool,
}

impl Config {
    /// How long the replay store remembers `verified`: until its timestamp
    /// leaves the tolerance window, or for the tolerance without one.
    fn replay_ttl(&self, verified: &VerifiedWebhook) -> Duration {
        let tolerance = self.verifier.tolerance_window();
        match verified.timestamp() {
            Some(timestamp) => {
                let now = unix_secs(self.clock.now());
                let expires = timestamp.saturating_add(tolerance.as_secs());
                // One more second: the window's last second is inclusive.
                Duration::from_secs(expires.saturating_sub(now).saturating_add(1))
            }
            // Stores cannot expire an entry in zero time (Redis refuses `PX 0`).
            None => tolerance.max(Duration::from_secs(1)),
        }
    }

    fn refuse<F>(&self, rejection: &Rejection, headers: &HeaderMap) -> Verdict<Body, F, Full<Bytes>> {
        meter_refusal(rejection);
        Verdict::Respond(self.renderer.render(rejection, headers))
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("verifier", &self.verifier)
            .field("max_body_size", &self.max_body_size)
            .field("replay_store", &self.replay.is_some())
            .field("replay_scope", &self.replay_scope)
            .field("fail_open", &self.fail_open)
            .field("forget_on_server_error", &self.forget_on_server_error)
            .finish_non_exhaustive()
    }
}

/// The policy of [`WebhookSignature`](crate::WebhookSignature): lets a
/// webhook through only if its signature verifies over its exact body (and,
/// with a replay store, it was not accepted before). The inner service
/// receives the body's bytes, unchanged, as an `axum_core::body::Body`
/// (axum's `Body`), and the [`VerifiedWebhook`] in the extensions.
#[derive(Clone, Debug)]
pub struct VerifySignature {
    config: Arc<Config>,
}

impl VerifySignature {
    pub(crate) fn new(config: Config) -> VerifySignature {
        VerifySignature {
            config: Arc::new(config),
        }
    }
}

type Decision = MaybeReady<Verdict<Body, ForgetOnFailure, Full<Bytes>>>;

impl<B> Policy<B> for VerifySignature
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Body = Body;
    type Finish = ForgetOnFailure;
    type Answer = Full<Bytes>;

    fn decide(&self, request: Request<B>) -> Decision {
        let config = &self.config;
        if content_length(request.headers()).is_some_and(|length| length > config.max_body_size as u64) {
            tracing::debug!(
                limit = config.max_body_size,
                "webhook refused: Content-Length over the limit"
            );
            let rejection = rejections::payload_too_large(config.max_body_size);
            return MaybeReady::ready(config.refuse(&rejection, request.headers()));
        }
        // Headers and timestamp are judged before reading a byte of body.
        let presented = config.verifier.parse(request.headers()).and_then(|presented| {
            config.verifier.check_timestamp(&presented, config.clock.now())?;
            Ok(presented)
        });
        let presented = match presented {
            Ok(presented) => presented,
            Err(error) => {
                tracing::debug!(%error, "webhook refused");
                return MaybeReady::ready(config.refuse(&error.to_rejection(), request.headers()));
            }
        };
        let (parts, body) = request.into_parts();
        let config = self.config.clone();
        // Trailers are not signed by any scheme; they are dropped.
        read_body(Body::new(body), config.max_body_size).then(move |body| verify(config, parts, presented, body))
    }
}

// The refusal's metric: `store_unavailable`, or `webhook_rejected` with
// the refusal's code (a fixed set) as `reason`.
fn meter_refusal(rejection: &Rejection) {
    use crate::rejections::*;
    let reason = match rejection.code() {
        MISSING_SIGNATURE => MISSING_SIGNATURE,
        INVALID_SIGNATURE => INVALID_SIGNATURE,
        TIMESTAMP_OUT_OF_TOLERANCE => TIMESTAMP_OUT_OF_TOLERANCE,
        REPLAYED => REPLAYED,
        PAYLOAD_TOO_LARGE => PAYLOAD_TOO_LARGE,
        INVALID_BODY => INVALID_BODY,
        _ if rejection.status() == http::StatusCode::SERVICE_UNAVAILABLE => {
            return metrics::store_unavailable(Metered::Webhook);
        }
        _ => "OTHER",
    };
    metrics::webhook_rejected(reason);
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
}

// Checks the signature over the body read whole, then asks the replay store.
fn verify(
    config: Arc<Config>,
    parts: Parts,
    presented: Presented,
    body: Result<Collected<Bytes>, BoxError>,
) -> Decision {
    let bytes = match body {
        Ok(body) => body.to_bytes(),
        Err(error) => {
            let rejection = if error.is::<LengthLimitError>() {
                tracing::debug!(limit = config.max_body_size, "webhook refused: body over the limit");
                rejections::payload_too_large(config.max_body_size)
            } else {
                tracing::debug!(%error, "webhook body could not be read");
                rejections::invalid_body()
            };
            return MaybeReady::ready(config.refuse(&rejection, &parts.headers));
        }
    };
    let verified = match config.verifier.check_signature(&presented, &bytes) {
        Ok(verified) => verified,
        Err(error) => {
            tracing::debug!(%error, "webhook refused");
            return MaybeReady::ready(config.refuse(&error.to_rejection(), &parts.headers));
        }
    };
    let Some(store) = config.replay.clone() else {
        let request = with_verified(parts, bytes, verified);
        metrics::allowed_anonymous(Metered::Webhook);
        return MaybeReady::ready(Verdict::Proceed(request, ForgetOnFailure(None)));
    };
    let (id, ttl) = (verified.replay_id(), config.replay_ttl(&verified));
    let request = with_verified(parts, bytes, verified);
    store
        .check_and_remember(&config.replay_scope, &id, ttl)
        .map(move |first| match first {
            Ok(true) => {
                let forget = config
                    .forget_on_server_error
                    .then(|| (store, config.replay_scope.clone(), id));
                metrics::allowed_anonymous(Metered::Webhook);
                Verdict::Proceed(request, ForgetOnFailure(forget))
            }
            Ok(false) => {
                tracing::info!("webhook refused: replayed message");
                config.refuse(&rejections::replayed(), request.headers())
            }
            Err(error) if config.fail_open => {
                tracing::error!(%error, "replay store failed; letting the webhook through (fail open)");
                metrics::store_unavailable(Metered::Webhook);
                Verdict::Proceed(request, ForgetOnFailure(None))
            }
            Err(error) => {
                tracing::error!(%error, "replay store failed; refusing the webhook (fail closed)");
                config.refuse(&Rejection::store_unavailable(), request.headers())
            }
        })
}

// The request the inner service receives: the exact bytes that were signed.
fn with_verified(parts: Parts, bytes: Bytes, verified: VerifiedWebhook) -> Request<Body> {
    let mut request = Request::from_parts(parts, Body::from(bytes));
    request.extensions_mut().insert(verified);
    request
}

/// The finishing step of [`VerifySignature`]: when the handler answered a
/// remembered message with a 5xx, the replay store forgets its id so the
/// sender's retry is accepted. Otherwise the response goes out untouched.
pub struct ForgetOnFailure(Option<(Arc<dyn ReplayStore>, Arc<str>, String)>);

impl fmt::Debug for ForgetOnFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ForgetOnFailure").field(&self.0.is_some()).finish()
    }
}

impl<ResBody, E> Finish<ResBody, E> for ForgetOnFailure
where
    ResBody: Send + 'static,
{
    type Body = ResBody;

    fn finish(self, result: Result<Response<ResBody>, E>) -> MaybeReady<Result<Response<ResBody>, E>> {
        match (self.0, result) {
            (Some((store, scope, id)), Ok(response)) if response.status().is_server_error() => {
                store.forget(&scope, &id).map(move |forgotten| {
                    if let Err(error) = forgotten {
                        tracing::error!(%error, "replay store failed to forget a webhook the handler failed on");
                    }
                    Ok(response)
                })
            }
            (_, result) => MaybeReady::ready(result),
        }
    }
}
