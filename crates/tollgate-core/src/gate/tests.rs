use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::sync::oneshot;
use tower::ServiceExt;

use super::*;

type Body = Full<Bytes>;

// Lets requests through when `x-pass` says so, after `delay` if one is
// set, and stamps the response with how many decisions it made.
#[derive(Clone, Default)]
struct Stamp {
    decided: Arc<AtomicUsize>,
    delay: Arc<std::sync::Mutex<Option<oneshot::Receiver<()>>>>,
}

struct AddHeader(usize);

impl<E> Finish<Body, E> for AddHeader {
    type Body = Body;

    fn finish(self, result: Result<Response<Body>, E>) -> MaybeReady<Result<Response<Body>, E>> {
        MaybeReady::ready(result.map(|mut response| {
            response.headers_mut().insert("x-decided", HeaderValue::from(self.0));
            response
        }))
    }
}

impl Policy<Body> for Stamp {
    type Body = Body;
    type Finish = AddHeader;
    type Answer = Body;

    fn decide(&self, request: Request<Body>) -> MaybeReady<Verdict<Body, AddHeader, Body>> {
        let count = self.decided.fetch_add(1, Ordering::SeqCst) + 1;
        let verdict = move |request: Request<Body>| {
            if request.headers().contains_key("x-pass") {
                Verdict::Proceed(request, AddHeader(count))
            } else {
                let mut refusal = Response::new(Full::from("refused"));
                *refusal.status_mut() = StatusCode::FORBIDDEN;
                Verdict::Respond(refusal)
            }
        };
        match self.delay.lock().unwrap().take() {
            None => MaybeReady::ready(verdict(request)),
            Some(wait) => MaybeReady::boxed(async move {
                let _ = wait.await;
                verdict(request)
            }),
        }
    }
}

fn pass() -> Request<Body> {
    Request::builder().header("x-pass", "1").body(Body::default()).unwrap()
}

#[tokio::test]
async fn a_ready_decision_calls_the_readied_service_and_finishes() {
    let (inner, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let mut service = tower_test::mock::Spawn::new(Gate::new(inner, Stamp::default()));
    handle.allow(1);
    tokio_test::assert_ready_ok!(service.poll_ready());
    let response = tokio::spawn(service.call(pass()));
    let (_, reply) = handle.next_request().await.expect("called");
    reply.send_response(Response::new(Full::from("inner")));
    let response = response.await.unwrap().unwrap();
    assert_eq!(response.headers()["x-decided"], "1");
    assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "inner");
}

#[tokio::test]
async fn a_refusal_never_reaches_the_inner_service() {
    let called = Arc::new(AtomicUsize::new(0));
    let counter = called.clone();
    let inner = tower::service_fn(move |_: Request<Body>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(Body::default())) }
    });
    let response = Gate::new(inner, Stamp::default())
        .oneshot(Request::new(Body::default()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "refused");
    assert_eq!(called.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_pending_decision_takes_the_readied_service_along() {
    let (inner, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let policy = Stamp::default();
    let (open, wait) = oneshot::channel();
    *policy.delay.lock().unwrap() = Some(wait);
    let mut service = tower_test::mock::Spawn::new(Gate::new(inner, policy.clone()));
    // The mock allows one call: only the readied instance may make it.
    handle.allow(1);
    tokio_test::assert_ready_ok!(service.poll_ready());
    let mut response = tokio_test::task::spawn(service.call(pass()));
    tokio_test::assert_pending!(response.poll());
    open.send(()).unwrap();
    assert!(response.is_woken());
    tokio_test::assert_pending!(response.poll());
    let (_, reply) = handle.next_request().await.expect("called once decided");
    reply.send_response(Response::new(Full::from("late")));
    let response = tokio_test::assert_ready_ok!(response.poll());
    assert_eq!(response.headers()["x-decided"], "1");
    assert_eq!(policy.decided.load(Ordering::SeqCst), 1, "decided once");
}
