//! Bearer API keys for Tower services, as an API platform hands them out:
//!
//! - [`BearerAuthLayer`] authenticates `Authorization: Bearer <key>` against
//!   a [`KeyStore`](tollgate_core::keys::KeyStore) and puts the key's
//!   [`Principal`](tollgate_core::Principal) in request extensions; it also
//!   applies the key-kind rule (read-only keys may only `GET`/`HEAD`).
//! - [`RequireScopeLayer`] decides, per route, whether that principal may
//!   make the request (403 if not).
//! - [`KeyFormat`] generates keys that secret scanners recognise offline
//!   (`tg_live_` + 30 random base62 characters + a CRC32 checksum) and
//!   [`hash_key`] gives the SHA-256 under which they are stored.
//! - [`KeyManager`] creates, lists, rotates (with a grace period) and
//!   revokes keys in a [`KeyRegistry`](tollgate_core::keys::KeyRegistry),
//!   at most 10 active per account by default.
//! - [`FailedAuthLimit`] counts failed authentications per client address
//!   and refuses a flooding address (429) before any key lookup.
//!
//! The two layers' services are [`Gate`](tollgate_core::gate::Gate)s over
//! their policies: [`BearerAuth`] over [`Authenticate`], [`RequireScope`]
//! over [`Authorize`].
//!
//! Keys are never stored, logged or printed: only their hashes are kept,
//! and [`ApiKeySecret`] redacts itself in `Debug` and `Display`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bearer;
mod error;
mod failures;
mod key_format;
mod key_info;
mod manager;
pub mod parse;
pub mod rejections;
mod scope;
mod secret;

pub use bearer::{Authenticate, BearerAuth, BearerAuthLayer, DEFAULT_LAST_USE_RESOLUTION};
pub use error::KeyManagerError;
pub use failures::{
    FailedAuthLimit, DEFAULT_FAILED_AUTH_CAPACITY, DEFAULT_FAILED_AUTH_LIMIT, DEFAULT_FAILED_AUTH_WINDOW,
};
pub use key_format::{
    generate_key_id, push_random_base62, try_generate_key_id, KeyFormat, KeyFormatError, CHECKSUM_LEN,
    DISPLAY_RANDOM_LEN, KEY_ID_RANDOM_LEN, MAX_PREFIX_LEN, RANDOM_LEN,
};
pub use key_info::{CreatedKey, KeyInfo, KeyStatus, NewKey, MAX_LABEL_LEN, MAX_NAME_LEN};
pub use manager::{KeyManager, DEFAULT_MAX_ACTIVE_KEYS};
pub use scope::{Authorize, RequireScope, RequireScopeLayer, ScopePredicate};
pub use secret::{hash_key, ApiKeySecret};
