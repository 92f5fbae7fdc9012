//! Start-up: the configured accounts' webhooks and allowlists, and a first
//! key for `acct_demo` so a new user can call the API at once.

use tollgate_auth::{KeyFormat, KeyManagerError, NewKey, CHECKSUM_LEN, RANDOM_LEN};
use tollgate_core::allowlist::IpSet;
use tollgate_core::KeyKind;
use tollgate_webhook::WebhookSecret;

use crate::config::Config;
use crate::state::AppState;
use crate::webhooks::WebhookEndpoint;

/// Checks an operator's `BOOTSTRAP_KEY`: it must be a well-formed production
/// key of [`KeyFormat::default`], since the API refuses tokens failing that
/// format's checksum before any lookup. The error never contains the key.
pub fn check_bootstrap_key(key: &str) -> Result<(), String> {
    let format = KeyFormat::default();
    let prefix = format.prefix(KeyKind::Production);
    let expected = format!(
        "expected a production key: {prefix} then {} base62 characters ({RANDOM_LEN} random, a {CHECKSUM_LEN}-character checksum), as the API creates",
        RANDOM_LEN + CHECKSUM_LEN
    );
    match format.check(key) {
        Ok(KeyKind::Production) => Ok(()),
        Ok(kind) => Err(format!("BOOTSTRAP_KEY is a {} key; {expected}", kind.as_str())),
        Err(error) => Err(format!("BOOTSTRAP_KEY is not a well-formed key ({error}); {expected}")),
    }
}

/// Applies the configured accounts and ensures `acct_demo` has a key.
/// Returns the key's value when one was generated now (print it once);
/// `None` when the account already had what it needs or the operator's
/// `bootstrap_key` was imported (the operator knows it: it is never echoed). A
/// `bootstrap_key` failing [`check_bootstrap_key`] is refused before anything is stored.
pub async fn bootstrap(state: &AppState, bootstrap_key: Option<&str>) -> Result<Option<String>, String> {
    if let Some(key) = bootstrap_key {
        check_bootstrap_key(key)?;
    }
    for account in &state.config().accounts {
        if let Some(url) = &account.webhook_url {
            let secret = account
                .webhook_secret
                .clone()
                .ok_or_else(|| format!("account {:?}: webhook_url needs webhook_secret", account.id))?;
            state
                .webhooks()
                .set(
                    &account.id,
                    WebhookEndpoint::new(url.clone(), WebhookSecret::new(secret)),
                    state.now(),
                )
                .await
                .map_err(|error| error.to_string())?;
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
    if let Some(service) = &state.stores().service {
        let now = tollgate_core::unix_secs(state.now());
        let configured = state.config().accounts.iter().map(|account| account.id.as_str());
        for id in std::iter::once(demo).chain(configured) {
            service
                .database
                .record_account(id, &state.plan_name(id), now)
                .await
                .map_err(|error| format!("cannot record account {id:?}: {error}"))?;
        }
    }
    let new_key = || {
        NewKey::new(demo, KeyKind::Production)
            .label("Bootstrap key")
            .plan(state.plan_name(demo))
    };
    if let Some(plaintext) = bootstrap_key {
        return match state.keys().import(new_key(), plaintext).await {
            Ok(_) | Err(KeyManagerError::Duplicate) => Ok(None),
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

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::SharedClock;

    use crate::stores::Stores;

    fn state() -> AppState {
        let clock = SharedClock::default();
        AppState::new(Config::default(), Stores::memory(clock.clone()), clock)
    }

    #[test]
    fn a_well_formed_production_key_is_accepted() {
        let key = KeyFormat::default().generate(KeyKind::Production);
        assert_eq!(check_bootstrap_key(key.expose_secret()), Ok(()));
    }

    #[test]
    fn malformed_bootstrap_keys_are_refused_without_their_value() {
        let good = KeyFormat::default().generate(KeyKind::Production);
        let good = good.expose_secret();
        let last = if good.ends_with('A') { 'B' } else { 'A' };
        let bad_checksum = format!("{}{last}", &good[..good.len() - 1]);
        let sandbox = KeyFormat::default().generate(KeyKind::Sandbox);
        for key in [
            "tg_live_not_a_key_at_all",
            "hunter2-secret-value",
            bad_checksum.as_str(),
            sandbox.expose_secret(),
        ] {
            let error = check_bootstrap_key(key).expect_err(key);
            assert!(error.starts_with("BOOTSTRAP_KEY is "), "{error}");
            assert!(
                error.contains("expected a production key: tg_live_ then 36 base62 characters"),
                "{error}"
            );
            assert!(!error.contains(key), "the message shows the key: {error}");
        }
        assert_eq!(
            check_bootstrap_key(&bad_checksum).unwrap_err(),
            "BOOTSTRAP_KEY is not a well-formed key (the key's checksum does not match); expected a production key: tg_live_ then 36 base62 characters (30 random, a 6-character checksum), as the API creates"
        );
    }

    #[tokio::test]
    async fn bootstrap_imports_a_well_formed_key_and_refuses_a_malformed_one() {
        let state = state();
        let refused = bootstrap(&state, Some("tg_live_typo")).await.unwrap_err();
        assert!(
            refused.starts_with("BOOTSTRAP_KEY is not a well-formed key"),
            "{refused}"
        );
        assert!(
            state.keys().list(Config::DEMO_ACCOUNT).await.unwrap().is_empty(),
            "nothing stored"
        );

        let key = KeyFormat::default().generate(KeyKind::Production);
        let imported = bootstrap(&state, Some(key.expose_secret())).await.unwrap();
        assert_eq!(
            imported, None,
            "an operator's key is imported, never handed back to print"
        );
        assert_eq!(state.keys().list(Config::DEMO_ACCOUNT).await.unwrap().len(), 1);
    }
}
