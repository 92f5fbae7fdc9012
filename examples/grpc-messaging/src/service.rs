//! [`MessagingService`]: `SendMessage` and `GetMessage`, for the caller the
//! layers authenticated.

use tollgate_core::Principal;
use tonic::{Request, Response, Status};

use messaging_api::messages::Message as StoredMessage;

use crate::messages::{new_message_id, send_message, to_pb};
use crate::pb::messaging_server::Messaging;
use crate::pb::{GetMessageRequest, Message, SendMessageRequest};
use crate::state::AppState;

/// The `messaging.v1.Messaging` service. It trusts the [`Principal`] that
/// `BearerAuthLayer` put in the request's extensions: the layers in front
/// have already authenticated, authorised, rate-limited and deduplicated
/// the call.
#[derive(Clone)]
pub struct MessagingService {
    state: AppState,
}

impl MessagingService {
    /// The service over `state`.
    pub fn new(state: AppState) -> MessagingService {
        MessagingService { state }
    }
}

// Without a principal the service was mounted without authentication in
// front: refuse rather than serve an anonymous caller.
fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("Missing API key."))
}

#[tonic::async_trait]
impl Messaging for MessagingService {
    async fn send_message(&self, request: Request<SendMessageRequest>) -> Result<Response<Message>, Status> {
        let principal = principal(&request)?;
        let request = send_message(request.into_inner());
        request.validate().map_err(Status::invalid_argument)?;
        let id = new_message_id().map_err(|error| {
            tracing::error!(%error, "no randomness for a message id");
            Status::unavailable("The service is temporarily unavailable. Please retry.")
        })?;
        let now = self.state.clock().now();
        let stored = StoredMessage::new(id, request, principal.account_id(), principal.environment(), now);
        self.state.messages().insert(stored.clone());
        let message = to_pb(stored);
        tracing::info!(account = principal.account_id(), id = %message.id, sandbox = message.sandbox, "message queued");
        Ok(Response::new(message))
    }

    async fn get_message(&self, request: Request<GetMessageRequest>) -> Result<Response<Message>, Status> {
        let principal = principal(&request)?;
        let id = &request.get_ref().id;
        // Another account's message, or one from the other environment, is
        // as absent as one that never existed.
        self.state
            .messages()
            .get(id, principal.account_id(), principal.environment())
            .map(|message| Response::new(to_pb(message)))
            .ok_or_else(|| Status::not_found(format!("Message {id:?} not found.")))
    }
}
