//! Start-up: the configured accounts' webhooks and allowlists, and a first
//! key for `acct_demo` so a new user can call the API at once.

use tollgate_auth::{KeyManagerError, NewKey};
use tollgate_core::allowlist::IpSet;
use tollgate_core::KeyKind;
use tollgate_webhook::WebhookSecret;

use crate::config::Config;
use crate::state::AppState;
use crate::webhooks::WebhookEndpoint;

/// Applies the configured accounts and ensures `acct_demo` has a key.
/// Returns the key's value when one was created or imported now (print it
/// once), `None` when the account already had what it needs.
pub async fn bootstrap(state: &AppState, bootstrap_key: Option<&str>) -> Result<Option<String>, String> {
    for account in &state.config().accounts {
        if let Some(url) = &account.webhook_url {
            let secret = account
                .webhook_secret
                .clone()
                .ok_or_else(|| format!("account {:?}: webhook_url needs webhook_secret", account.id))?;
            state.webhooks().set(
                &account.id,
                WebhookEndpoint {
                    url: url.clone(),
                    secret: WebhookSecret::new(secret),
                },
            );
        }
        if !account.ip_allowlist.is_empty() {
            let set = IpSet::new(account.ip_allowlist.iter().copied());
            state
                .allowlists()
                .set_account_allowlist(&account.id, set)
                .await
                .map_err(|error| error.to_string())?;
        }
    }

    let demo = Config::DEMO_ACCOUNT;
    let new_key = || {
        NewKey::new(demo, KeyKind::Production)
            .label("Bootstrap key")
            .plan(state.plan_name(demo))
    };
    if let Some(plaintext) = bootstrap_key {
        return match state.keys().import(new_key(), plaintext).await {
            Ok(_) => Ok(Some(plaintext.to_owned())),
            Err(KeyManagerError::Duplicate) => Ok(None),
            Err(error) => Err(format!("BOOTSTRAP_KEY: {error}")),
        };
    }
    let now = state.now();
    let keys = state.keys().list(demo).await.map_err(|error| error.to_string())?;
    if keys
        .iter()
        .any(|key| key.revoked_at.is_none_or(|at| at > now) && key.expires_at.is_none_or(|at| at > now))
    {
        return Ok(None);
    }
    let created = state
        .keys()
        .create(new_key())
        .await
        .map_err(|error| error.to_string())?;
    Ok(Some(created.secret.expose_secret().to_owned()))
}
