//! [`ResponseFuture`]: the response future of [`Idempotency`](crate::Idempotency).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use tollgate_core::idempotency::IdempotencyStore;
use tower_service::Service;

use crate::body::{PassThroughBody, WholeBody};
use crate::claim::ClaimGuard;
use crate::config::Config;
use crate::flow::{finish, Prepared};
use crate::{IdempotencyBody, RequestBody};

// Store calls return unnameable `impl Future`s, so the steps that call the
// store are boxed; the inner service's future is not.
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

pin_project! {
    /// The response future of [`Idempotency`](crate::Idempotency).
    ///
    /// Dropping it while the inner service runs or while the response is
    /// being stored releases the claim on the key, so the client's retry runs.
    pub struct ResponseFuture<S, St, ReqBody, ResBody>
    where
        S: Service<Request<RequestBody<ReqBody>>>,
        St: IdempotencyStore,
        ResBody: Body,
    {
        #[pin]
        state: State<S, St, ReqBody, ResBody>,
        config: Option<Arc<Config>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, St, ReqBody, ResBody>
    where
        S: Service<Request<RequestBody<ReqBody>>>,
        St: IdempotencyStore,
        ResBody: Body,
    {
        // Answered without the inner service (a refusal or a replay).
        Respond { response: Option<Response<IdempotencyBody<ResBody>>> },
        // Not the layer's business.
        PassThrough { #[pin] future: S::Future },
        // Buffering the body and beginning the key; the readied inner
        // service waits to be called.
        Preparing { inner: Option<S>, prepare: BoxFuture<Prepared<St>> },
        // The inner service runs under the claim.
        Running { #[pin] future: S::Future, claim: Option<ClaimGuard<St>> },
        // Reading and storing the response.
        Finishing { finish: BoxFuture<Response<IdempotencyBody<ResBody>>> },
        // The inner service failed: releasing the claim before reporting it.
        Releasing { release: BoxFuture<()>, error: Option<S::Error> },
    }
}

impl<S, St, ReqBody, ResBody> ResponseFuture<S, St, ReqBody, ResBody>
where
    S: Service<Request<RequestBody<ReqBody>>>,
    St: IdempotencyStore,
    ResBody: Body,
{
    pub(crate) fn respond(response: Response<Full<Bytes>>) -> Self {
        ResponseFuture {
            state: State::Respond {
                response: Some(response.map(Either::Right)),
            },
            config: None,
        }
    }

    pub(crate) fn pass_through(future: S::Future) -> Self {
        ResponseFuture {
            state: State::PassThrough { future },
            config: None,
        }
    }

    pub(crate) fn deduplicate(inner: S, config: Arc<Config>, prepare: BoxFuture<Prepared<St>>) -> Self {
        ResponseFuture {
            state: State::Preparing {
                inner: Some(inner),
                prepare,
            },
            config: Some(config),
        }
    }
}

const POLLED_AFTER_COMPLETION: &str = "ResponseFuture polled after completion";

impl<S, St, ReqBody, ResBody> Future for ResponseFuture<S, St, ReqBody, ResBody>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
    St: IdempotencyStore,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send,
{
    type Output = Result<Response<IdempotencyBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Respond { response } => {
                    return Poll::Ready(Ok(response.take().expect(POLLED_AFTER_COMPLETION)));
                }
                StateProj::PassThrough { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(untouched(response)));
                }
                StateProj::Preparing { inner, prepare } => match ready!(prepare.as_mut().poll(cx)) {
                    Prepared::Respond(response) => State::Respond {
                        response: Some(response.map(Either::Right)),
                    },
                    Prepared::Replay(response) => State::Respond {
                        response: Some(response.map(WholeBody::into_body)),
                    },
                    Prepared::Run { request, claim } => {
                        let mut inner = inner.take().expect(POLLED_AFTER_COMPLETION);
                        State::Running {
                            future: inner.call(request.map(Either::Right)),
                            claim,
                        }
                    }
                },
                StateProj::Running { future, claim } => match (ready!(future.poll(cx)), claim.take()) {
                    (Ok(response), Some(claim)) => {
                        let config = this.config.clone().expect("deduplicated requests carry the config");
                        State::Finishing {
                            finish: Box::pin(finish(claim, config, response)),
                        }
                    }
                    (Err(error), Some(claim)) => State::Releasing {
                        release: Box::pin(claim.release()),
                        error: Some(error),
                    },
                    // Failing open: nothing to store or release.
                    (Ok(response), None) => return Poll::Ready(Ok(untouched(response))),
                    (Err(error), None) => return Poll::Ready(Err(error)),
                },
                StateProj::Finishing { finish } => return Poll::Ready(Ok(ready!(finish.as_mut().poll(cx)))),
                StateProj::Releasing { release, error } => {
                    ready!(release.as_mut().poll(cx));
                    return Poll::Ready(Err(error.take().expect(POLLED_AFTER_COMPLETION)));
                }
            };
            this.state.set(next);
        }
    }
}

fn untouched<B: Body>(response: Response<B>) -> Response<IdempotencyBody<B>> {
    response.map(|body| Either::Left(PassThroughBody::new(body)))
}
