//! Integration tests of the auth API against a real PostgreSQL over real sockets.

mod attacks;
mod auth;
mod budgets;
mod conversations;
mod cookie;
mod errors;
mod helpers;
mod history;
mod load_test;
mod login_limits;
mod members;
mod mentions;
mod moderation;
mod names;
mod operations;
mod read_cursor;
mod revocation;
mod roles;
mod room_events;
mod rooms;
mod search;
mod sessions;
mod tokens;
mod web;
