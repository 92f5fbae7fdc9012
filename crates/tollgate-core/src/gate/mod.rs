//! [`Gate`]: the one service every deciding layer is built on.
//!
//! A layer is a [`Policy`]: it looks at a request and decides, now or after
//! a store answers, either to let it through (with what it needs to touch
//! the response afterwards, its [`Finish`]) or to answer it itself. The
//! gate does the rest, once for every layer:
//!
//! - a decision that is ready (a memory store, a cache hit, a refusal from
//!   a header) calls the inner service at once, the instance `poll_ready`
//!   readied, with nothing boxed or cloned;
//! - a decision still pending keeps its future: the readied inner service
//!   moves into the response future and the gate keeps a clone, the usual
//!   tower pattern for calling after an await;
//! - the inner service's result goes through the policy's [`Finish`]
//!   (rate-limit headers, storing an idempotent response), again now or later.
//!
//! Policies render their own refusals (a [`Rejection`](crate::Rejection)
//! through a [`Renderer`](crate::Renderer)) so the body type of responses a
//! layer makes itself is the policy's `Answer`, `Full<Bytes>` for most.
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tollgate_core::gate::{Gate, Policy, Verdict};
//! use tollgate_core::MaybeReady;
//! use tower::{service_fn, ServiceExt};
//!
//! // Lets through requests that carry `x-tenant`.
//! #[derive(Clone)]
//! struct RequireTenant;
//!
//! impl<B> Policy<B> for RequireTenant {
//!     type Body = B;
//!     type Finish = ();
//!     type Answer = Full<Bytes>;
//!
//!     fn decide(&self, request: Request<B>) -> MaybeReady<Verdict<B, (), Full<Bytes>>> {
//!         MaybeReady::ready(if request.headers().contains_key("x-tenant") {
//!             Verdict::Proceed(request, ())
//!         } else {
//!             let mut refusal = Response::new(Full::new(Bytes::from("no tenant")));
//!             *refusal.status_mut() = StatusCode::BAD_REQUEST;
//!             Verdict::Respond(refusal)
//!         })
//!     }
//! }
//!
//! # tokio_test::block_on(async {
//! let inner = service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok")))) });
//! let service = Gate::new(inner, RequireTenant);
//! let response = service.clone().oneshot(Request::new(())).await.unwrap();
//! assert_eq!(response.status(), StatusCode::BAD_REQUEST);
//! let tenant = Request::builder().header("x-tenant", "t1").body(()).unwrap();
//! assert_eq!(service.oneshot(tenant).await.unwrap().status(), StatusCode::OK);
//! # });
//! ```

mod future;

use std::fmt;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body_util::Either;
use tower_service::Service;

use crate::maybe_ready::MaybeReady;

pub use future::ResponseFuture;

/// What a [`Policy`] decided about a request.
pub enum Verdict<B, F, A> {
    /// Call the inner service with this request; `F` then sees its result.
    Proceed(Request<B>, F),
    /// Answer with this response; the inner service is not called.
    Respond(Response<A>),
}

impl<B, F, A> fmt::Debug for Verdict<B, F, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Proceed(request, _) => f.debug_tuple("Proceed").field(&request.uri()).finish(),
            Verdict::Respond(response) => f.debug_tuple("Respond").field(&response.status()).finish(),
        }
    }
}

/// A layer's decision about each request. See the [module docs](self).
pub trait Policy<B>: Clone {
    /// The request body the inner service receives.
    type Body;
    /// What the policy does with the inner service's result; `()` for nothing.
    type Finish;
    /// The body of responses the policy makes itself (refusals, replays).
    type Answer;

    /// Decides about `request`, now or later.
    fn decide(&self, request: Request<B>) -> MaybeReady<Verdict<Self::Body, Self::Finish, Self::Answer>>;
}

/// What a policy does with the inner service's result, once it is known.
pub trait Finish<ResBody, E> {
    /// The body of the response after this step.
    type Body;

    /// Turns the inner service's result into the layer's, now or later.
    fn finish(self, result: Result<Response<ResBody>, E>) -> MaybeReady<Result<Response<Self::Body>, E>>;
}

/// Nothing to do: the inner response goes out as it is.
impl<ResBody, E> Finish<ResBody, E> for () {
    type Body = ResBody;

    fn finish(self, result: Result<Response<ResBody>, E>) -> MaybeReady<Result<Response<ResBody>, E>> {
        MaybeReady::ready(result)
    }
}

/// The body of a gate's response: the inner service's, after the policy's
/// [`Finish`] (`Left`), or one the policy made (`Right`).
pub type GateBody<F, A> = Either<F, A>;

/// The service of every deciding layer: `S` behind policy `P`.
#[derive(Clone)]
pub struct Gate<S, P> {
    inner: S,
    policy: P,
}

impl<S, P> Gate<S, P> {
    /// `inner` behind `policy`.
    pub fn new(inner: S, policy: P) -> Gate<S, P> {
        Gate { inner, policy }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The policy.
    pub fn policy(&self) -> &P {
        &self.policy
    }
}

impl<S: fmt::Debug, P: fmt::Debug> fmt::Debug for Gate<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("inner", &self.inner)
            .field("policy", &self.policy)
            .finish()
    }
}

impl<S, P, B, ResBody> Service<Request<B>> for Gate<S, P>
where
    P: Policy<B>,
    P::Finish: Finish<ResBody, S::Error>,
    S: Service<Request<P::Body>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<GateBody<<P::Finish as Finish<ResBody, S::Error>>::Body, P::Answer>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, P::Body, P::Finish, P::Answer, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let decision = match self.policy.decide(request).into_ready() {
            Ok(verdict) => Ok(verdict),
            Err(pending) => pending.into_value_or_box(),
        };
        match decision {
            Ok(Verdict::Proceed(request, finish)) => ResponseFuture::calling(self.inner.call(request), finish),
            Ok(Verdict::Respond(response)) => ResponseFuture::respond(response),
            Err(pending) => {
                // The readied service waits in the future for the decision;
                // this one keeps a fresh clone.
                let clone = self.inner.clone();
                ResponseFuture::deciding(pending, std::mem::replace(&mut self.inner, clone))
            }
        }
    }
}

#[cfg(test)]
mod tests;
