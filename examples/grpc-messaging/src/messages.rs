//! Messages: the model and store of the HTTP example (`messaging-api`),
//! reached through the gRPC types, so both APIs accept and keep the same
//! messages.

pub use messaging_api::messages::{new_message_id, MessageStore};
pub use messaging_api::time::rfc3339;

use messaging_api::messages::{Message, SendMessage, Text};

use crate::pb;

/// The HTTP API's request for a `SendMessage` call (gRPC sends text only).
pub fn send_message(request: pb::SendMessageRequest) -> SendMessage {
    SendMessage {
        to: request.to,
        kind: "text".into(),
        text: Some(Text { body: request.text }),
    }
}

/// A stored message as the gRPC API shows it.
pub fn to_pb(message: Message) -> pb::Message {
    pb::Message {
        id: message.id,
        status: message.status.as_str().into(),
        to: message.to,
        text: message.text.map(|text| text.body).unwrap_or_default(),
        sandbox: message.sandbox,
        created_at: message.created_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;
    use tollgate_core::Environment;

    #[test]
    fn grpc_requests_validate_like_http_ones() {
        let request = |to: &str, text: &str| {
            send_message(pb::SendMessageRequest {
                to: to.into(),
                text: text.into(),
            })
        };
        assert_eq!(request("+15551234567", "Hello").validate(), Ok(()));
        assert!(request("5551234567", "Hello").validate().unwrap_err().contains("E.164"));
        assert!(request("+15551234567", " ")
            .validate()
            .unwrap_err()
            .contains("must not be empty"));
    }

    #[test]
    fn stored_messages_convert_field_by_field() {
        let request = send_message(pb::SendMessageRequest {
            to: "+15551234567".into(),
            text: "Hi".into(),
        });
        let stored = Message::new(
            "msg_1".into(),
            request,
            "acct",
            Environment::Sandbox,
            SystemTime::UNIX_EPOCH,
        );
        let shown = to_pb(stored);
        assert_eq!(
            shown,
            pb::Message {
                id: "msg_1".into(),
                status: "queued".into(),
                to: "+15551234567".into(),
                text: "Hi".into(),
                sandbox: true,
                created_at: "1970-01-01T00:00:00Z".into(),
            }
        );
    }
}
