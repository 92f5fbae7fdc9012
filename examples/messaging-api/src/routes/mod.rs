//! The API's handlers, one file per resource.

pub mod keys;
pub mod messages;
pub mod security;
pub mod usage;
pub mod webhooks;
