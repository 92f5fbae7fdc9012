//! The messaging API over gRPC: `messaging.v1.Messaging` (`SendMessage`,
//! `GetMessage`, see `proto/messaging.proto`) served by tonic behind the
//! same tollgate layers as the HTTP API — bearer API keys, per-key rate
//! limits by plan, idempotent sends — with every refusal a gRPC status:
//!
//! | refusal | gRPC status |
//! |---|---|
//! | no key, or a malformed, unknown, revoked or expired one | `UNAUTHENTICATED` (16) |
//! | a read-only key calling `SendMessage` | `PERMISSION_DENIED` (7) |
//! | over the plan's rate or daily quota | `RESOURCE_EXHAUSTED` (8), `retry-after` metadata, a `google.rpc.RetryInfo` in `grpc-status-details-bin` |
//! | an `x-request-id` still in flight | `ABORTED` (10), with the same retry hints |
//! | an `x-request-id` reused for another message | `INVALID_ARGUMENT` (3) |
//! | a `to` that is not E.164, an empty text | `INVALID_ARGUMENT` (3) |
//! | another account's (or environment's) message | `NOT_FOUND` (5) |
//!
//! A `SendMessage` retried with the same `x-request-id` metadata gets the
//! first call's message back (with `idempotent-replayed: true` metadata)
//! instead of sending a second one. [`router`] builds the server and
//! [`serve`] runs it; `main.rs` adds a bootstrap key and a listen address.
//!
//! ```no_run
//! use grpc_messaging::pb::messaging_client::MessagingClient;
//! use grpc_messaging::pb::SendMessageRequest;
//!
//! # async fn call(key: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let mut client = MessagingClient::connect("http://127.0.0.1:50051").await?;
//! let mut request = tonic::Request::new(SendMessageRequest {
//!     to: "+15551234567".into(),
//!     text: "Hello".into(),
//! });
//! request.metadata_mut().insert("authorization", format!("Bearer {key}").parse()?);
//! request.metadata_mut().insert("x-request-id", "5a1b2c3d-0000-4000-8000-000000000001".parse()?);
//! let message = client.send_message(request).await?.into_inner();
//! println!("{} {}", message.id, message.status);
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bootstrap;
pub mod limits;
pub mod messages;
pub mod server;
pub mod service;
pub mod state;
pub mod status_details;

/// The code generated from `proto/messaging.proto`: messages, the client
/// ([`pb::messaging_client::MessagingClient`]) and the server trait.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    include!("generated/messaging.v1.rs");
}

pub use bootstrap::bootstrap_key;
pub use limits::GrpcLimits;
pub use server::{
    layers, router, router_with, serve, serve_with_limits, serve_with_shutdown, GET_MESSAGE, SEND_MESSAGE,
};
pub use state::AppState;
