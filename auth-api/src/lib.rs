//! Natter's auth API: accounts and guest logins, Ed25519 access tokens with a JWKS, rotating refresh tokens,
//! and rooms with memberships, over HTTP with axum and PostgreSQL.
//!
//! `main.rs` only parses the configuration and calls [`startup::Application`]; everything else lives here so
//! tests can run the real application on a port of their choosing.

pub mod config;
pub mod error;
pub mod extract;
pub mod fleet;
pub mod keys;
pub mod login_limits;
pub mod metrics;
pub mod password;
pub mod rate_limit;
pub mod refresh_cookie;
pub mod revocation;
pub mod room_events;
pub mod routes;
pub mod sealed_keys;
pub mod startup;
pub mod state;
pub mod trusted_proxy;
