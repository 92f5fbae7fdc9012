//! [`Completion`]: what becomes of the inner service's answer to a
//! deduplicated request — stored under its claim, or the claim released.

use std::sync::Arc;

use bytes::Bytes;
use http::{response, HeaderMap, Response};
use http_body::Body;
use tollgate_core::gate::Finish;
use tollgate_core::{is_grpc, MaybeReady};

use crate::body::{buffer_response, BufferedResponse, PassThroughBody};
use crate::claim::ClaimGuard;
use crate::config::Config;
use crate::replay::{replacement_to_stored, to_stored};
use crate::storable::Storable;

/// The finishing step of [`Deduplicate`](crate::Deduplicate): reads the
/// inner service's response, stores it under the request's claim and
/// answers with it; or, when it cannot be stored (an inner error, a
/// response not kept, too large or failing), releases the claim and hands
/// the response on as it came. A response to a request the layer let
/// through, or ran without a claim (failing open), is left untouched.
///
/// Dropped before it is done (the client went away), it releases the claim.
pub struct Completion(Option<Claimed>);

struct Claimed {
    claim: ClaimGuard,
    config: Arc<Config>,
}

impl Completion {
    /// Leaves the response untouched.
    pub(crate) fn untouched() -> Completion {
        Completion(None)
    }

    /// Stores the response under `claim`.
    pub(crate) fn claimed(claim: ClaimGuard, config: Arc<Config>) -> Completion {
        Completion(Some(Claimed { claim, config }))
    }
}

impl std::fmt::Debug for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Completion")
            .field(&if self.0.is_some() { "claimed" } else { "untouched" })
            .finish()
    }
}

impl<B, E> Finish<B, E> for Completion
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Send,
    E: Send + 'static,
{
    type Body = PassThroughBody<B>;

    fn finish(self, result: Result<Response<B>, E>) -> MaybeReady<Result<Response<PassThroughBody<B>>, E>> {
        // The handler's say is never handed on.
        let result = result.map(|mut response| {
            let storable = response.extensions_mut().remove::<Storable>();
            (response, storable)
        });
        let Some(Claimed { claim, config }) = self.0 else {
            return MaybeReady::ready(result.map(|(response, _)| untouched(response)));
        };
        let (response, say) = match result {
            Ok(answer) => answer,
            // Released before the error is reported, so a retry can run.
            Err(error) => return claim.release().map(move |()| Err(error)),
        };
        let (parts, body) = response.into_parts();
        match say {
            Some(Storable::Skip) => {
                let response = Response::from_parts(parts, PassThroughBody::new(body));
                return claim.release().map(move |()| Ok(response));
            }
            Some(Storable::Replace(replacement)) => {
                // The substitute is stored; the real response goes on as it came.
                let response = Response::from_parts(parts, PassThroughBody::new(body));
                return claim
                    .complete(replacement_to_stored(replacement), config.ttl)
                    .map(move |stored| {
                        log_completion(stored);
                        Ok(response)
                    });
            }
            None => {}
        }
        if !storable(&config, &parts, None) {
            let response = Response::from_parts(parts, PassThroughBody::new(body));
            return claim.release().map(move |()| Ok(response));
        }
        MaybeReady::boxed(async move { Ok(store(claim, &config, parts, body).await) })
    }
}

fn untouched<B: Body>(response: Response<B>) -> Response<PassThroughBody<B>> {
    response.map(PassThroughBody::new)
}

/// Reads the response body, stores the response under the claim and
/// answers with it; or, when it cannot be stored, releases the claim and
/// hands the response on.
async fn store<B>(claim: ClaimGuard, config: &Config, parts: response::Parts, body: B) -> Response<PassThroughBody<B>>
where
    B: Body<Data = Bytes>,
{
    let body = match buffer_response(body, config.max_response_body).await {
        BufferedResponse::Whole(body) if !storable(config, &parts, body.trailers.as_ref()) => {
            claim.release().await;
            body
        }
        BufferedResponse::Whole(body) => {
            log_completion(claim.complete(to_stored(&parts, &body), config.ttl).await);
            body
        }
        BufferedResponse::Unstorable(body) => {
            tracing::debug!("response not storable (too large or a read error); claim released");
            claim.release().await;
            return Response::from_parts(parts, body);
        }
    };
    Response::from_parts(parts, PassThroughBody::whole(body))
}

fn log_completion(stored: Result<bool, tollgate_core::StoreError>) {
    match stored {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            "the idempotency claim expired before the response was stored; \
             is the lock timeout shorter than the handler?"
        ),
        Err(error) => tracing::error!(%error, "could not store the idempotent response"),
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
