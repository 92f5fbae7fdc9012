//! Rich gRPC error details: a refusal that says when to retry (429, 409)
//! also carries a `google.rpc.RetryInfo` in `grpc-status-details-bin`, as
//! gRPC clients that follow Google's error model read it.
//!
//! The few `google.rpc` messages needed are declared here with prost, so no
//! `.proto` files or generated crate are needed for them.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use http::Response;
use http_body_util::Full;
use prost::Message as _;
use tollgate_core::{is_grpc, JsonRenderer, Rejection, RenderRejection, Renderer};

/// The binary metadata that holds an encoded [`rpc::Status`].
pub const GRPC_STATUS_DETAILS_BIN: HeaderName = HeaderName::from_static("grpc-status-details-bin");

/// The `google.rpc` messages of the richer error model, as prost messages.
pub mod rpc {
    /// `google.rpc.Status`: the code, the message and typed details.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        /// The gRPC code.
        #[prost(int32, tag = "1")]
        pub code: i32,
        /// The developer-facing message.
        #[prost(string, tag = "2")]
        pub message: String,
        /// The details, each packed in an `Any`.
        #[prost(message, repeated, tag = "3")]
        pub details: Vec<Any>,
    }

    /// `google.protobuf.Any`: a message and the URL of its type.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        /// `type.googleapis.com/<full message name>`.
        #[prost(string, tag = "1")]
        pub type_url: String,
        /// The encoded message.
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    /// `google.rpc.RetryInfo`: how long to wait before retrying.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RetryInfo {
        /// The wait.
        #[prost(message, optional, tag = "1")]
        pub retry_delay: Option<Duration>,
    }

    /// `google.protobuf.Duration`.
    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct Duration {
        /// Whole seconds.
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        /// Nanoseconds past the seconds.
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    /// The `type_url` of [`RetryInfo`] in an [`Any`].
    pub const RETRY_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.RetryInfo";
}

/// The built-in renderer (gRPC statuses for gRPC calls, the seed's JSON
/// otherwise) plus `grpc-status-details-bin` with a `RetryInfo` on gRPC
/// refusals that carry a `Retry-After`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryInfoRenderer {
    inner: JsonRenderer,
}

impl RetryInfoRenderer {
    /// The renderer, shared, ready for every layer's `.renderer(…)`.
    pub fn shared() -> Renderer {
        Renderer::new(RetryInfoRenderer::default())
    }
}

impl RenderRejection for RetryInfoRenderer {
    fn render(&self, rejection: &Rejection, request_headers: &HeaderMap) -> Response<Full<Bytes>> {
        let mut response = self.inner.render(rejection, request_headers);
        if is_grpc(request_headers) {
            if let Some(wait) = retry_after(rejection) {
                let details = status_details(rejection, wait);
                // Base64 is always a valid header value.
                if let Ok(value) = HeaderValue::from_str(&STANDARD_NO_PAD.encode(details)) {
                    response.headers_mut().insert(GRPC_STATUS_DETAILS_BIN, value);
                }
            }
        }
        response
    }
}

fn retry_after(rejection: &Rejection) -> Option<Duration> {
    let seconds = rejection
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// The encoded `google.rpc.Status` of `rejection`, with a `RetryInfo` of `wait`.
pub fn status_details(rejection: &Rejection, wait: Duration) -> Vec<u8> {
    let retry_info = rpc::RetryInfo {
        retry_delay: Some(rpc::Duration {
            seconds: i64::try_from(wait.as_secs()).unwrap_or(i64::MAX),
            nanos: 0,
        }),
    };
    rpc::Status {
        code: i32::from(rejection.grpc_code().as_u8()),
        message: rejection.message().to_owned(),
        details: vec![rpc::Any {
            type_url: rpc::RETRY_INFO_TYPE_URL.into(),
            value: retry_info.encode_to_vec(),
        }],
    }
    .encode_to_vec()
}

/// The wait that encoded `google.rpc.Status` details (tonic's
/// `Status::details()`) ask for: the first `RetryInfo` among them.
pub fn retry_delay(details: &[u8]) -> Option<Duration> {
    let status = rpc::Status::decode(details).ok()?;
    let delay = status
        .details
        .iter()
        .filter(|any| any.type_url == rpc::RETRY_INFO_TYPE_URL)
        .find_map(|any| rpc::RetryInfo::decode(any.value.as_slice()).ok()?.retry_delay)?;
    Some(Duration::new(
        u64::try_from(delay.seconds).ok()?,
        u32::try_from(delay.nanos).ok().filter(|nanos| *nanos < 1_000_000_000)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;
    use tollgate_core::Code;

    fn grpc_request() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/grpc"));
        headers
    }

    #[test]
    fn grpc_refusals_with_a_wait_carry_retry_info() {
        let rejection = Rejection::new(Code::RateLimited, "Rate limit exceeded.")
            .with_header(RETRY_AFTER, HeaderValue::from_static("3"));
        let response = RetryInfoRenderer::default().render(&rejection, &grpc_request());
        assert_eq!(response.headers()["grpc-status"], "8");
        assert_eq!(response.headers()[RETRY_AFTER], "3");
        let encoded = STANDARD_NO_PAD
            .decode(response.headers()[GRPC_STATUS_DETAILS_BIN].as_bytes())
            .unwrap();
        let status = rpc::Status::decode(encoded.as_slice()).unwrap();
        assert_eq!((status.code, status.message.as_str()), (8, "Rate limit exceeded."));
        assert_eq!(status.details.len(), 1);
        assert_eq!(status.details[0].type_url, rpc::RETRY_INFO_TYPE_URL);
        let retry_info = rpc::RetryInfo::decode(status.details[0].value.as_slice()).unwrap();
        assert_eq!(retry_info.retry_delay, Some(rpc::Duration { seconds: 3, nanos: 0 }));
        assert_eq!(retry_delay(&encoded), Some(Duration::from_secs(3)));
    }

    #[test]
    fn details_without_a_sane_retry_info_give_no_delay() {
        assert_eq!(retry_delay(b""), None);
        assert_eq!(retry_delay(b"\xff\xff"), None);
        let negative = rpc::Status {
            code: 8,
            message: String::new(),
            details: vec![rpc::Any {
                type_url: rpc::RETRY_INFO_TYPE_URL.into(),
                value: rpc::RetryInfo {
                    retry_delay: Some(rpc::Duration { seconds: -1, nanos: 0 }),
                }
                .encode_to_vec(),
            }],
        };
        assert_eq!(retry_delay(&negative.encode_to_vec()), None);
    }

    #[test]
    fn other_refusals_and_http_requests_are_left_alone() {
        let unauthorized = Rejection::unauthorized("Missing API key.");
        let response = RetryInfoRenderer::default().render(&unauthorized, &grpc_request());
        assert_eq!(response.headers()["grpc-status"], "16");
        assert!(!response.headers().contains_key(GRPC_STATUS_DETAILS_BIN));

        let limited =
            Rejection::new(Code::RateLimited, "Slow down.").with_header(RETRY_AFTER, HeaderValue::from_static("1"));
        let response = RetryInfoRenderer::default().render(&limited, &HeaderMap::new());
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(!response.headers().contains_key(GRPC_STATUS_DETAILS_BIN));
    }
}
