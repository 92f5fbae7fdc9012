//! One-time messages after a POST-redirect-GET: a new key or signing
//! secret is put here by the POST and shown by the next page load, which
//! takes it (so a reload no longer shows it). Kept with the session,
//! sealed in the database; no `Debug`, since it may hold a secret.

use serde::{Deserialize, Serialize};

use crate::state::AppState;

/// What the next page shows once.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Flash {
    /// A key just created (or created by a rotation, replacing `replaces`).
    Key {
        /// The new key's id.
        id: String,
        /// Its label.
        label: String,
        /// The key itself.
        key: String,
        /// The key a rotation replaced, and until when it works.
        replaces: Option<(String, String)>,
    },
    /// A new webhook signing secret.
    Secret {
        /// The secret.
        secret: String,
        /// After a rotation: until when the old secret signs too.
        previous_valid_until: Option<String>,
    },
    /// Something done, to confirm.
    Done {
        /// What was done.
        message: String,
    },
}

/// Leaves `flash` for the session's next page. A failure is logged; the
/// change itself is made, so the page then says the value cannot be shown.
pub async fn put(state: &AppState, id_hash: &str, flash: &Flash) -> bool {
    let Ok(text) = serde_json::to_string(flash) else {
        return false;
    };
    match state.sessions().put_flash(id_hash, &text, state.now()).await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, "dashboard flash not stored");
            false
        }
    }
}

/// A confirmation.
pub fn done(message: impl Into<String>) -> Flash {
    Flash::Done {
        message: message.into(),
    }
}

/// Takes the session's flash, if any.
pub async fn take(state: &AppState, id_hash: &str) -> Option<Flash> {
    match state.sessions().take_flash(id_hash).await {
        Ok(text) => text.and_then(|text| serde_json::from_str(&text).ok()),
        Err(error) => {
            tracing::warn!(%error, "dashboard flash not read");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_flash_round_trips() {
        let flashes = [
            Flash::Key {
                id: "key_1".into(),
                label: "Staging".into(),
                key: "tg_test_x".into(),
                replaces: Some(("key_0".into(), "2026-12-03T00:00:00Z".into())),
            },
            Flash::Secret {
                secret: "whsec_x".into(),
                previous_valid_until: None,
            },
            done("Saved."),
        ];
        for flash in flashes {
            let text = serde_json::to_string(&flash).unwrap();
            let back: Flash = serde_json::from_str(&text).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), text);
        }
    }
}
