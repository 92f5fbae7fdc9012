//! A first key, so a new user can call the service at once.

use tollgate_auth::{KeyManagerError, NewKey};
use tollgate_core::KeyKind;

use crate::state::AppState;

/// The account the bootstrap key belongs to.
pub const DEMO_ACCOUNT: &str = "acct_demo";

/// Creates a production key on the Free plan for [`DEMO_ACCOUNT`], or
/// imports `chosen` (the `BOOTSTRAP_KEY` environment variable) as that key,
/// and returns its value, to be shown once.
pub async fn bootstrap_key(state: &AppState, chosen: Option<&str>) -> Result<String, KeyManagerError> {
    let new_key = NewKey::new(DEMO_ACCOUNT, KeyKind::Production)
        .label("Bootstrap key")
        .plan("free");
    match chosen {
        Some(plaintext) => {
            state.keys().import(new_key, plaintext).await?;
            Ok(plaintext.to_owned())
        }
        None => {
            let created = state.keys().create(new_key).await?;
            Ok(created.secret.expose_secret().to_owned())
        }
    }
}
