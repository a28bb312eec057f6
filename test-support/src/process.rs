//! Spawning, watching and stopping service processes.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port that was free a moment ago on 127.0.0.1.
///
/// Another process may take it before it is used; the starters below retry with a new port when that happens.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("a bound socket has a local address")
        .port()
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub(crate) fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// Polls `ready` every 50 ms until it holds, the child exits, or `timeout` passes.
pub(crate) fn wait_until(child: &mut Child, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited early with {status}"));
        }
        if Instant::now() > deadline {
            return Err(format!("not ready after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `signal` (a name such as `INT`, `QUIT`, `KILL`) to `pid`. Uses kill(1) because this workspace forbids
/// unsafe code.
pub(crate) fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// Stops `child` with `signal`, waiting up to `grace` before killing it outright.
pub(crate) fn stop(child: &mut Child, sig: &str, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    signal(child.id(), sig);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Starts a detached watcher that sends `sig` to `pid` once this test process has exited, and then removes
/// `cleanup` (if given). It ends by itself when `pid` exits first.
pub(crate) fn watch(pid: u32, sig: &str, cleanup: Option<&Path>) {
    let me = std::process::id();
    let rm = cleanup
        .map(|dir| format!("; sleep 1; rm -rf '{}'", dir.display()))
        .unwrap_or_default();
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do kill -0 {pid} 2>/dev/null || exit 0; sleep 1; done; \
         kill -{sig} {pid} 2>/dev/null{rm}"
    );
    let _ = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
