//! Bearer API keys for Tower services, as an API platform hands them out:
//!
//! - [`BearerAuthLayer`] authenticates `Authorization: Bearer <key>` against
//!   a [`KeyStore`](tollgate_core::KeyStore) and puts the key's
//!   [`Principal`](tollgate_core::Principal) in request extensions; it also
//!   applies the key-kind rule (read-only keys may only `GET`/`HEAD`).
//! - [`RequireScopeLayer`] decides, per route, whether that principal may
//!   make the request (403 if not).
//! - [`KeyFormat`] generates keys that secret scanners recognise offline
//!   (`tg_live_` + 30 random base62 characters + a CRC32 checksum) and
//!   [`hash_key`] gives the SHA-256 under which they are stored.
//! - [`KeyManager`] creates, lists, rotates (with a grace period) and
//!   revokes keys, at most 10 active per account by default.
//!
//! Keys are never stored, logged or printed: only their hashes are kept,
//! and [`ApiKeySecret`] redacts itself in `Debug` and `Display`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bearer;
pub mod error;
pub mod key_format;
pub mod key_info;
pub mod manager;
pub mod parse;
pub mod rejections;
pub mod scope;
pub mod secret;

pub use bearer::{BearerAuth, BearerAuthLayer};
pub use error::KeyManagerError;
pub use key_format::{generate_key_id, hash_key, push_random_base62, KeyFormat, KeyFormatError};
pub use key_info::{CreatedKey, KeyInfo, KeyStatus, NewKey};
pub use manager::KeyManager;
pub use scope::{RequireScope, RequireScopeLayer, ScopePredicate};
pub use secret::ApiKeySecret;
