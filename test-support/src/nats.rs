//! A real `nats-server` with JetStream for one test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::process::{free_port, port_open, stop, wait_until, watch};

/// A running `nats-server` with JetStream enabled, storing in its own temporary directory.
///
/// Dropping it stops the server and removes the directory.
pub struct NatsServer {
    /// The server process; `None` while stopped on purpose.
    child: Option<Child>,
    port: u16,
    /// Holds the JetStream store and the log; removed on drop, after the child has stopped.
    dir: TempDir,
}

impl NatsServer {
    /// Starts a server on a free port. Panics if `nats-server` cannot be started: a test cannot go on without it.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("natter-nats-")
            .tempdir()
            .expect("create a temp dir for nats");
        let mut server = Self {
            child: None,
            port: 0,
            dir,
        };
        for _ in 0..5 {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => return server,
                // Someone took the port between our probe and the server's bind: try another.
                Err(err) if port_open(server.port) => {
                    eprintln!(
                        "nats-server on port {} failed ({err}); trying another port",
                        server.port
                    );
                }
                Err(err) => panic!("nats-server failed to start: {err}; log: {}", server.log()),
            }
        }
        panic!("nats-server: no free port after 5 tries")
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut child = Command::new(binary())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.dir.path().join("store"))
            .arg("-l")
            .arg(self.log_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| format!("cannot run {}: {err}", binary().display()))?;
        watch(child.id(), "KILL", Some(self.dir.path()));
        let port = self.port;
        let result = wait_until(&mut child, Duration::from_secs(15), || port_open(port));
        if result.is_err() {
            stop(&mut child, "KILL", Duration::from_secs(1));
        } else {
            self.child = Some(child);
        }
        result
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server abruptly (SIGKILL), as a crash would. JetStream data stays for [`NatsServer::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, "KILL", Duration::from_secs(5));
        }
    }

    /// Starts the server again on the same port with the same store. Panics if it does not come up.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(err) = self.spawn() {
            panic!(
                "nats-server failed to restart on port {}: {err}; log: {}",
                self.port,
                self.log()
            );
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, "TERM", Duration::from_secs(5));
        }
    }
}

/// The `nats-server` binary: `$NATS_SERVER_BIN`, or the one on `PATH`.
fn binary() -> PathBuf {
    std::env::var_os("NATS_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            [
                "/usr/sbin/nats-server",
                "/usr/bin/nats-server",
                "/usr/local/bin/nats-server",
            ]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("nats-server"))
        })
}
