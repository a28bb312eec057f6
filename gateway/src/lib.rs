//! Natter's WebSocket gateway: browsers hold one WebSocket each; any gateway of the fleet serves any room; NATS
//! carries messages between gateways; JetStream stores and orders chat messages.
//!
//! `main.rs` only parses the configuration and calls [`startup::Application`].

pub mod access;
pub mod auth;
pub mod census;
pub mod config;
pub mod connection;
pub mod epoch;
pub mod fleet;
pub mod frame;
pub mod hub;
pub mod lifecycle;
pub mod limit;
pub mod load;
pub mod metrics;
pub mod outbox;
pub mod peer;
pub mod pending;
pub mod persisted;
pub mod proxy_protocol;
pub mod replays;
pub mod room;
pub mod session;
pub mod socket;
pub mod startup;
pub mod state;
pub mod sweep;
pub mod upgrade;
