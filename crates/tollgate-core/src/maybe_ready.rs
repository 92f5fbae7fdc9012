//! [`MaybeReady`] and [`StoreFuture`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::error::StoreError;

/// What a store method returns: its answer now, or a future of it.
pub type StoreFuture<T> = MaybeReady<Result<T, StoreError>>;

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// [`MaybeReady`]: a value that is here now or on its way, the one future
/// type every store method and every gate policy returns.
///
/// A memory store answers at once ([`MaybeReady::ready`]), a network store
/// with a boxed future ([`MaybeReady::boxed`]). The caller takes the value
/// with [`into_ready`](MaybeReady::into_ready) when it is there, which costs
/// no allocation and no waker, and otherwise keeps the same future: a call
/// is never issued twice, and stores need no synchronous twins of their
/// async methods.
///
/// ```
/// use tollgate_core::MaybeReady;
///
/// let now = MaybeReady::ready(2).map(|n| n * 21);
/// assert_eq!(now.into_ready().ok(), Some(42));
///
/// let later = MaybeReady::boxed(async { 40 }).then(|n| MaybeReady::ready(n + 2));
/// assert_eq!(tokio_test::block_on(later), 42);
/// ```
#[must_use = "a MaybeReady does nothing unless it is awaited or taken"]
pub struct MaybeReady<T>(State<T>);

enum State<T> {
    Ready(Option<T>),
    Pending(BoxFuture<T>),
}

impl<T> MaybeReady<T> {
    /// A value that is already here.
    pub fn ready(value: T) -> MaybeReady<T> {
        MaybeReady(State::Ready(Some(value)))
    }

    /// A value still to come.
    pub fn boxed(future: impl Future<Output = T> + Send + 'static) -> MaybeReady<T> {
        MaybeReady(State::Pending(Box::pin(future)))
    }

    /// The value if it is here, else the same future back.
    ///
    /// A pending future is polled once (with a waker that does nothing):
    /// one that finishes without waiting, such as a cache in front of a
    /// memory store, is taken at once too. The caller must poll a future
    /// it gets back, as it would any other.
    pub fn into_ready(self) -> Result<T, MaybeReady<T>> {
        match self.0 {
            State::Ready(Some(value)) => Ok(value),
            State::Ready(None) => panic!("MaybeReady taken after completion"),
            State::Pending(mut future) => match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(value) => Ok(value),
                Poll::Pending => Err(MaybeReady(State::Pending(future))),
            },
        }
    }
}

// Never pinned through: a ready value is moved out, a pending future is boxed.
impl<T> Unpin for MaybeReady<T> {}

impl<T> MaybeReady<T> {
    /// The value if it is already here, without polling anything.
    #[cfg(test)]
    pub(crate) fn take_if_ready(self) -> Result<T, MaybeReady<T>> {
        self.into_value_or_box()
            .map_err(|future| MaybeReady(State::Pending(future)))
    }

    /// The value if it is already here, else the boxed future, without
    /// polling anything: what the gate keeps while it waits, so that its
    /// response future holds a pointer rather than a whole request.
    pub(crate) fn into_value_or_box(self) -> Result<T, BoxFuture<T>> {
        match self.0 {
            State::Ready(Some(value)) => Ok(value),
            State::Ready(None) => panic!("MaybeReady taken after completion"),
            State::Pending(future) => Err(future),
        }
    }
}

impl<T: Send + 'static> MaybeReady<T> {
    /// Applies `f` to the value: at once if it is here, else when it comes.
    pub fn map<U>(self, f: impl FnOnce(T) -> U + Send + 'static) -> MaybeReady<U> {
        match self.0 {
            State::Ready(Some(value)) => MaybeReady::ready(f(value)),
            State::Ready(None) => panic!("MaybeReady taken after completion"),
            State::Pending(future) => MaybeReady::boxed(async move { f(future.await) }),
        }
    }

    /// Continues with `f`, which may itself answer now or later.
    pub fn then<U: Send + 'static>(self, f: impl FnOnce(T) -> MaybeReady<U> + Send + 'static) -> MaybeReady<U> {
        match self.0 {
            State::Ready(Some(value)) => f(value),
            State::Ready(None) => panic!("MaybeReady taken after completion"),
            State::Pending(future) => MaybeReady::boxed(async move { f(future.await).await }),
        }
    }
}

impl<T> Future for MaybeReady<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match &mut self.0 {
            State::Ready(value) => Poll::Ready(value.take().expect("MaybeReady polled after completion")),
            State::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

impl<T> fmt::Debug for MaybeReady<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.0 {
            State::Ready(_) => "ready",
            State::Pending(_) => "pending",
        };
        f.debug_tuple("MaybeReady").field(&state).finish()
    }
}

impl<T> From<T> for MaybeReady<T> {
    fn from(value: T) -> MaybeReady<T> {
        MaybeReady::ready(value)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_ready_value_is_taken_without_a_future() {
        assert_eq!(MaybeReady::ready(7).into_ready().ok(), Some(7));
        assert_eq!(MaybeReady::ready(7).map(|n| n + 1).into_ready().ok(), Some(8));
    }

    #[test]
    fn a_future_that_finishes_at_once_is_taken_at_once() {
        assert_eq!(MaybeReady::boxed(async { 7 }).into_ready().ok(), Some(7));
    }

    #[tokio::test]
    async fn a_pending_future_is_kept_not_issued_again() {
        let started = Arc::new(AtomicUsize::new(0));
        let counter = started.clone();
        let (send, receive) = tokio::sync::oneshot::channel::<u32>();
        let pending = MaybeReady::boxed(async move {
            counter.fetch_add(1, Ordering::SeqCst);
            receive.await.unwrap()
        });
        let pending = pending.into_ready().expect_err("still waiting");
        let pending = pending.into_ready().expect_err("still waiting");
        send.send(41).unwrap();
        assert_eq!(pending.map(|n| n + 1).await, 42);
        assert_eq!(started.load(Ordering::SeqCst), 1, "the call was made once");
    }
}
