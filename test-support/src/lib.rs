//! Real services for Natter's tests: a `nats-server` with JetStream and a throwaway PostgreSQL cluster, each on a
//! free port in its own temporary directory, stopped when the handle is dropped.
//!
//! Nothing here is a mock. Tests that need to break a service on purpose (stop it, kill it, start it again on the
//! same port with the same data) do so through the handle.
//!
//! [`stack`] brings up a whole Natter stack (NATS, PostgreSQL, the auth API, gateways, persisters) as real
//! processes of the workspace's binaries, for tests that kill, stop, freeze or cut them off.
//!
//! A process started here is also watched by a small shell loop that stops it once the test process is gone, so a
//! test that aborts, or a server held in a `static` that is never dropped, leaves nothing running behind.

pub mod metrics_page;
mod nats;
mod postgres;
mod process;
pub mod stack;

pub use nats::{NATS_ADMIN_USER, NatsCluster, NatsServer, nats_credentials, nats_password};
pub use postgres::{PgServer, TestDb};
pub use process::free_port;
