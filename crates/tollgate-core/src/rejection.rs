//! One error type for every layer, rendered the way the client expects:
//! the seed API's JSON, RFC 9457 problem details, or a gRPC status.
//!
//! ```
//! use http::HeaderMap;
//! use tollgate_core::{Code, Rejection};
//!
//! let rejection = Rejection::new(Code::RateLimited, "Rate limit exceeded. Retry after 1 second.")
//!     .with_field("retry_after", 1);
//! let response = rejection.render_default(&HeaderMap::new());
//! assert_eq!(response.status(), 429);
//! assert_eq!(
//!     rejection.to_json(),
//!     r#"{"error":{"code":"RATE_LIMITED","message":"Rate limit exceeded. Retry after 1 second.","retry_after":1}}"#
//! );
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::Value;

use crate::code::Code;

/// A request refused by a layer: status, machine-readable code, human
/// message, extra JSON fields and extra headers.
#[derive(Clone, PartialEq)]
pub struct Rejection {
    status: StatusCode,
    code: Cow<'static, str>,
    message: Cow<'static, str>,
    fields: Vec<(Cow<'static, str>, Value)>,
    headers: HeaderMap,
    grpc_code: Option<GrpcCode>,
}

impl Rejection {
    /// A rejection with a code from the [catalogue](Code) (which gives the
    /// status) and a message.
    pub fn new(code: Code, message: impl Into<Cow<'static, str>>) -> Rejection {
        Rejection::custom(code.status(), code.as_str(), message)
    }

    /// A rejection with the code's default message.
    pub fn from_code(code: Code) -> Rejection {
        Rejection::new(code, code.default_message())
    }

    /// A rejection with an application's own status and code, outside the
    /// [catalogue](Code) of the codes tollgate's layers send.
    pub fn custom(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Rejection {
        Rejection {
            status,
            code: code.into(),
            message: message.into(),
            fields: Vec::new(),
            headers: HeaderMap::new(),
            grpc_code: None,
        }
    }

    /// 401 `UNAUTHORIZED` with `WWW-Authenticate: Bearer`.
    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> Rejection {
        Rejection::new(Code::Unauthorized, message)
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    }

    /// 503 `SERVICE_UNAVAILABLE`: a store the layer depends on failed.
    pub fn store_unavailable() -> Rejection {
        Rejection::from_code(Code::ServiceUnavailable)
    }

    /// Adds a field beside `code` and `message` (kept in insertion order).
    pub fn with_field(mut self, name: impl Into<Cow<'static, str>>, value: impl Into<Value>) -> Rejection {
        self.fields.push((name.into(), value.into()));
        self
    }

    /// Adds a response header, replacing one of the same name.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Rejection {
        self.headers.insert(name, value);
        self
    }

    /// Overrides the gRPC status that this rejection maps to.
    pub fn with_grpc_code(mut self, code: GrpcCode) -> Rejection {
        self.grpc_code = Some(code);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine-readable code, such as `RATE_LIMITED`.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The extra fields, in insertion order.
    pub fn fields(&self) -> &[(Cow<'static, str>, Value)] {
        &self.fields
    }

    /// The extra headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The gRPC status code: the override if set, else mapped from the HTTP status.
    pub fn grpc_code(&self) -> GrpcCode {
        self.grpc_code.unwrap_or_else(|| GrpcCode::from_http(self.status))
    }

    /// Renders with the default renderer (the seed's JSON, gRPC for gRPC requests).
    pub fn render_default(&self, request_headers: &HeaderMap) -> Response<Full<Bytes>> {
        Renderer::default().render(self, request_headers)
    }

    /// The seed API's body: `{"error":{"code":…,"message":…,<fields>}}`, keys
    /// in that order (a `serde_json` map would sort them).
    pub fn to_json(&self) -> Bytes {
        let mut out = Vec::with_capacity(96);
        out.extend_from_slice(b"{\"error\":{");
        write_member(&mut out, "code", &Value::from(self.code()));
        out.push(b',');
        write_member(&mut out, "message", &Value::from(self.message()));
        self.write_fields(&mut out);
        out.extend_from_slice(b"}}");
        Bytes::from(out)
    }

    /// An RFC 9457 problem details body, with `code` and the extra fields as
    /// extension members.
    pub fn to_problem_json(&self) -> Bytes {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let mut out = Vec::with_capacity(128);
        out.push(b'{');
        write_member(&mut out, "type", &Value::from("about:blank"));
        out.push(b',');
        write_member(&mut out, "title", &Value::from(title));
        out.push(b',');
        write_member(&mut out, "status", &Value::from(self.status.as_u16()));
        out.push(b',');
        write_member(&mut out, "detail", &Value::from(self.message()));
        out.push(b',');
        write_member(&mut out, "code", &Value::from(self.code()));
        self.write_fields(&mut out);
        out.push(b'}');
        Bytes::from(out)
    }

    fn write_fields(&self, out: &mut Vec<u8>) {
        for (name, value) in &self.fields {
            out.push(b',');
            write_member(out, name, value);
        }
    }
}

fn write_member(out: &mut Vec<u8>, name: &str, value: &Value) {
    // Writing JSON values into a Vec cannot fail.
    serde_json::to_writer(&mut *out, name).expect("JSON string");
    out.push(b':');
    serde_json::to_writer(&mut *out, value).expect("JSON value");
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejection")
            .field("status", &self.status)
            .field("code", &self.code)
            .field("message", &self.message)
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl std::error::Error for Rejection {}

/// gRPC status codes (the subset a rejection can map to, plus `Ok`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum GrpcCode {
    Ok = 0,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

impl GrpcCode {
    /// The usual mapping of an HTTP status to a gRPC status.
    pub fn from_http(status: StatusCode) -> GrpcCode {
        match status.as_u16() {
            200..=299 => GrpcCode::Ok,
            400 | 411 | 415 | 422 => GrpcCode::InvalidArgument,
            401 => GrpcCode::Unauthenticated,
            403 => GrpcCode::PermissionDenied,
            404 => GrpcCode::NotFound,
            409 => GrpcCode::Aborted,
            412 => GrpcCode::FailedPrecondition,
            413 | 429 => GrpcCode::ResourceExhausted,
            501 => GrpcCode::Unimplemented,
            503 => GrpcCode::Unavailable,
            504 => GrpcCode::DeadlineExceeded,
            500..=599 => GrpcCode::Internal,
            _ => GrpcCode::Unknown,
        }
    }

    /// The numeric code.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// Chooses the body format for non-gRPC requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorFormat {
    /// The seed API's `{"error":{…}}` JSON (the default).
    #[default]
    Seed,
    /// RFC 9457 `application/problem+json` always.
    ProblemJson,
    /// Problem details when the request's `Accept` names `application/problem+json`,
    /// the seed's JSON otherwise.
    Negotiate,
}

/// Turns a [`Rejection`] into a response. Implement it to plug in your own format.
pub trait RenderRejection: Send + Sync + 'static {
    /// Renders `rejection` for a request with these headers.
    fn render(&self, rejection: &Rejection, request_headers: &HeaderMap) -> Response<Full<Bytes>>;
}

/// The built-in renderer: gRPC statuses for gRPC requests, JSON otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonRenderer {
    format: ErrorFormat,
}

impl JsonRenderer {
    /// A renderer using `format` for non-gRPC requests.
    pub fn new(format: ErrorFormat) -> JsonRenderer {
        JsonRenderer { format }
    }
}

impl RenderRejection for JsonRenderer {
    fn render(&self, rejection: &Rejection, request_headers: &HeaderMap) -> Response<Full<Bytes>> {
        if is_grpc(request_headers) {
            return render_grpc(rejection);
        }
        let problem = match self.format {
            ErrorFormat::Seed => false,
            ErrorFormat::ProblemJson => true,
            ErrorFormat::Negotiate => accepts_problem_json(request_headers),
        };
        let (body, content_type) = if problem {
            (rejection.to_problem_json(), "application/problem+json")
        } else {
            (rejection.to_json(), "application/json")
        };
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = rejection.status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.extend(rejection.headers.clone());
        response
    }
}

/// Whether the request is gRPC (`content-type: application/grpc…`).
pub fn is_grpc(request_headers: &HeaderMap) -> bool {
    request_headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

fn accepts_problem_json(request_headers: &HeaderMap) -> bool {
    request_headers.get_all(header::ACCEPT).iter().any(|value| {
        value.to_str().is_ok_and(|accept| {
            accept
                .split(',')
                .any(|item| item.trim().starts_with("application/problem+json"))
        })
    })
}

// A "trailers-only" gRPC response: HTTP 200, the status in the headers, no body.
fn render_grpc(rejection: &Rejection) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(
        "grpc-status",
        HeaderValue::from(u16::from(rejection.grpc_code().as_u8())),
    );
    let message = percent_encode_grpc_message(rejection.message());
    if let Ok(value) = HeaderValue::from_str(&message) {
        headers.insert("grpc-message", value);
    }
    headers.extend(rejection.headers.clone());
    response
}

// gRPC's Percent-Encoded grammar: printable ASCII except '%' stays, the rest is %XX.
fn percent_encode_grpc_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A shared, cloneable renderer; the default is [`JsonRenderer`] with the seed's format.
#[derive(Clone)]
pub struct Renderer(Arc<dyn RenderRejection>);

impl Renderer {
    /// Wraps a custom renderer.
    pub fn new(renderer: impl RenderRejection) -> Renderer {
        Renderer(Arc::new(renderer))
    }

    /// The built-in renderer with a chosen format.
    pub fn json(format: ErrorFormat) -> Renderer {
        Renderer::new(JsonRenderer::new(format))
    }

    /// Renders a rejection for a request with these headers.
    pub fn render(&self, rejection: &Rejection, request_headers: &HeaderMap) -> Response<Full<Bytes>> {
        self.0.render(rejection, request_headers)
    }
}

impl Default for Renderer {
    fn default() -> Renderer {
        Renderer::json(ErrorFormat::Seed)
    }
}

impl fmt::Debug for Renderer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Renderer")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `Full` yields its bytes on the first poll, so no runtime is needed.
    fn body(response: &Response<Full<Bytes>>) -> Bytes {
        use http_body::Body;
        let mut body = response.body().clone();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
            std::task::Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
            _ => Bytes::new(),
        }
    }

    fn rate_limited() -> Rejection {
        Rejection::new(Code::RateLimited, "Rate limit exceeded. Retry after 1 second.")
            .with_field("retry_after", 1)
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
    }

    #[test]
    fn seed_json_matches_the_seed_byte_for_byte() {
        let response = rate_limited().render_default(&HeaderMap::new());
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            body(&response),
            r#"{"error":{"code":"RATE_LIMITED","message":"Rate limit exceeded. Retry after 1 second.","retry_after":1}}"#
        );
    }

    #[test]
    fn messages_are_escaped_as_json() {
        let body = Rejection::custom(StatusCode::BAD_REQUEST, "BAD", "a \"quoted\"\nline").to_json();
        let parsed: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["error"]["message"], "a \"quoted\"\nline");
    }

    #[test]
    fn problem_json_when_configured() {
        let response = Renderer::json(ErrorFormat::ProblemJson).render(&rate_limited(), &HeaderMap::new());
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(
            body(&response),
            r#"{"type":"about:blank","title":"Too Many Requests","status":429,"detail":"Rate limit exceeded. Retry after 1 second.","code":"RATE_LIMITED","retry_after":1}"#
        );
    }

    #[test]
    fn negotiated_problem_json_follows_accept() {
        let renderer = Renderer::json(ErrorFormat::Negotiate);
        let mut headers = HeaderMap::new();
        assert_eq!(
            renderer.render(&rate_limited(), &headers).headers()[header::CONTENT_TYPE],
            "application/json"
        );
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html, application/problem+json;q=0.9"),
        );
        assert_eq!(
            renderer.render(&rate_limited(), &headers).headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }

    #[test]
    fn grpc_requests_get_a_trailers_only_status() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc+proto"));
        let response = rate_limited().render_default(&headers);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "8");
        assert_eq!(
            response.headers()["grpc-message"],
            "Rate limit exceeded. Retry after 1 second."
        );
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert!(body(&response).is_empty());
    }

    #[test]
    fn grpc_codes_follow_the_usual_mapping() {
        assert_eq!(GrpcCode::from_http(StatusCode::UNAUTHORIZED).as_u8(), 16);
        assert_eq!(GrpcCode::from_http(StatusCode::FORBIDDEN).as_u8(), 7);
        assert_eq!(GrpcCode::from_http(StatusCode::TOO_MANY_REQUESTS).as_u8(), 8);
        assert_eq!(GrpcCode::from_http(StatusCode::BAD_REQUEST).as_u8(), 3);
        assert_eq!(GrpcCode::from_http(StatusCode::SERVICE_UNAVAILABLE).as_u8(), 14);
        let custom = rate_limited().with_grpc_code(GrpcCode::Aborted);
        assert_eq!(custom.grpc_code(), GrpcCode::Aborted);
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(
            percent_encode_grpc_message("100% sure – ok"),
            "100%25 sure %E2%80%93 ok"
        );
    }
}
