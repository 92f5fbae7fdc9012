//! Handler errors: every failure is a [`Rejection`] in the seed's JSON shape.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::HeaderMap;
use serde::de::DeserializeOwned;
use tollgate_auth::KeyManagerError;
use tollgate_core::{Code, Rejection};

/// A failed API call (boxed: a `Rejection` is large and errors are rare).
#[derive(Debug)]
pub struct ApiError(pub Box<Rejection>);

impl ApiError {
    /// 400 `INVALID_REQUEST`.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::from(Rejection::new(Code::InvalidRequest, message.into()))
    }

    /// 404 `NOT_FOUND`.
    pub fn not_found(what: &str) -> ApiError {
        ApiError::from(Rejection::new(Code::NotFound, format!("{what} not found.")))
    }

    /// 403 `FORBIDDEN`.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::from(Rejection::new(Code::Forbidden, message.into()))
    }

    /// 503 for a failing store.
    pub fn unavailable(error: impl std::fmt::Display) -> ApiError {
        tracing::warn!(%error, "store failed");
        ApiError::from(Rejection::store_unavailable())
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> ApiError {
        ApiError(Box::new(rejection))
    }
}

/// A key-management failure as the API answers it
/// ([`KeyManagerError::to_rejection`]).
impl From<KeyManagerError> for ApiError {
    fn from(error: KeyManagerError) -> ApiError {
        ApiError::from(error.to_rejection())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.render_default(&HeaderMap::new()).into_response()
    }
}

/// `Json<T>` whose failures are seed-shaped: 415 `UNSUPPORTED_MEDIA_TYPE`
/// without a JSON content type, 400 `INVALID_REQUEST` for a body that does
/// not parse or does not fit.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(unsupported_media_type()),
            Err(rejection) if rejection.status() == http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::from(Rejection::from_code(Code::PayloadTooLarge)))
            }
            Err(rejection) => Err(ApiError::invalid(format!(
                "Invalid JSON body: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// 415 `UNSUPPORTED_MEDIA_TYPE`.
pub fn unsupported_media_type() -> ApiError {
    ApiError::from(Rejection::new(
        Code::UnsupportedMediaType,
        "Requests with a body must have Content-Type: application/json.",
    ))
}

/// `Path<T>` whose failure is a seed-shaped 400 `INVALID_REQUEST` (axum's
/// own is plain text), for a path parameter that does not decode.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(ApiError::invalid(format!(
                "Invalid path parameter: {}",
                rejection.body_text()
            ))),
        }
    }
}
