//! Spawning, watching and stopping service processes.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The ports [`free_port`] hands out: below Linux's ephemeral range (32768–60999), which the kernel draws from for
/// every outgoing connection and every `bind(0)`. A port taken from that range can be claimed as the local end of
/// some test's client socket between the probe and the server's bind; one below it can only be taken by another
/// test picking the same port, which the random start makes rare.
const TEST_PORTS: std::ops::Range<u32> = 12_000..32_000;

/// A port that was free a moment ago on 127.0.0.1.
///
/// Another process may take it before it is used; the starters below retry with a new port when that happens.
pub fn free_port() -> u16 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut state = nanos ^ (u64::from(std::process::id()) << 32) ^ CALLS.fetch_add(1, Ordering::Relaxed);
    let span = u64::from(TEST_PORTS.end - TEST_PORTS.start);
    for _ in 0..200 {
        let port = TEST_PORTS.start as u64 + splitmix(&mut state) % span;
        let port = u16::try_from(port).expect("the test port range lies below 65536");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("a bound socket has a local address")
        .port()
}

/// The last `lines` lines of `log`, each run of consecutive lines that differ only in their digits (time stamps,
/// sequence numbers) shown as its last line and how many there were.
pub fn collapsed_tail(log: &str, lines: usize) -> String {
    let shape = |line: &str| line.chars().filter(|c| !c.is_ascii_digit()).collect::<String>();
    let mut runs: Vec<(String, &str, usize)> = Vec::new();
    for line in log.lines() {
        let key = shape(line);
        match runs.last_mut() {
            Some((last, latest, count)) if *last == key => {
                *latest = line;
                *count += 1;
            }
            _ => runs.push((key, line, 1)),
        }
    }
    runs[runs.len().saturating_sub(lines)..]
        .iter()
        .map(|(_, line, count)| match count {
            1 => (*line).to_string(),
            n => format!("{line}  [and {} more like it before]", n - 1),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One step of SplitMix64: a well-spread next value from a counter-like state.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub(crate) fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// Polls `ready` every 50 ms until it holds while the child is alive, the child exits, or `timeout` passes.
pub(crate) fn wait_until(child: &mut Child, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited early with {status}"));
        }
        // Alive before and after: readiness seen in between belongs to this child, not to a server that already
        // held the port when ours failed to bind it.
        if ready() && matches!(child.try_wait(), Ok(None)) {
            return Ok(());
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

/// How a particular server is started and checked; [`Service`] does the rest.
pub(crate) struct Recipe {
    /// Name for messages, e.g. `nats-server`.
    pub name: &'static str,
    /// Builds the command for a port and the service's directory (with its log redirected there).
    pub command: fn(port: u16, dir: &Path) -> Result<Command, String>,
    /// Whether the server on this port, with this directory, is ready for clients. It must check something only
    /// this server can have made (a file or socket in its directory), not just that the port answers.
    pub ready: fn(port: u16, dir: &Path) -> bool,
    /// The signal that stops it at once without a clean shutdown, as a crash would (also used by the watcher).
    pub crash_signal: &'static str,
    /// The signal for a quick clean shutdown on drop.
    pub stop_signal: &'static str,
    /// Its log file, inside the directory.
    pub log_file: &'static str,
    /// Longest wait for readiness.
    pub ready_within: Duration,
}

/// A server process on a free port with its own temporary directory, stopped on drop.
pub(crate) struct Service {
    recipe: Recipe,
    /// The process; `None` while stopped on purpose.
    child: Option<Child>,
    port: u16,
    /// Holds the server's data and log; removed on drop, after the child has stopped.
    dir: tempfile::TempDir,
}

impl Service {
    /// Starts `recipe` in `dir` on a free port, retrying with another port when one was taken between the probe
    /// and the server's bind. Panics when it cannot start: a test cannot go on without it.
    pub fn start(recipe: Recipe, dir: tempfile::TempDir) -> Self {
        let mut service = Self {
            recipe,
            child: None,
            port: 0,
            dir,
        };
        for _ in 0..5 {
            service.port = free_port();
            match service.launch() {
                Ok(()) => return service,
                Err(err)
                    if port_open(service.port) || service.log().to_lowercase().contains("address already in use") =>
                {
                    eprintln!(
                        "{} on port {} failed ({err}); trying another port",
                        service.recipe.name, service.port
                    );
                }
                Err(err) => panic!("{} failed to start: {err}; log: {}", service.recipe.name, service.log()),
            }
        }
        panic!("{}: no free port after 5 tries", service.recipe.name)
    }

    fn launch(&mut self) -> Result<(), String> {
        let mut child = (self.recipe.command)(self.port, self.dir.path())?
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|err| format!("cannot run {}: {err}", self.recipe.name))?;
        watch(child.id(), self.recipe.crash_signal, Some(self.dir.path()));
        let (port, ready, dir) = (self.port, self.recipe.ready, self.dir.path());
        let result = wait_until(&mut child, self.recipe.ready_within, || ready(port, dir));
        if result.is_err() {
            stop(&mut child, self.recipe.crash_signal, Duration::from_secs(2));
        } else {
            self.child = Some(child);
        }
        result
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The running process's id, `None` while it is stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(self.recipe.log_file)).unwrap_or_default()
    }

    /// Stops it the way a crash would. Its data stays for [`Service::restart`].
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, self.recipe.crash_signal, Duration::from_secs(10));
        }
    }

    /// Freezes it (SIGSTOP): its sockets stay open and nothing answers, as with a hung server.
    pub fn pause(&mut self) {
        if let Some(child) = &self.child {
            signal(child.id(), "STOP");
        }
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn resume(&mut self) {
        if let Some(child) = &self.child {
            signal(child.id(), "CONT");
        }
    }

    /// Starts it again on the same port with the same data. Panics if it does not come up.
    pub fn restart(&mut self) {
        self.crash();
        if let Err(err) = self.launch() {
            panic!(
                "{} failed to restart on port {}: {err}; log: {}",
                self.recipe.name,
                self.port,
                self.log()
            );
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // A frozen server would not act on the stop signal.
        self.resume();
        if let Some(mut child) = self.child.take() {
            stop(&mut child, self.recipe.stop_signal, Duration::from_secs(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::collapsed_tail;

    #[test]
    fn a_repeated_warning_is_shown_once_with_its_count() {
        let log = "10:00:01 WARN publish not confirmed seq=1\n\
                   10:00:02 WARN publish not confirmed seq=2\n\
                   10:00:03 WARN publish not confirmed seq=3\n\
                   10:00:04 INFO moved to node n2\n";
        assert_eq!(
            collapsed_tail(log, 30),
            "10:00:03 WARN publish not confirmed seq=3  [and 2 more like it before]\n10:00:04 INFO moved to node n2"
        );
        assert_eq!(collapsed_tail(log, 1), "10:00:04 INFO moved to node n2");
        assert_eq!(collapsed_tail("", 5), "");
    }
}
