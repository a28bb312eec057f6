//! A real `nats-server` with JetStream for one test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{Recipe, Service, port_open};

/// Ready once the server wrote its ports file into its own directory (it does so after it listens) and the
/// port answers.
fn is_ready(port: u16, dir: &Path) -> bool {
    let wrote_ports = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".ports"))
        })
        .unwrap_or(false);
    wrote_ports && port_open(port)
}

/// A running `nats-server` with JetStream enabled, storing in its own temporary directory.
///
/// Dropping it stops the server and removes the directory.
pub struct NatsServer {
    service: Service,
}

impl NatsServer {
    /// Starts a server on a free port. Panics if `nats-server` cannot be started: a test cannot go on without it.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("natter-nats-")
            .tempdir()
            .expect("create a temp dir for nats");
        let recipe = Recipe {
            name: "nats-server",
            command,
            ready: is_ready,
            crash_signal: "KILL",
            stop_signal: "TERM",
            log_file: "nats.log",
            ready_within: Duration::from_secs(15),
        };
        Self {
            service: Service::start(recipe, dir),
        }
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        self.service.log()
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.service.port())
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.service.port()
    }

    /// Kills the server abruptly (SIGKILL), as a crash would. JetStream data stays for [`NatsServer::restart`].
    pub fn kill(&mut self) {
        self.service.crash();
    }

    /// Freezes the server (SIGSTOP): clients stay connected and get no answers, as with a hung server.
    pub fn pause(&mut self) {
        self.service.pause();
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn resume(&mut self) {
        self.service.resume();
    }

    /// Starts the server again on the same port with the same store. Panics if it does not come up.
    pub fn restart(&mut self) {
        self.service.restart();
    }
}

fn command(port: u16, dir: &Path) -> Result<Command, String> {
    // A ports file left by a killed predecessor would make the new server look ready before it is.
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        if entry.file_name().to_string_lossy().ends_with(".ports") {
            std::fs::remove_file(entry.path()).map_err(|e| format!("cannot remove a stale ports file: {e}"))?;
        }
    }
    let mut cmd = Command::new(binary());
    cmd.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.join("store"))
        .arg("-l")
        .arg(dir.join("nats.log"))
        .arg("--ports_file_dir")
        .arg(dir);
    Ok(cmd)
}

/// The `nats-server` binary: `$NATS_SERVER_BIN`, or the first found in the usual places, or `PATH`.
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
