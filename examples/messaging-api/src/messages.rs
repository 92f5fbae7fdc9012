//! Messages: what `POST /v1/messages` accepts, what it stores, and the store.

use std::sync::Arc;
use std::time::SystemTime;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use tollgate_core::Environment;

use crate::time::rfc3339;

/// The body of `POST /v1/messages`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// The recipient, in E.164 form (`+15551234567`).
    #[schema(pattern = "^\\+[1-9][0-9]{7,14}$")]
    pub to: String,
    /// The message type; `text` is supported.
    #[serde(rename = "type")]
    #[schema(pattern = "^text$")]
    pub kind: String,
    /// The text, for `text` messages.
    pub text: Option<Text>,
}

/// A text message's content.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Text {
    /// The text itself: 1 to 4096 characters, not only spaces.
    #[schema(min_length = 1, max_length = 4096, pattern = "\\S")]
    pub body: String,
}

/// The longest text body WhatsApp accepts.
pub const MAX_TEXT_LEN: usize = 4096;

impl SendMessage {
    /// Checks the request; the error is the message for a 400.
    pub fn validate(&self) -> Result<(), String> {
        // `+`, then 8 to 15 digits, the first not 0 (no country code starts with 0).
        let is_e164 = self.to.strip_prefix('+').is_some_and(|digits| {
            (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
        });
        if !is_e164 {
            return Err(format!(
                "\"to\" must be an E.164 number such as +15551234567, not {:?}",
                self.to
            ));
        }
        if self.kind != "text" {
            return Err(format!("unsupported message type {:?}; supported: \"text\"", self.kind));
        }
        match &self.text {
            None => Err("a text message needs \"text\": {\"body\": …}".into()),
            Some(text) if text.body.trim().is_empty() => Err("\"text.body\" must not be empty".into()),
            Some(text) if text.body.chars().count() > MAX_TEXT_LEN => {
                Err(format!("\"text.body\" is longer than {MAX_TEXT_LEN} characters"))
            }
            Some(_) => Ok(()),
        }
    }
}

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Accepted, not yet handed on.
    Queued,
    /// Handed to the network.
    Sent,
}

impl Status {
    /// `queued` or `sent`, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Sent => "sent",
        }
    }
}

/// A stored message, as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Message {
    /// `msg_…`.
    pub id: String,
    /// Its status.
    pub status: Status,
    /// The recipient.
    pub to: String,
    /// `text`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text.
    pub text: Option<Text>,
    /// Whether a sandbox key sent it (sandbox messages are never delivered).
    pub sandbox: bool,
    /// The account that sent it.
    pub account_id: String,
    /// When it was accepted (RFC 3339, UTC).
    pub created_at: String,
}

impl Message {
    /// A new queued message.
    pub fn new(
        id: String,
        request: SendMessage,
        account_id: &str,
        environment: Environment,
        now: SystemTime,
    ) -> Message {
        Message {
            id,
            status: Status::Queued,
            to: request.to,
            kind: request.kind,
            text: request.text,
            sandbox: environment == Environment::Sandbox,
            account_id: account_id.to_owned(),
            created_at: rfc3339(now),
        }
    }
}

/// `len` random base62 characters from the operating system.
pub fn random_base62(len: usize) -> Result<String, getrandom::Error> {
    let mut out = String::with_capacity(len);
    tollgate_auth::push_random_base62(&mut out, len)?;
    Ok(out)
}

/// A new message id: `msg_` and 24 random base62 characters.
pub fn new_message_id() -> Result<String, getrandom::Error> {
    Ok(format!("msg_{}", random_base62(24)?))
}

/// Messages in memory, by id, for in-process tests and the gRPC example:
/// unbounded, unlike the database store, which has retention. Clones share
/// the messages.
#[derive(Debug, Clone, Default)]
pub struct MessageStore {
    messages: Arc<DashMap<String, Message>>,
}

impl MessageStore {
    /// Stores a message.
    pub fn insert(&self, message: Message) {
        self.messages.insert(message.id.clone(), message);
    }

    /// The message with this id, if `account_id` owns it and it lives in `environment`.
    pub fn get(&self, id: &str, account_id: &str, environment: Environment) -> Option<Message> {
        let message = self.messages.get(id)?;
        let visible = message.account_id == account_id && message.sandbox == (environment == Environment::Sandbox);
        visible.then(|| message.clone())
    }

    /// How many messages are stored, for every account.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether no message is stored.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Sets a message's status.
    pub fn set_status(&self, id: &str, status: Status) {
        if let Some(mut message) = self.messages.get_mut(id) {
            message.status = status;
        }
    }
}

/// Where the server keeps messages: in memory (in-process tests), or in the
/// database, durable and bounded by retention.
#[derive(Debug, Clone)]
pub enum Messages {
    /// In process memory.
    Memory(MessageStore),
    /// In the database.
    Sql(crate::db::messages::SqlMessages),
}

impl Messages {
    /// Stores a message; durable (in the database) when this returns.
    pub async fn insert(&self, message: &Message, now: SystemTime) -> Result<(), crate::db::DbError> {
        match self {
            Messages::Memory(store) => {
                store.insert(message.clone());
                Ok(())
            }
            Messages::Sql(store) => store.insert(message, now).await,
        }
    }

    /// The message with this id, if `account_id` owns it and it lives in `environment`.
    pub async fn get(
        &self,
        id: &str,
        account_id: &str,
        environment: Environment,
    ) -> Result<Option<Message>, crate::db::DbError> {
        match self {
            Messages::Memory(store) => Ok(store.get(id, account_id, environment)),
            Messages::Sql(store) => store.get(id, account_id, environment).await,
        }
    }

    /// Sets a message's status.
    pub async fn set_status(&self, id: &str, status: Status) -> Result<(), crate::db::DbError> {
        match self {
            Messages::Memory(store) => {
                store.set_status(id, status);
                Ok(())
            }
            Messages::Sql(store) => store.set_status(id, status).await,
        }
    }

    /// How many messages are stored.
    pub async fn count(&self) -> Result<u64, crate::db::DbError> {
        match self {
            Messages::Memory(store) => Ok(store.len() as u64),
            Messages::Sql(store) => store.count().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(to: &str, body: &str) -> SendMessage {
        SendMessage {
            to: to.into(),
            kind: "text".into(),
            text: Some(Text { body: body.into() }),
        }
    }

    #[test]
    fn validation_accepts_the_seed_example_and_refuses_garbage() {
        assert_eq!(request("+15551234567", "Hello").validate(), Ok(()));
        for bad_to in [
            "15551234567",
            "+1",
            "+1555123456789012",
            "+1555abc4567",
            "+05551234567",
            "",
        ] {
            assert!(request(bad_to, "Hello").validate().is_err(), "{bad_to}");
        }
        assert!(request("+15551234567", "  ").validate().is_err());
        assert!(request("+15551234567", &"x".repeat(MAX_TEXT_LEN + 1))
            .validate()
            .is_err());
        let image = SendMessage {
            kind: "image".into(),
            ..request("+15551234567", "x")
        };
        assert!(image.validate().unwrap_err().contains("unsupported message type"));
    }

    #[test]
    fn ids_are_random_base62() {
        let id = new_message_id().unwrap();
        assert_eq!(id.len(), 4 + 24);
        assert!(id.starts_with("msg_") && id[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(id, new_message_id().unwrap());
    }

    #[test]
    fn messages_are_visible_only_to_their_account_and_environment() {
        let store = MessageStore::default();
        let now = SystemTime::UNIX_EPOCH;
        store.insert(Message::new(
            "msg_1".into(),
            request("+15551234567", "hi"),
            "acct_a",
            Environment::Sandbox,
            now,
        ));
        assert!(store.get("msg_1", "acct_a", Environment::Sandbox).is_some());
        assert!(store.get("msg_1", "acct_a", Environment::Live).is_none());
        assert!(store.get("msg_1", "acct_b", Environment::Sandbox).is_none());
        store.set_status("msg_1", Status::Sent);
        assert_eq!(
            store.get("msg_1", "acct_a", Environment::Sandbox).unwrap().status,
            Status::Sent
        );
    }
}
