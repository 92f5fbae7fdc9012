//! [`read_body`]: a request body read whole within a limit, at once when it
//! is already in memory.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::Body;
use http_body_util::{BodyExt, Collected, Limited};

use crate::error::BoxError;
use crate::maybe_ready::MaybeReady;

/// Reads `body` whole, failing with a
/// [`LengthLimitError`](http_body_util::LengthLimitError) past `limit` bytes.
///
/// The reading is tried once in place (with a waker that does nothing): a
/// body already in memory is read without boxing a future; one still
/// arriving is boxed and read when awaited. `body` must be `Unpin` for
/// that; layers that accept any body wrap it in axum's `Body` first, which
/// is, and which does not box one that already is an axum `Body` again.
pub fn read_body<B>(body: B, limit: usize) -> MaybeReady<Result<Collected<Bytes>, BoxError>>
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut collect = Limited::new(body, limit).collect();
    match Pin::new(&mut collect).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(read) => MaybeReady::ready(read),
        Poll::Pending => MaybeReady::boxed(collect),
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::task::ready;

    use http_body::Frame;
    use http_body_util::{Full, LengthLimitError};

    use super::*;

    /// A body whose data arrives when the test sends it, as from a socket.
    struct Later(Option<tokio::sync::oneshot::Receiver<Bytes>>);

    impl Body for Later {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            let Some(receiver) = &mut self.0 else {
                return Poll::Ready(None);
            };
            let data = ready!(Pin::new(receiver).poll(cx)).expect("sent");
            self.0 = None;
            Poll::Ready(Some(Ok(Frame::data(data))))
        }
    }

    #[tokio::test]
    async fn a_body_in_memory_is_read_at_once_and_one_still_coming_later() {
        let Ok(now) = read_body(Full::new(Bytes::from_static(b"{}")), 2).into_value_or_box() else {
            panic!("no future to poll");
        };
        assert_eq!(now.unwrap().to_bytes(), "{}");
        let (send, receive) = tokio::sync::oneshot::channel();
        let later = read_body(Later(Some(receive)), 2);
        let later = later.into_ready().expect_err("the body is still coming");
        send.send(Bytes::from_static(b"{}")).unwrap();
        assert_eq!(later.await.unwrap().to_bytes(), "{}");
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_a_length_limit_error() {
        let error = read_body(Full::new(Bytes::from_static(b"{}")), 1).await.unwrap_err();
        assert!(error.is::<LengthLimitError>(), "{error}");
    }
}
