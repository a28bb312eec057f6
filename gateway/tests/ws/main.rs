//! Integration tests of the gateway fleet: real nats-server, real PostgreSQL, the real auth API, and gateway
//! processes, driven by tokio-tungstenite (a WebSocket client this project did not write).

mod abuse;
mod admission;
mod attacks;
mod changes;
mod conversations;
mod delivery;
mod fleet;
mod helpers;
mod lifecycle;
mod metrics;
mod persisted;
mod personal;
mod rfc6455;
