//! What crosses Natter's process boundaries: validated ids, NATS subject builders, wire frames and JWT claims.
//!
//! This crate does no I/O. Every service depends on it, so a frame, a subject or a token claim has exactly one
//! definition in the whole system.

pub mod bus;
pub mod close;
pub mod duration;
pub mod error;
pub mod frame;
pub mod id;
pub mod size;
pub mod subject;
pub mod text;
pub mod token;

pub use id::{ClientMsgId, IdError, RoomId, RoomName, Username};
