//! Integration tests of the auth API against a real PostgreSQL over real sockets.

mod auth;
mod errors;
mod helpers;
mod history;
mod load_test;
mod operations;
mod read_cursor;
mod revocation;
mod rooms;
mod tokens;
mod web;
