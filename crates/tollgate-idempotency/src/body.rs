//! Reading bodies: a request read whole, as the rebuilt request carries it
//! ([`request_bytes`]), a response for storing ([`buffer_response`]); and
//! the two bodies the layer answers with, [`PassThroughBody`] (the inner
//! service's) and [`ReplayBody`] (its own).

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Collected, Full, LengthLimitError};
use pin_project_lite::pin_project;
use tollgate_core::BoxError;

/// Why a request body could not be buffered.
#[derive(Debug)]
pub(crate) enum RequestBodyError {
    /// Longer than the limit.
    TooLarge,
    /// It ended with trailers, which the rebuilt request could not carry.
    Trailers,
    /// Reading it failed (the client went away, a malformed chunk…).
    Unreadable,
}

/// The request body as read whole by
/// [`read_body`](tollgate_core::body::read_body): its bytes, or why the
/// rebuilt request could not carry it.
pub(crate) fn request_bytes(read: Result<Collected<Bytes>, BoxError>) -> Result<Bytes, RequestBodyError> {
    match read {
        Ok(whole) if whole.trailers().is_some() => Err(RequestBodyError::Trailers),
        Ok(whole) => Ok(whole.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(RequestBodyError::TooLarge),
        Err(_) => Err(RequestBodyError::Unreadable),
    }
}

/// Data frames gathered into one `Bytes`, copying only when there are several.
#[derive(Default)]
struct Gathered {
    first: Option<Bytes>,
    more: Option<BytesMut>,
    len: usize,
}

impl Gathered {
    fn push(&mut self, data: Bytes) {
        self.len += data.len();
        if data.is_empty() {
            return;
        }
        match (&mut self.more, self.first.take()) {
            (Some(more), _) => more.extend_from_slice(&data),
            (None, None) => self.first = Some(data),
            (None, Some(first)) => {
                let mut more = BytesMut::with_capacity(first.len() + data.len());
                more.extend_from_slice(&first);
                more.extend_from_slice(&data);
                self.more = Some(more);
            }
        }
    }

    fn into_bytes(self) -> Bytes {
        match (self.more, self.first) {
            (Some(more), _) => more.freeze(),
            (None, first) => first.unwrap_or_default(),
        }
    }
}

/// A response body read to its end: the data, and the trailers if it
/// ended with any (a gRPC response's status is in them).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WholeBody {
    pub(crate) data: Bytes,
    /// `None` when the body ended without trailers or with an empty set.
    pub(crate) trailers: Option<HeaderMap>,
}

impl WholeBody {
    /// The body to answer with: the data, then the trailers.
    pub(crate) fn into_replay(self) -> ReplayBody {
        ReplayBody {
            data: Full::new(self.data),
            trailers: self.trailers,
        }
    }
}

/// The bytes trailers take: names and values, as a store charges them.
pub(crate) fn trailers_size(trailers: &HeaderMap) -> usize {
    trailers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum()
}

/// A response body read for storing.
pub(crate) enum BufferedResponse<B: Body> {
    /// The whole body, data and trailers within the limit: storable.
    Whole(WholeBody),
    /// Too large or failed: not storable, handed on as it would have
    /// reached the client without the layer.
    Unstorable(PassThroughBody<B>),
}

/// Reads the whole response body if its data and trailers fit in `limit`
/// bytes. A body that announces more is not read at all; one that turns out
/// longer is handed on with the bytes read so far put back in front (and
/// its trailers, if they were what crossed the limit).
pub(crate) async fn buffer_response<B>(body: B, limit: usize) -> BufferedResponse<B>
where
    B: Body<Data = Bytes>,
{
    if body.size_hint().lower() > limit as u64 {
        return BufferedResponse::Unstorable(PassThroughBody::new(body));
    }
    // Boxed so that what is left of it can be handed on after polling.
    let mut body = Box::pin(body);
    let mut gathered = Gathered::default();
    loop {
        let (rest, error, trailers) = match body.as_mut().frame().await {
            None => {
                return BufferedResponse::Whole(WholeBody {
                    data: gathered.into_bytes(),
                    trailers: None,
                })
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    let over = gathered.len.saturating_add(data.len()) > limit;
                    gathered.push(data);
                    if !over {
                        continue;
                    }
                    (Some(body), None, None)
                }
                // Trailers end the body: nothing after them reaches a client.
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) if gathered.len.saturating_add(trailers_size(&trailers)) <= limit => {
                        return BufferedResponse::Whole(WholeBody {
                            data: gathered.into_bytes(),
                            trailers: Some(trailers).filter(|trailers| !trailers.is_empty()),
                        });
                    }
                    Ok(trailers) => (None, None, Some(trailers)),
                    // Unreachable: a frame that is not data is trailers.
                    Err(_) => (None, None, None),
                },
            },
            Some(Err(error)) => (None, Some(error), None),
        };
        return BufferedResponse::Unstorable(PassThroughBody {
            inner: Inner::Resumed {
                resumed: Resumed {
                    prefix: Some(gathered.into_bytes()).filter(|prefix| !prefix.is_empty()),
                    rest,
                    error,
                    trailers,
                },
            },
        });
    }
}

/// The body of a response the layer makes itself, whole: a refusal, or a
/// stored response replayed; its data, then its trailers if it has any (a
/// gRPC status), as the inner service sent them.
pub struct ReplayBody {
    data: Full<Bytes>,
    trailers: Option<HeaderMap>,
}

impl ReplayBody {
    /// A refusal, as a renderer made it.
    pub(crate) fn refusal(body: Full<Bytes>) -> ReplayBody {
        ReplayBody {
            data: body,
            trailers: None,
        }
    }
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        // `Full` answers at once, and yields no frame for empty data.
        if let Poll::Ready(Some(data)) = Pin::new(&mut self.data).poll_frame(cx) {
            return Poll::Ready(Some(data));
        }
        Poll::Ready(self.trailers.take().map(|trailers| Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_end_stream() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.trailers.is_none() {
            return self.data.size_hint();
        }
        // At least the data, without an upper bound: a body announcing its
        // exact length would be sent with `Content-Length` over HTTP/1.1,
        // which leaves no room for the trailers.
        let mut hint = SizeHint::new();
        hint.set_lower(self.data.size_hint().lower());
        hint
    }
}

// The length only: a stored response can hold a secret (a new API key).
impl fmt::Debug for ReplayBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayBody")
            .field("len", &self.data.size_hint().lower())
            .field("trailers", &self.trailers.is_some())
            .finish()
    }
}

pin_project! {
    /// The body of a response the inner service produced, as the layer hands
    /// it on: untouched; or, when the layer started reading it to store it
    /// and gave up (too large, a read error), the bytes already read followed
    /// by the rest, the trailers or the error, exactly as the body would have
    /// produced them; or, once read whole and stored, as its replays will be.
    pub struct PassThroughBody<B: Body> {
        #[pin]
        inner: Inner<B>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<B: Body> {
        Untouched { #[pin] body: B },
        Resumed { resumed: Resumed<B> },
        Whole { whole: ReplayBody },
    }
}

struct Resumed<B: Body> {
    prefix: Option<Bytes>,
    rest: Option<Pin<Box<B>>>,
    error: Option<B::Error>,
    trailers: Option<HeaderMap>,
}

impl<B: Body> PassThroughBody<B> {
    /// The inner body, untouched.
    pub fn new(body: B) -> PassThroughBody<B> {
        PassThroughBody {
            inner: Inner::Untouched { body },
        }
    }

    /// A response read whole, sent on as its replays will be.
    pub(crate) fn whole(whole: WholeBody) -> PassThroughBody<B> {
        PassThroughBody {
            inner: Inner::Whole {
                whole: whole.into_replay(),
            },
        }
    }
}

impl<B: Body<Data = Bytes>> Body for PassThroughBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().inner.project() {
            InnerProj::Untouched { body } => body.poll_frame(cx),
            InnerProj::Resumed { resumed } => resumed.poll_frame(cx),
            InnerProj::Whole { whole } => match ready!(Pin::new(whole).poll_frame(cx)) {
                Some(Ok(frame)) => Poll::Ready(Some(Ok(frame))),
                Some(Err(never)) => match never {},
                None => Poll::Ready(None),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Untouched { body } => body.is_end_stream(),
            Inner::Resumed { resumed } => {
                resumed.prefix.is_none()
                    && resumed.rest.as_ref().is_none_or(|rest| rest.is_end_stream())
                    && resumed.error.is_none()
                    && resumed.trailers.is_none()
            }
            Inner::Whole { whole } => whole.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Untouched { body } => body.size_hint(),
            Inner::Resumed { resumed } => {
                let prefix = resumed.prefix.as_ref().map_or(0, |prefix| prefix.len() as u64);
                let rest = resumed
                    .rest
                    .as_ref()
                    .map_or_else(|| SizeHint::with_exact(0), |rest| rest.size_hint());
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + prefix);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + prefix);
                }
                hint
            }
            Inner::Whole { whole } => whole.size_hint(),
        }
    }
}

impl<B: Body<Data = Bytes>> Resumed<B> {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        if let Some(rest) = &mut self.rest {
            match ready!(rest.as_mut().poll_frame(cx)) {
                Some(frame) => return Poll::Ready(Some(frame)),
                None => self.rest = None,
            }
        }
        if let Some(error) = self.error.take() {
            return Poll::Ready(Some(Err(error)));
        }
        Poll::Ready(self.trailers.take().map(|trailers| Ok(Frame::trailers(trailers))))
    }
}

impl<B: Body> fmt::Debug for PassThroughBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.inner {
            Inner::Untouched { .. } => "untouched",
            Inner::Resumed { .. } => "resumed",
            Inner::Whole { .. } => "whole",
        };
        f.debug_struct("PassThroughBody").field("state", &state).finish()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::pin::pin;

    use http_body_util::Full;
    use tollgate_core::body::read_body;

    /// A body of chunks with no length announced, optionally ending with
    /// trailers or an error: what a streaming handler produces.
    pub(crate) struct Chunks {
        frames: VecDeque<Result<Frame<Bytes>, std::io::Error>>,
    }

    impl Chunks {
        pub(crate) fn new(chunks: &[&'static [u8]]) -> Chunks {
            Chunks {
                frames: chunks
                    .iter()
                    .map(|chunk| Ok(Frame::data(Bytes::from_static(chunk))))
                    .collect(),
            }
        }

        pub(crate) fn then_trailers(mut self, trailers: HeaderMap) -> Chunks {
            self.frames.push_back(Ok(Frame::trailers(trailers)));
            self
        }

        pub(crate) fn then_error(mut self) -> Chunks {
            self.frames.push_back(Err(std::io::Error::other("connection reset")));
            self
        }
    }

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            Poll::Ready(self.frames.pop_front())
        }
    }

    // Every frame, data merged, with the trailers and the error if any.
    async fn read_all<B: Body<Data = Bytes>>(body: B) -> (Vec<u8>, Option<HeaderMap>, bool)
    where
        B::Error: fmt::Debug,
    {
        let mut body = pin!(body);
        let (mut data, mut trailers, mut failed) = (Vec::new(), None, false);
        while let Some(frame) = body.as_mut().frame().await {
            match frame {
                Ok(frame) => match frame.into_data() {
                    Ok(chunk) => data.extend_from_slice(&chunk),
                    Err(frame) => trailers = frame.into_trailers().ok(),
                },
                Err(_) => failed = true,
            }
        }
        (data, trailers, failed)
    }

    fn trailers() -> HeaderMap {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        trailers
    }

    // The request body as the layer reads it.
    async fn read_request<B>(body: B, limit: usize) -> Result<Bytes, RequestBodyError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        request_bytes(read_body(axum_core::body::Body::new(body), limit).await)
    }

    #[tokio::test]
    async fn requests_within_the_limit_are_gathered() {
        let body = read_request(Chunks::new(&[b"ab", b"", b"cd"]), 4).await.unwrap();
        assert_eq!(body, "abcd");
        let body = read_request(Full::new(Bytes::from_static(b"{}")), 2).await.unwrap();
        assert_eq!(body, "{}");
        let body = read_request(http_body_util::Empty::<Bytes>::new(), 0).await.unwrap();
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn requests_past_the_limit_with_trailers_or_failing_are_refused() {
        assert!(matches!(
            read_request(Chunks::new(&[b"ab", b"cde"]), 4).await,
            Err(RequestBodyError::TooLarge)
        ));
        assert!(matches!(
            read_request(Chunks::new(&[b"ab"]).then_trailers(trailers()), 4).await,
            Err(RequestBodyError::Trailers)
        ));
        assert!(matches!(
            read_request(Chunks::new(&[b"ab"]).then_error(), 4).await,
            Err(RequestBodyError::Unreadable)
        ));
    }

    #[tokio::test]
    async fn responses_within_the_limit_are_whole() {
        match buffer_response(Chunks::new(&[b"ab", b"cd"]), 4).await {
            BufferedResponse::Whole(body) => assert_eq!(
                body,
                WholeBody {
                    data: Bytes::from_static(b"abcd"),
                    trailers: None
                }
            ),
            BufferedResponse::Unstorable(_) => panic!("4 bytes fit in 4"),
        }
    }

    #[tokio::test]
    async fn announced_oversized_responses_are_not_read() {
        let body = Full::new(Bytes::from_static(b"abcde"));
        match buffer_response(body, 4).await {
            BufferedResponse::Unstorable(body) => {
                assert!(matches!(body.inner, Inner::Untouched { .. }));
                assert_eq!(body.size_hint().exact(), Some(5));
                let (data, trailers, failed) = read_all(body).await;
                assert_eq!((data.as_slice(), trailers, failed), (&b"abcde"[..], None, false));
            }
            BufferedResponse::Whole(_) => panic!("5 bytes do not fit in 4"),
        }
    }

    #[tokio::test]
    async fn unannounced_oversized_responses_are_resumed_whole() {
        match buffer_response(Chunks::new(&[b"ab", b"cd", b"ef", b"gh"]), 4).await {
            BufferedResponse::Unstorable(body) => {
                assert!(!body.is_end_stream());
                let (data, trailers, failed) = read_all(body).await;
                assert_eq!((data.as_slice(), trailers, failed), (&b"abcdefgh"[..], None, false));
            }
            BufferedResponse::Whole(_) => panic!("8 bytes do not fit in 4"),
        }
    }

    #[tokio::test]
    async fn trailers_within_the_limit_are_read_whole_and_replayed_after_the_data() {
        // 2 bytes of data + "grpc-status" (11) + "0" (1) = 14.
        let BufferedResponse::Whole(whole) =
            buffer_response(Chunks::new(&[b"a", b"b"]).then_trailers(trailers()), 14).await
        else {
            panic!("data and trailers fit in 14 bytes")
        };
        assert_eq!(
            whole,
            WholeBody {
                data: Bytes::from_static(b"ab"),
                trailers: Some(trailers())
            }
        );
        // The first answer, as the layer hands it on.
        let body = PassThroughBody::<Chunks>::whole(whole);
        assert!(!body.is_end_stream());
        assert_eq!(body.size_hint().lower(), 2);
        assert_eq!(
            body.size_hint().upper(),
            None,
            "no Content-Length: the trailers must fit"
        );
        assert_eq!(format!("{body:?}"), r#"PassThroughBody { state: "whole" }"#);
        let mut body = pin!(body);
        let first = body.as_mut().frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "ab");
        let second = body.as_mut().frame().await.unwrap().unwrap();
        assert_eq!(second.into_trailers().unwrap(), trailers());
        assert!(body.is_end_stream());
        assert!(body.as_mut().frame().await.is_none());

        // Trailers only (a gRPC error after headers): no empty data frame.
        let BufferedResponse::Whole(whole) = buffer_response(Chunks::new(&[]).then_trailers(trailers()), 100).await
        else {
            panic!("trailers alone fit")
        };
        let (data, got, failed) = read_all(whole.into_replay()).await;
        assert_eq!((data.as_slice(), got, failed), (&b""[..], Some(trailers()), false));

        // An empty set of trailers is no trailers.
        let BufferedResponse::Whole(whole) =
            buffer_response(Chunks::new(&[b"ab"]).then_trailers(HeaderMap::new()), 100).await
        else {
            panic!("fits")
        };
        assert_eq!(whole.trailers, None);
        assert_eq!(
            whole.into_replay().size_hint().exact(),
            Some(2),
            "without trailers, Content-Length"
        );
    }

    #[tokio::test]
    async fn trailers_past_the_limit_and_errors_are_handed_on_in_place() {
        let BufferedResponse::Unstorable(body) =
            buffer_response(Chunks::new(&[b"ab"]).then_trailers(trailers()), 13).await
        else {
            panic!("14 bytes of data and trailers do not fit in 13")
        };
        let (data, got, failed) = read_all(body).await;
        assert_eq!((data.as_slice(), got, failed), (&b"ab"[..], Some(trailers()), false));

        let BufferedResponse::Unstorable(body) = buffer_response(Chunks::new(&[b"ab"]).then_error(), 100).await else {
            panic!("a failed body cannot be stored")
        };
        let (data, got, failed) = read_all(body).await;
        assert_eq!((data.as_slice(), got, failed), (&b"ab"[..], None, true));
    }

    #[tokio::test]
    async fn untouched_bodies_pass_everything_through() {
        let body: PassThroughBody<Full<Bytes>> = PassThroughBody::new(Full::new(Bytes::from_static(b"hi")));
        assert_eq!(body.size_hint().exact(), Some(2));
        assert_eq!(format!("{body:?}"), r#"PassThroughBody { state: "untouched" }"#);
        let (data, _, _) = read_all(body).await;
        assert_eq!(data, b"hi");
    }
}
