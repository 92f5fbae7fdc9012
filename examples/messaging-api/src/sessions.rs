//! Dashboard sessions: what a signed-in browser's cookie stands for.
//!
//! The cookie holds a random id (32 bytes from the OS); the store knows
//! only its SHA-256 ([`id_hash`]), so a copy of the database signs no one
//! in. A session belongs to the Production key it was created from and
//! ends at its expiry, after the idle timeout, on sign-out, or as soon as
//! that key stops authenticating (the dashboard checks the key on every
//! request). The CSRF token of a session is derived from its id
//! ([`csrf_token`]), so it needs no storage and changes with the session.
//!
//! The store is the database when the server has one, else process memory.
//! A flash — the one-time message a page shows after a redirect, such as a
//! new key — is kept beside the session (sealed in the database) and
//! deleted as it is read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::db::sessions::SqlSessions;
use crate::db::DbError;

/// A signed-in session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The account.
    pub account_id: String,
    /// The Production key the session was created from.
    pub key_id: String,
    /// Sign-in.
    pub created_at: SystemTime,
    /// When it ends however busy.
    pub expires_at: SystemTime,
    /// Its last request, at the resolution of [`TOUCH_EVERY`].
    pub last_seen: SystemTime,
}

/// How stale `last_seen` may get before a request rewrites it: a write per
/// minute per session, not per request.
pub const TOUCH_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// A new random session id, for the cookie (43 URL-safe characters).
pub fn new_session_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// What the store keeps of a session id: its SHA-256, hex.
pub fn id_hash(session_id: &str) -> String {
    hex::encode(Sha256::digest(session_id.as_bytes()))
}

/// The session's CSRF token: a hash of its id under its own label, so it
/// differs from the stored hash and reveals nothing of the id.
pub fn csrf_token(session_id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"messaging-api dashboard csrf\0");
    hasher.update(session_id.as_bytes());
    hex::encode(hasher.finalize())
}

/// Sessions in process memory. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct MemorySessions {
    sessions: Arc<Mutex<HashMap<String, Session>>>,
    flashes: Arc<Mutex<HashMap<String, String>>>,
}

// Every change to the maps is one step: a poisoned lock is used as is.
impl MemorySessions {
    fn sessions(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn flashes(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.flashes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where sessions live.
#[derive(Debug, Clone)]
pub enum Sessions {
    /// In process memory.
    Memory(MemorySessions),
    /// In the database.
    Sql(SqlSessions),
}

impl Sessions {
    /// Stores a new session.
    pub async fn insert(&self, id_hash: &str, session: &Session) -> Result<(), DbError> {
        match self {
            Sessions::Memory(memory) => {
                let mut sessions = memory.sessions();
                sessions.insert(id_hash.to_owned(), session.clone());
                Ok(())
            }
            Sessions::Sql(sql) => sql.insert(id_hash, session).await,
        }
    }

    /// The session under `id_hash`, whether or not it has ended.
    pub async fn get(&self, id_hash: &str) -> Result<Option<Session>, DbError> {
        match self {
            Sessions::Memory(memory) => Ok(memory.sessions().get(id_hash).cloned()),
            Sessions::Sql(sql) => sql.get(id_hash).await,
        }
    }

    /// Notes a request at `now`.
    pub async fn touch(&self, id_hash: &str, now: SystemTime) -> Result<(), DbError> {
        match self {
            Sessions::Memory(memory) => {
                if let Some(session) = memory.sessions().get_mut(id_hash) {
                    session.last_seen = now;
                }
                Ok(())
            }
            Sessions::Sql(sql) => sql.touch(id_hash, now).await,
        }
    }

    /// Ends a session (and drops its flash).
    pub async fn remove(&self, id_hash: &str) -> Result<(), DbError> {
        match self {
            Sessions::Memory(memory) => {
                memory.sessions().remove(id_hash);
                memory.flashes().remove(id_hash);
                Ok(())
            }
            Sessions::Sql(sql) => sql.remove(id_hash).await,
        }
    }

    /// Deletes sessions that have ended by `now` (expired, or idle since
    /// `idle_since`) and flashes nobody read since `flash_since`.
    pub async fn prune(
        &self,
        now: SystemTime,
        idle_since: SystemTime,
        flash_since: SystemTime,
    ) -> Result<u64, DbError> {
        match self {
            Sessions::Memory(memory) => {
                let mut sessions = memory.sessions();
                let before = sessions.len();
                sessions.retain(|_, session| session.expires_at > now && session.last_seen > idle_since);
                let deleted = (before - sessions.len()) as u64;
                memory.flashes().retain(|hash, _| sessions.contains_key(hash));
                Ok(deleted)
            }
            Sessions::Sql(sql) => sql.prune(now, idle_since, flash_since).await,
        }
    }

    /// Leaves a one-time message for the session's next page.
    pub async fn put_flash(&self, id_hash: &str, text: &str, now: SystemTime) -> Result<(), DbError> {
        match self {
            Sessions::Memory(memory) => {
                let mut flashes = memory.flashes();
                flashes.insert(id_hash.to_owned(), text.to_owned());
                Ok(())
            }
            Sessions::Sql(sql) => sql.put_flash(id_hash, text, now).await,
        }
    }

    /// Takes the session's one-time message: a second call gets `None`.
    pub async fn take_flash(&self, id_hash: &str) -> Result<Option<String>, DbError> {
        match self {
            Sessions::Memory(memory) => Ok(memory.flashes().remove(id_hash)),
            Sessions::Sql(sql) => sql.take_flash(id_hash).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_only_their_hashes_are_kept() {
        let (a, b) = (new_session_id().unwrap(), new_session_id().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(id_hash(&a).len(), 64);
        assert_ne!(id_hash(&a), id_hash(&b));
        assert_ne!(csrf_token(&a), id_hash(&a), "the token is not the stored hash");
        assert_eq!(csrf_token(&a), csrf_token(&a));
    }
}
