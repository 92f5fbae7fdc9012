//! [`ResponseFuture`] of [`BearerAuth`](super::BearerAuth): the inner
//! service's future once the key is accepted, a rendered refusal, or (rarely)
//! a key lookup or last-use write still pending.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use tollgate_core::{Principal, Renderer, ResponseBody};
use tower_service::Service;

use super::Refusal;

pub(super) type CheckFuture = Pin<Box<dyn Future<Output = Result<Principal, Refusal>> + Send>>;

pin_project! {
    /// The response future of [`BearerAuth`](super::BearerAuth).
    pub struct ResponseFuture<Inner, ReqBody>
    where
        Inner: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<Inner, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<Inner, ReqBody>
    where
        Inner: Service<Request<ReqBody>>,
    {
        // A key lookup, or the write of a key's last use, still pending
        // (boxed: a store's future type cannot be named).
        Authenticating { check: CheckFuture, waiting: Option<Box<Waiting<Inner, ReqBody>>> },
        Calling { #[pin] future: Inner::Future },
        Rejected { response: Option<Response<Full<Bytes>>> },
    }
}

impl<Inner, ReqBody> ResponseFuture<Inner, ReqBody>
where
    Inner: Service<Request<ReqBody>>,
{
    pub(super) fn calling(future: Inner::Future) -> Self {
        ResponseFuture {
            state: State::Calling { future },
        }
    }

    pub(super) fn rejected(response: Response<Full<Bytes>>) -> Self {
        ResponseFuture {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }

    pub(super) fn authenticating(check: CheckFuture, waiting: Waiting<Inner, ReqBody>) -> Self {
        ResponseFuture {
            state: State::Authenticating {
                check,
                // Boxed so that this rarer state does not make every
                // response future as large as a request.
                waiting: Some(Box::new(waiting)),
            },
        }
    }
}

impl<Inner, ReqBody, ResBody> Future for ResponseFuture<Inner, ReqBody>
where
    Inner: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, Inner::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Authenticating { check, waiting } => {
                    let outcome = ready!(check.as_mut().poll(cx));
                    let Waiting {
                        mut request,
                        mut inner,
                        renderer,
                    } = *waiting.take().expect("polled after completion");
                    match outcome {
                        Ok(principal) => {
                            request.extensions_mut().insert(principal);
                            let future = inner.call(request);
                            this.state.set(State::Calling { future });
                        }
                        Err(refusal) => {
                            let response = renderer.render(refusal.rejection(), request.headers());
                            this.state.set(State::Rejected { response: None });
                            return Poll::Ready(Ok(response.map(Either::Right)));
                        }
                    }
                }
                StateProj::Calling { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(Either::Left)));
                }
                StateProj::Rejected { response } => {
                    let response = response.take().expect("polled after completion");
                    return Poll::Ready(Ok(response.map(Either::Right)));
                }
            }
        }
    }
}

impl<Inner, ReqBody> fmt::Debug for ResponseFuture<Inner, ReqBody>
where
    Inner: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

// What a pending lookup's response future holds until the lookup is done.
pub(super) struct Waiting<Inner, B> {
    pub(super) request: Request<B>,
    pub(super) inner: Inner,
    pub(super) renderer: Renderer,
}
