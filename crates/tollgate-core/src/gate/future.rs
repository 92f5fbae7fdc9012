//! [`ResponseFuture`] of [`Gate`](super::Gate).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use http_body_util::Either;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{Finish, GateBody, Verdict};
use crate::maybe_ready::BoxFuture;

const POLLED_AFTER_COMPLETION: &str = "gate ResponseFuture polled after completion";

pin_project! {
    /// The response future of [`Gate`](super::Gate): the decision if it is
    /// still pending, then the inner service's future, then the policy's
    /// finishing step if that waits; or the policy's own answer.
    pub struct ResponseFuture<S, B, F, A, R>
    where
        S: Service<Request<B>>,
        F: Finish<R, S::Error>,
    {
        #[pin]
        state: State<S, B, F, A, R>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B, F, A, R>
    where
        S: Service<Request<B>>,
        F: Finish<R, S::Error>,
    {
        // Boxed while pending, so these states stay a pointer wide.
        Deciding { decision: BoxFuture<Verdict<B, F, A>>, inner: Option<S> },
        Calling { #[pin] future: S::Future, finish: Option<F> },
        Finishing { finishing: BoxFuture<Result<Response<F::Body>, S::Error>> },
        Respond { response: Option<Response<A>> },
    }
}

impl<S, B, F, A, R> ResponseFuture<S, B, F, A, R>
where
    S: Service<Request<B>>,
    F: Finish<R, S::Error>,
{
    pub(super) fn calling(future: S::Future, finish: F) -> Self {
        ResponseFuture {
            state: State::Calling {
                future,
                finish: Some(finish),
            },
        }
    }

    pub(super) fn respond(response: Response<A>) -> Self {
        ResponseFuture {
            state: State::Respond {
                response: Some(response),
            },
        }
    }

    pub(super) fn deciding(decision: BoxFuture<Verdict<B, F, A>>, inner: S) -> Self {
        ResponseFuture {
            state: State::Deciding {
                decision,
                inner: Some(inner),
            },
        }
    }
}

impl<S, B, F, A, R> Future for ResponseFuture<S, B, F, A, R>
where
    S: Service<Request<B>, Response = Response<R>>,
    F: Finish<R, S::Error>,
{
    type Output = Result<Response<GateBody<F::Body, A>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Deciding { decision, inner } => match ready!(decision.as_mut().poll(cx)) {
                    Verdict::Proceed(request, finish) => {
                        let future = inner.take().expect(POLLED_AFTER_COMPLETION).call(request);
                        state.set(State::Calling {
                            future,
                            finish: Some(finish),
                        });
                    }
                    Verdict::Respond(response) => {
                        state.set(State::Respond { response: None });
                        return Poll::Ready(Ok(response.map(Either::Right)));
                    }
                },
                StateProj::Calling { future, finish } => {
                    let result = ready!(future.poll(cx));
                    let finishing = finish.take().expect(POLLED_AFTER_COMPLETION).finish(result);
                    match finishing.into_value_or_box() {
                        Ok(result) => return Poll::Ready(result.map(|response| response.map(Either::Left))),
                        Err(finishing) => state.set(State::Finishing { finishing }),
                    }
                }
                StateProj::Finishing { finishing } => {
                    let result = ready!(finishing.as_mut().poll(cx));
                    return Poll::Ready(result.map(|response| response.map(Either::Left)));
                }
                StateProj::Respond { response } => {
                    let response = response.take().expect(POLLED_AFTER_COMPLETION);
                    return Poll::Ready(Ok(response.map(Either::Right)));
                }
            }
        }
    }
}

impl<S, B, F, A, R> fmt::Debug for ResponseFuture<S, B, F, A, R>
where
    S: Service<Request<B>>,
    F: Finish<R, S::Error>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
