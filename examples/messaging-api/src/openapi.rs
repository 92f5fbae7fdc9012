//! The API's OpenAPI 3.1 document, served at `GET /openapi.json`.
//!
//! Each handler carries its own `#[utoipa::path]`, and [`crate::router`]
//! mounts handlers only through `utoipa_axum`'s `routes!`, so the routes and
//! the document come from one table: a route cannot exist undocumented.
//! What every route of the stack shares (the bearer key, the layers' error
//! answers and headers) is added here by [`StackConventions`], once, rather
//! than repeated on each handler, once the router has added the paths. `/health*`, `/metrics` (the admin listener)
//! and `/openapi.json` itself are not API operations and stay out of it.

use serde::Serialize;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HttpMethod, ObjectBuilder, OpenApi as Document, Ref, RefOr, Required, Response, ResponseBuilder,
    Type,
};
use utoipa::{Modify, OpenApi, ToSchema};

/// The document's fixed part; the paths come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "messaging-api",
        description = "A StartMessaging-style messaging API: every call needs `Authorization: Bearer <key>`. \
                       Errors are `{\"error\":{\"code\",\"message\"}}`."
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    tags(
        (name = "messages", description = "Sending and reading messages"),
        (name = "keys", description = "API keys and their IP allowlists"),
        (name = "security", description = "The account's IP allowlist"),
        (name = "webhooks", description = "The account's webhook"),
        (name = "usage", description = "Usage and the audit log"),
    )
)]
pub struct ApiDoc;

/// Every error the API answers: `{"error":{"code","message",…}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of an [`ErrorBody`]; some codes add fields (`key_id`,
/// `replaces` for `KEY_ALREADY_CREATED`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code such as `UNAUTHORIZED` or `RATE_LIMITED`.
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

/// The name of the bearer security scheme.
pub const BEARER: &str = "bearer";

/// Adds what the layer stack does to every operation: the bearer key; the
/// `RateLimit` headers; the error answers of authentication (401), the
/// allowlists and key types (403), the rate limit (429, `Retry-After`), the
/// stores (503); for a body, 413 and 415; for a `POST`, the idempotency
/// layer's `X-Request-ID`, its 409 and 422 and `Idempotent-Replayed`.
pub struct StackConventions;

impl Modify for StackConventions {
    fn modify(&self, document: &mut Document) {
        let components = document.components.get_or_insert_with(Default::default);
        components.add_security_scheme(BEARER, SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        for item in document.paths.paths.values_mut() {
            let operations = [
                (HttpMethod::Get, &mut item.get),
                (HttpMethod::Put, &mut item.put),
                (HttpMethod::Post, &mut item.post),
                (HttpMethod::Delete, &mut item.delete),
                (HttpMethod::Patch, &mut item.patch),
            ];
            for (method, operation) in operations {
                if let Some(operation) = operation {
                    apply(method, operation);
                }
            }
        }
    }
}

fn apply(method: HttpMethod, operation: &mut Operation) {
    operation.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    let idempotent = method == HttpMethod::Post;
    if idempotent {
        let parameter = ParameterBuilder::new()
            .name("X-Request-ID")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Idempotency key (1 to 255 visible ASCII characters): a retry with the same one and \
                 the same request gets the first answer again, with `Idempotent-Replayed: true`.",
            ))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .build();
        operation.parameters.get_or_insert_with(Vec::new).push(parameter);
    }
    let mut errors = vec![
        (
            400,
            "The request is invalid (`INVALID_REQUEST` and more specific codes).",
        ),
        (401, "No key, or not a valid one (`UNAUTHORIZED`)."),
        (403, "The key may not do this, or the client address is not allowed."),
        (
            429,
            "Over the plan's rate or daily quota (`RATE_LIMITED`), or too many failed keys from this address.",
        ),
        (500, "An unexpected failure (`INTERNAL_ERROR`)."),
        (
            503,
            "A store is unavailable or the request took too long (`SERVICE_UNAVAILABLE`).",
        ),
    ];
    if operation.request_body.is_some() || idempotent {
        errors.push((413, "The body is over the server's limit (`PAYLOAD_TOO_LARGE`)."));
        errors.push((415, "A body without `Content-Type: application/json`."));
    }
    if idempotent {
        errors.push((409, "The first request with this `X-Request-ID` is still running."));
        errors.push((
            422,
            "This `X-Request-ID` was used for a different request (`IDEMPOTENCY_KEY_REUSED`).",
        ));
    }
    let responses = &mut operation.responses.responses;
    for (status, description) in errors {
        responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::T(error_response(description)));
    }
    for (status, response) in responses.iter_mut() {
        if let RefOr::T(response) = response {
            add_headers(status, idempotent, response);
        }
    }
}

/// The response for a status with an [`ErrorBody`].
pub fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

fn add_headers(status: &str, idempotent: bool, response: &mut Response) {
    let string = || ObjectBuilder::new().schema_type(Type::String);
    // Answers from before the rate limit (401, 403) do not have them.
    response.headers.insert(
        "RateLimit".into(),
        HeaderBuilder::new()
            .schema(string())
            .description(Some(
                "The caller's remaining allowance (IETF draft `RateLimit` header), e.g. `\"default\";r=9;t=1`.",
            ))
            .build(),
    );
    response.headers.insert(
        "RateLimit-Policy".into(),
        HeaderBuilder::new()
            .schema(string())
            .description(Some("The plan's limits, e.g. `\"default\";q=10;w=1`."))
            .build(),
    );
    if status == "429" || status == "503" {
        response.headers.insert(
            "Retry-After".into(),
            HeaderBuilder::new()
                .schema(string().pattern(Some("^[0-9]+$")))
                .description(Some("Seconds to wait before trying again."))
                .build(),
        );
    }
    if idempotent {
        response.headers.insert(
            "Idempotent-Replayed".into(),
            HeaderBuilder::new()
                .schema(string().enum_values(Some(["true"])))
                .description(Some("`true` on an answer replayed for a repeated `X-Request-ID`."))
                .build(),
        );
    }
}
