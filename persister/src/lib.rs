//! Natter's persister: a durable pull consumer on the chat stream that writes every message to PostgreSQL in
//! batches, one transaction and one bulk statement per batch, idempotent on the stream epoch and sequence, and acks each
//! message only after the transaction committed. Killing it at any moment loses nothing (unacked messages are
//! redelivered) and doubles nothing (a redelivered message hits `ON CONFLICT DO NOTHING`).
//!
//! `main.rs` only reads the configuration and calls [`startup::Application`].

pub mod config;
pub mod consumer;
pub mod health;
pub mod keep_alive;
pub mod metrics;
pub mod source;
pub mod startup;
pub mod store;
