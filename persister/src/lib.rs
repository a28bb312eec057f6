//! Natter's persister: writes the chat stream to PostgreSQL. The stream's subjects carry a partition (16, by
//! room); each persister holds leases on a share of them in a NATS KV bucket ([`leases`], [`ownership`]) and reads
//! each partition it holds through that partition's own durable pull consumer ([`reader`]). Every partition's
//! batches go to the same writers ([`consumer`]): one transaction and one bulk statement per batch, idempotent on
//! the stream epoch and sequence, and each message acked only after the transaction committed. Killing it at any
//! moment loses nothing (unacked messages are redelivered, to whoever holds the partition next) and doubles nothing
//! (a redelivered message hits `ON CONFLICT DO NOTHING`).
//!
//! `main.rs` only reads the configuration and calls [`startup::Application`].

pub mod backlog;
pub mod config;
pub mod consumer;
pub mod health;
pub mod keep_alive;
pub mod leases;
pub mod metrics;
pub mod notice;
pub mod ownership;
pub mod reader;
pub mod source;
pub mod startup;
