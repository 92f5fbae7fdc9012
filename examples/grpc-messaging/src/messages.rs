//! Messages: what `SendMessage` accepts and the store that `GetMessage`
//! reads, each message visible to its account in its environment only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tollgate_core::Environment;

use crate::pb;

/// The longest text accepted, in characters (WhatsApp's limit).
pub const MAX_TEXT_LEN: usize = 4096;

/// Checks a `SendMessage` request; the error is the `INVALID_ARGUMENT` message.
pub fn validate(request: &pb::SendMessageRequest) -> Result<(), String> {
    if !is_e164(&request.to) {
        return Err(format!(
            "\"to\" must be an E.164 number such as +15551234567, not {:?}",
            request.to
        ));
    }
    if request.text.trim().is_empty() {
        return Err("\"text\" must not be empty".into());
    }
    if request.text.chars().count() > MAX_TEXT_LEN {
        return Err(format!("\"text\" is longer than {MAX_TEXT_LEN} characters"));
    }
    Ok(())
}

// `+`, then 8 to 15 digits, the first not 0 (a country code never starts with 0).
fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
    })
}

/// Messages in memory, by id. Clones share the messages.
#[derive(Debug, Clone, Default)]
pub struct MessageStore {
    messages: Arc<Mutex<HashMap<String, Owned>>>,
}

#[derive(Debug)]
struct Owned {
    account_id: String,
    environment: Environment,
    message: pb::Message,
}

impl MessageStore {
    /// Stores `message`, sent by `account_id` in `environment`.
    pub fn insert(&self, account_id: &str, environment: Environment, message: pb::Message) {
        let owned = Owned {
            account_id: account_id.to_owned(),
            environment,
            message,
        };
        self.lock().insert(owned.message.id.clone(), owned);
    }

    /// The message with this id, if `account_id` sent it in `environment`.
    pub fn get(&self, id: &str, account_id: &str, environment: Environment) -> Option<pb::Message> {
        let messages = self.lock();
        let owned = messages.get(id)?;
        (owned.account_id == account_id && owned.environment == environment).then(|| owned.message.clone())
    }

    /// How many messages were sent, by every account.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no message was sent yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Owned>> {
        // Nothing panics while holding the lock: a poisoned map is still whole.
        self.messages.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `msg_` and 24 random base62 characters from the operating system.
pub fn new_message_id() -> Result<String, getrandom::Error> {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut id = String::from("msg_");
    let mut bytes = [0u8; 32];
    while id.len() < 4 + 24 {
        getrandom::getrandom(&mut bytes)?;
        // 62 * 4 = 248: bytes at or above it are dropped so every character is equally likely.
        for byte in bytes.iter().filter(|byte| **byte < 248).take(4 + 24 - id.len()) {
            id.push(char::from(ALPHABET[usize::from(*byte % 62)]));
        }
    }
    Ok(id)
}

/// `2026-11-30T09:33:19Z`: UTC, whole seconds (times before 1970 show the epoch).
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
    let (days, secs_of_day) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (Howard Hinnant's algorithm), from 0000-03-01.
    let shifted = days + 719_468;
    let (era, day_of_era) = (shifted / 146_097, shifted % 146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn request(to: &str, text: &str) -> pb::SendMessageRequest {
        pb::SendMessageRequest {
            to: to.into(),
            text: text.into(),
        }
    }

    #[test]
    fn validation_accepts_e164_and_text_and_refuses_the_rest() {
        assert_eq!(validate(&request("+15551234567", "Hello")), Ok(()));
        assert_eq!(validate(&request("+12345678", "x")), Ok(()));
        for bad in [
            "15551234567",
            "+1",
            "+1234567",
            "+1555123456789012",
            "+1555abc4567",
            "+05551234567",
            "",
        ] {
            let error = validate(&request(bad, "Hello")).unwrap_err();
            assert!(error.starts_with("\"to\" must be an E.164 number"), "{bad}: {error}");
        }
        assert_eq!(
            validate(&request("+15551234567", " \n")),
            Err("\"text\" must not be empty".into())
        );
        assert!(validate(&request("+15551234567", &"é".repeat(MAX_TEXT_LEN))).is_ok());
        assert!(validate(&request("+15551234567", &"x".repeat(MAX_TEXT_LEN + 1))).is_err());
    }

    #[test]
    fn messages_are_visible_to_their_account_and_environment_only() {
        let store = MessageStore::default();
        let message = pb::Message {
            id: "msg_1".into(),
            ..pb::Message::default()
        };
        store.insert("acct_a", Environment::Sandbox, message.clone());
        assert_eq!(store.get("msg_1", "acct_a", Environment::Sandbox), Some(message));
        assert_eq!(store.get("msg_1", "acct_a", Environment::Live), None);
        assert_eq!(store.get("msg_1", "acct_b", Environment::Sandbox), None);
        assert_eq!(store.get("msg_2", "acct_a", Environment::Sandbox), None);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn ids_are_random_base62() {
        let (a, b) = (new_message_id().unwrap(), new_message_id().unwrap());
        assert_ne!(a, b);
        for id in [a, b] {
            assert_eq!(id.len(), 28);
            assert!(
                id.starts_with("msg_") && id[4..].bytes().all(|b| b.is_ascii_alphanumeric()),
                "{id}"
            );
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_796_031_199)),
            "2026-11-30T09:33:19Z"
        );
        assert_eq!(rfc3339(UNIX_EPOCH - Duration::from_secs(1)), "1970-01-01T00:00:00Z");
    }
}
