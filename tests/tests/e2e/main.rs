//! End-to-end tests: the layers stacked in real axum routers, served on a
//! real socket and driven over HTTP.

mod support;

mod auth;
mod idempotency;
mod ip;
mod rate_limit;
mod webhook;
