//! The two asynchronous halves of a deduplicated request: before the inner
//! service runs ([`prepare`]) and after it answered ([`finish`]).

use std::sync::Arc;

use bytes::Bytes;
use http::{request, response, HeaderMap, Request, Response};
use http_body::Body;
use http_body_util::{Either, Full};
use tollgate_core::idempotency::{BeginOutcome, IdempotencyKey, IdempotencyStore};
use tollgate_core::rejection::is_grpc;
use tollgate_core::Rejection;

use crate::body::{buffer_request, buffer_response, BufferedResponse, PassThroughBody, RequestBodyError, WholeBody};
use crate::claim::ClaimGuard;
use crate::config::Config;
use crate::fingerprint::fingerprint;
use crate::rejections;
use crate::replay::{replay, to_stored};
use crate::IdempotencyBody;

/// Where [`prepare`] leaves a request.
pub(crate) enum Prepared<St: IdempotencyStore> {
    /// Answer with a refusal, without running the inner service.
    Respond(Response<Full<Bytes>>),
    /// Answer with the stored response, without running the inner service.
    Replay(Response<WholeBody>),
    /// Run the inner service with the rebuilt request, then complete the
    /// claim (none when the store failed and the layer fails open).
    Run {
        request: Request<Full<Bytes>>,
        claim: Option<ClaimGuard<St>>,
    },
}

fn refuse<St: IdempotencyStore>(config: &Config, rejection: &Rejection, headers: &HeaderMap) -> Prepared<St> {
    Prepared::Respond(config.renderer.render(rejection, headers))
}

/// Buffers the body, fingerprints the request and begins the key.
pub(crate) async fn prepare<St, B>(
    store: Arc<St>,
    config: Arc<Config>,
    key: IdempotencyKey,
    parts: request::Parts,
    body: B,
) -> Prepared<St>
where
    St: IdempotencyStore,
    B: Body<Data = Bytes>,
{
    let body = match buffer_request(body, config.max_request_body).await {
        Ok(body) => body,
        Err(error) => {
            let rejection = match error {
                RequestBodyError::TooLarge => rejections::payload_too_large(config.max_request_body),
                RequestBodyError::Trailers => rejections::trailers_unsupported(),
                RequestBodyError::Unreadable => rejections::unreadable_body(),
            };
            return refuse(&config, &rejection, &parts.headers);
        }
    };
    let fingerprint = fingerprint(&parts.method, &parts.uri, &body);
    let claim = match store.begin(&key, fingerprint, config.lock_timeout).await {
        Ok(BeginOutcome::Claimed(token)) => Some(ClaimGuard::new(store, key, token)),
        Ok(BeginOutcome::InProgress) => {
            return refuse(&config, &rejections::in_progress(config.retry_after), &parts.headers);
        }
        Ok(BeginOutcome::FingerprintMismatch) => {
            return refuse(&config, &rejections::key_reused(), &parts.headers);
        }
        Ok(BeginOutcome::Completed(stored)) => {
            return match replay(stored) {
                Some(response) => Prepared::Replay(response),
                None => {
                    tracing::error!(scope = key.scope(), "the idempotency store returned a corrupt response");
                    refuse(&config, &Rejection::store_unavailable(), &parts.headers)
                }
            };
        }
        Err(error) if config.fail_open => {
            tracing::warn!(%error, "idempotency store unavailable; running the request without deduplication");
            None
        }
        Err(error) => {
            tracing::error!(%error, "idempotency store unavailable; refusing the request");
            return refuse(&config, &Rejection::store_unavailable(), &parts.headers);
        }
    };
    Prepared::Run {
        request: Request::from_parts(parts, Full::new(body)),
        claim,
    }
}

/// Reads the inner service's response, stores it under the claim and
/// answers with it; or, when it cannot be stored, releases the claim and
/// hands the response on.
pub(crate) async fn finish<St, B>(
    claim: ClaimGuard<St>,
    config: Arc<Config>,
    response: Response<B>,
) -> Response<IdempotencyBody<B>>
where
    St: IdempotencyStore,
    B: Body<Data = Bytes>,
{
    let (parts, body) = response.into_parts();
    if !storable(&config, &parts, None) {
        claim.release().await;
        return Response::from_parts(parts, Either::Left(PassThroughBody::new(body)));
    }
    match buffer_response(body, config.max_response_body).await {
        BufferedResponse::Whole(body) if !storable(&config, &parts, body.trailers.as_ref()) => {
            claim.release().await;
            Response::from_parts(parts, body.into_body())
        }
        BufferedResponse::Whole(body) => {
            match claim.complete(to_stored(&parts, &body), config.ttl).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!(
                    "the idempotency claim expired before the response was stored; \
                     is the lock timeout shorter than the handler?"
                ),
                Err(error) => tracing::error!(%error, "could not store the idempotent response"),
            }
            Response::from_parts(parts, body.into_body())
        }
        BufferedResponse::Unstorable(body) => {
            tracing::debug!("response not storable (too large or a read error); claim released");
            claim.release().await;
            Response::from_parts(parts, Either::Left(body))
        }
    }
}

/// Whether a response with this head (and these trailers, once read) is
/// kept: never a 1xx, and no server error unless the layer stores them. A
/// gRPC response is always HTTP 200; its status is `grpc-status`, in the
/// headers (a trailers-only answer) or in the trailers.
fn storable(config: &Config, parts: &response::Parts, trailers: Option<&HeaderMap>) -> bool {
    if parts.status.is_informational() {
        return false;
    }
    if config.store_server_errors {
        return true;
    }
    let grpc_server_error = is_grpc(&parts.headers)
        && [Some(&parts.headers), trailers].into_iter().flatten().any(|fields| {
            fields
                .get("grpc-status")
                .is_some_and(|code| is_grpc_server_error(code.as_bytes()))
        });
    !parts.status.is_server_error() && !grpc_server_error
}

// The gRPC codes that mean the server failed rather than the request:
// UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE and
// DATA_LOSS (the 5xx of the usual HTTP mapping).
fn is_grpc_server_error(code: &[u8]) -> bool {
    matches!(code, b"2" | b"4" | b"12" | b"13" | b"14" | b"15")
}
