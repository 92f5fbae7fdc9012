//! The API's handlers, one file per resource.

pub mod audit;
pub mod keys;
pub mod messages;
pub mod security;
pub mod usage;
pub mod webhooks;

/// The value of `name` in a query string (the first, undecoded: the API's
/// parameters are numbers and URL-safe cursors). `Some("")` for `name=`.
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| match pair.split_once('=') {
        Some((key, value)) if key == name => Some(value),
        None if pair == name => Some(""),
        _ => None,
    })
}
