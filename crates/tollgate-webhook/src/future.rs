//! The response future of [`WebhookSignature`](crate::WebhookSignature): a
//! small state machine that buffers the body, verifies, asks the replay
//! store, calls the inner service and, after a 5xx, lets the store forget.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use tollgate_core::{BoxError, Rejection, ResponseBody, StoreError};
use tower_service::Service;

use crate::layer::{BoxFuture, Config};
use crate::rejections;
use crate::verify::Presented;

pin_project! {
    /// The response future of [`WebhookSignature`](crate::WebhookSignature).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<Full<Bytes>>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<Full<Bytes>>>,
    {
        Rejected {
            response: Option<Response<Full<Bytes>>>,
        },
        Collecting {
            #[pin]
            body: B,
            buffer: BodyBuffer,
            waiting: Option<Collecting<S>>,
            config: Arc<Config>,
        },
        Remembering {
            future: BoxFuture<Result<bool, StoreError>>,
            waiting: Option<Remembering<S>>,
            config: Arc<Config>,
        },
        Calling {
            #[pin]
            future: S::Future,
            // Set when a 5xx should make the replay store forget the id.
            forget: Option<(String, Arc<Config>)>,
        },
        Forgetting {
            future: BoxFuture<Result<(), StoreError>>,
            response: Option<S::Response>,
        },
    }
}

// What the body is waited for with.
pub(crate) struct Collecting<S> {
    parts: Parts,
    presented: Presented,
    inner: S,
}

// What the replay store's answer is waited for with.
pub(crate) struct Remembering<S> {
    request: Request<Full<Bytes>>,
    inner: S,
    id: String,
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<Full<Bytes>>>,
{
    pub(crate) fn rejected(response: Response<Full<Bytes>>) -> ResponseFuture<S, B> {
        ResponseFuture {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }

    pub(crate) fn collecting(
        body: B,
        parts: Parts,
        presented: Presented,
        inner: S,
        config: Arc<Config>,
    ) -> ResponseFuture<S, B> {
        let length_hint = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        ResponseFuture {
            state: State::Collecting {
                body,
                buffer: BodyBuffer::new(config.max_body_size, length_hint),
                waiting: Some(Collecting {
                    parts,
                    presented,
                    inner,
                }),
                config,
            },
        }
    }
}

const POLLED_AFTER_COMPLETION: &str = "ResponseFuture polled after completion";

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Rejected { response } => {
                    let response = response.take().expect(POLLED_AFTER_COMPLETION);
                    return Poll::Ready(Ok(response.map(Either::Right)));
                }
                StateProj::Collecting {
                    body,
                    buffer,
                    waiting,
                    config,
                } => {
                    let collected = ready!(buffer.poll_collect(body, cx));
                    let Collecting {
                        parts,
                        presented,
                        mut inner,
                    } = waiting.take().expect(POLLED_AFTER_COMPLETION);
                    let bytes = match collected {
                        Ok(()) => buffer.take(),
                        Err(rejection) => {
                            let response = config.renderer.render(&rejection, &parts.headers);
                            state.set(State::Rejected {
                                response: Some(response),
                            });
                            continue;
                        }
                    };
                    let verified = match config.verifier.check_signature(&presented, &bytes) {
                        Ok(verified) => verified,
                        Err(error) => {
                            tracing::debug!(%error, "webhook refused");
                            let response = config.renderer.render(&error.to_rejection(), &parts.headers);
                            state.set(State::Rejected {
                                response: Some(response),
                            });
                            continue;
                        }
                    };
                    let replay = config
                        .replay
                        .clone()
                        .map(|store| (store, verified.replay_id(), config.replay_ttl(&verified)));
                    let mut request = Request::from_parts(parts, Full::new(bytes));
                    request.extensions_mut().insert(verified);
                    let next = match replay {
                        Some((store, id, ttl)) => State::Remembering {
                            future: store.check_and_remember(id.clone(), ttl),
                            waiting: Some(Remembering { request, inner, id }),
                            config: config.clone(),
                        },
                        None => State::Calling {
                            future: inner.call(request),
                            forget: None,
                        },
                    };
                    state.set(next);
                }
                StateProj::Remembering {
                    future,
                    waiting,
                    config,
                } => {
                    let answer = ready!(future.as_mut().poll(cx));
                    let Remembering { request, mut inner, id } = waiting.take().expect(POLLED_AFTER_COMPLETION);
                    let forget = config.forget_on_server_error.then(|| (id, config.clone()));
                    let next = match answer {
                        Ok(true) => State::Calling {
                            future: inner.call(request),
                            forget,
                        },
                        Ok(false) => {
                            tracing::info!("webhook refused: replayed message");
                            State::Rejected {
                                response: Some(config.renderer.render(&rejections::replayed(), request.headers())),
                            }
                        }
                        Err(error) if config.fail_open => {
                            tracing::error!(%error, "replay store failed; letting the webhook through (fail open)");
                            State::Calling {
                                future: inner.call(request),
                                forget: None,
                            }
                        }
                        Err(error) => {
                            tracing::error!(%error, "replay store failed; refusing the webhook (fail closed)");
                            State::Rejected {
                                response: Some(
                                    config
                                        .renderer
                                        .render(&Rejection::store_unavailable(), request.headers()),
                                ),
                            }
                        }
                    };
                    state.set(next);
                }
                StateProj::Calling { future, forget } => {
                    let response = ready!(future.poll(cx))?;
                    match forget.take() {
                        Some((id, config)) if response.status().is_server_error() => {
                            let store = config.replay.as_ref().expect("forget is only set with a store");
                            state.set(State::Forgetting {
                                future: store.forget(id),
                                response: Some(response),
                            });
                        }
                        _ => return Poll::Ready(Ok(response.map(Either::Left))),
                    }
                }
                StateProj::Forgetting { future, response } => {
                    if let Err(error) = ready!(future.as_mut().poll(cx)) {
                        tracing::error!(%error, "replay store failed to forget a webhook the handler failed on");
                    }
                    let response = response.take().expect(POLLED_AFTER_COMPLETION);
                    return Poll::Ready(Ok(response.map(Either::Left)));
                }
            }
        }
    }
}

/// The body, buffered into one `Bytes`: a body arriving in one chunk is
/// kept as is; several chunks are copied once into a buffer sized from
/// `Content-Length`.
pub(crate) struct BodyBuffer {
    limit: usize,
    length_hint: usize,
    len: usize,
    first: Option<Bytes>,
    joined: Option<BytesMut>,
}

impl BodyBuffer {
    fn new(limit: usize, length_hint: u64) -> BodyBuffer {
        BodyBuffer {
            limit,
            length_hint: usize::try_from(length_hint).unwrap_or(usize::MAX).min(limit),
            len: 0,
            first: None,
            joined: None,
        }
    }

    fn poll_collect<B>(&mut self, mut body: Pin<&mut B>, cx: &mut Context<'_>) -> Poll<Result<(), Rejection>>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        loop {
            match ready!(body.as_mut().poll_frame(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Err(error)) => {
                    let error: BoxError = error.into();
                    tracing::debug!(%error, "webhook body could not be read");
                    return Poll::Ready(Err(rejections::invalid_body()));
                }
                // Trailers are not signed by any scheme; they are dropped.
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if self.push(data).is_err() {
                            tracing::debug!(limit = self.limit, "webhook refused: body over the limit");
                            return Poll::Ready(Err(rejections::payload_too_large(self.limit)));
                        }
                    }
                }
            }
        }
    }

    fn push(&mut self, mut data: impl Buf) -> Result<(), ()> {
        let size = data.remaining();
        if size == 0 {
            return Ok(());
        }
        self.len = self.len.checked_add(size).filter(|len| *len <= self.limit).ok_or(())?;
        match (&mut self.joined, self.first.take()) {
            (None, None) => self.first = Some(data.copy_to_bytes(size)), // no copy for `Bytes`
            (None, Some(first)) => {
                let mut joined = BytesMut::with_capacity(self.length_hint.max(self.len));
                joined.extend_from_slice(&first);
                joined.extend_from_slice(&data.copy_to_bytes(size));
                self.joined = Some(joined);
            }
            (Some(joined), _) => {
                while data.has_remaining() {
                    let chunk = data.chunk();
                    joined.extend_from_slice(chunk);
                    let advanced = chunk.len();
                    data.advance(advanced);
                }
            }
        }
        Ok(())
    }

    fn take(&mut self) -> Bytes {
        match (self.joined.take(), self.first.take()) {
            (Some(joined), _) => joined.freeze(),
            (None, Some(first)) => first,
            (None, None) => Bytes::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_chunk_is_kept_without_copying() {
        let mut buffer = BodyBuffer::new(1024, 5);
        let chunk = Bytes::from_static(b"hello");
        buffer.push(chunk.clone()).unwrap();
        let taken = buffer.take();
        assert_eq!(taken, "hello");
        assert_eq!(taken.as_ptr(), chunk.as_ptr(), "the same memory");
    }

    #[test]
    fn chunks_are_joined_in_order_and_bounded() {
        let mut buffer = BodyBuffer::new(10, 0);
        buffer.push(Bytes::from_static(b"abc")).unwrap();
        buffer.push(Bytes::from_static(b"")).unwrap();
        buffer.push(Bytes::from_static(b"def")).unwrap();
        buffer.push(&b"ghij"[..]).unwrap();
        assert_eq!(buffer.push(Bytes::from_static(b"k")), Err(()));
        assert_eq!(buffer.take(), "abcdefghij");
    }
}
