//! One of the workspace's service binaries run as a process of a test: on a port of its own (or one it shares with
//! another gateway), ready when its `/readyz` answers 200, and killed, stopped, frozen or started again on the same
//! port with the same flags when the test says so.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::process::{free_port, port_open, signal, watch};

/// How long a service may take to answer `/readyz` with 200 after it was started.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// What a test asked of a process, so that its exits can be told apart from crashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// Nothing: it should be running.
    Nothing,
    /// SIGKILL, as a crash would.
    Kill,
    /// SIGTERM, a clean stop (a gateway drains).
    Terminate,
}

/// How one run of a process ended.
#[derive(Debug, Clone)]
pub struct Exit {
    /// The exit status.
    pub status: ExitStatus,
    /// Whether the test caused it: a SIGKILL it sent, or a SIGTERM it sent followed by exit code 0. Anything else is
    /// the process failing by itself.
    pub expected: bool,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.status.code(), self.status.signal()) {
            (Some(code), _) => write!(f, "exit {code}")?,
            (None, Some(sig)) => write!(f, "signal {sig}")?,
            _ => write!(f, "{}", self.status)?,
        }
        if !self.expected {
            write!(f, " (not caused by the test)")?;
        }
        Ok(())
    }
}

struct State {
    /// The running process, `None` between runs.
    child: Option<Child>,
    /// What the test last asked of the current run.
    asked: Asked,
    /// Whether the process should be running: false after [`Program::terminate`] or [`Program::stop`], so a
    /// supervisor leaves it stopped; a killed process is still wanted (it crashed, as far as anyone knows).
    wanted: bool,
    /// A start is in progress (by the test or a supervisor); nobody else starts it meanwhile.
    starting: bool,
    /// How each earlier run ended.
    exits: Vec<Exit>,
    /// Runs started.
    starts: u32,
}

/// A service process (`natter-gateway`, `natter-persister`, `natter-auth-api`) that a test controls. It is killed
/// when dropped, and by a watcher if the test process dies first.
pub struct Program {
    /// Its name in messages and in its log's file name, e.g. `gateway-2`.
    name: String,
    binary: PathBuf,
    /// Every flag but `--listen` and `--admin-listen`.
    args: Vec<String>,
    /// Its public port (for a persister, which has none, its admin port).
    port: u16,
    /// Its admin port: `/healthz`, `/readyz`, `/metrics` (`--admin-listen`).
    admin_port: u16,
    /// Whether it has a public port besides the admin one (gateways and the auth API).
    public: bool,
    log: PathBuf,
    state: Mutex<State>,
    http: reqwest::Client,
}

impl Program {
    /// Starts `binary` with `args` plus `--admin-listen 127.0.0.1:ADMIN` on a free port and, when `public`,
    /// `--listen 127.0.0.1:PORT` on another, logging to `NAME.log` in `dir`, and waits until its `/readyz` answers
    /// 200. Tries other ports when one chosen was taken meanwhile; panics when the service does not come up, with
    /// its log.
    pub(crate) async fn start(name: String, binary: PathBuf, args: Vec<String>, public: bool, dir: &Path) -> Self {
        for _ in 0..5 {
            let admin_port = free_port();
            let port = if public { free_port() } else { admin_port };
            let program = Self::new(
                name.clone(),
                binary.clone(),
                args.clone(),
                (port, admin_port, public),
                dir,
            );
            match program.launch().await {
                Ok(()) => return program,
                Err(err)
                    if !program.is_running()
                        && (program.log().to_lowercase().contains("address already in use")
                            || port_open(program.port)
                            || port_open(program.admin_port)) =>
                {
                    eprintln!("{name} on port {} failed ({err}); trying other ports", program.port);
                }
                Err(err) => panic!("{name} failed to start: {err}; log:\n{}", program.log()),
            }
        }
        panic!("{name}: no free port after 5 tries")
    }

    /// Starts a gateway on `port`, which another gateway may hold too (SO_REUSEPORT), with an admin port of its
    /// own (so its readiness is its own).
    pub(crate) async fn start_on(name: String, binary: PathBuf, args: Vec<String>, port: u16, dir: &Path) -> Self {
        let program = Self::new(name, binary, args, (port, free_port(), true), dir);
        if let Err(err) = program.launch().await {
            panic!(
                "{} failed to start on port {port}: {err}; log:\n{}",
                program.name,
                program.log()
            );
        }
        program
    }

    /// `ports`: the public port, the admin port, and whether there is a public port.
    fn new(name: String, binary: PathBuf, args: Vec<String>, ports: (u16, u16, bool), dir: &Path) -> Self {
        let (port, admin_port, public) = ports;
        Self {
            log: dir.join(format!("{name}.log")),
            name,
            binary,
            args,
            port,
            admin_port,
            public,
            state: Mutex::new(State {
                child: None,
                asked: Asked::Nothing,
                wanted: true,
                starting: false,
                exits: Vec::new(),
                starts: 0,
            }),
            // Short timeouts: a frozen or cut-off service must not hold a probe for long.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .expect("an HTTP client with a timeout builds"),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held leaves nothing half-done here: the state is plain data.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Spawns a new run and waits for readiness; on failure the run is killed.
    async fn launch(&self) -> Result<(), String> {
        {
            let mut state = self.state();
            if state.starting {
                return Err("already being started".into());
            }
            reap(&mut state);
            if state.child.is_some() {
                return Err("already running".into());
            }
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .map_err(|e| format!("cannot open its log {}: {e}", self.log.display()))?;
            let err_log = log.try_clone().map_err(|e| format!("cannot share its log: {e}"))?;
            let mut command = Command::new(&self.binary);
            if self.public {
                command.arg("--listen").arg(format!("127.0.0.1:{}", self.port));
            }
            let child = command
                .arg("--admin-listen")
                .arg(format!("127.0.0.1:{}", self.admin_port))
                .args(&self.args)
                .env(
                    "RUST_LOG",
                    std::env::var("NATTER_TEST_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err_log)
                .spawn()
                .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
            watch(child.id(), "KILL", None);
            state.child = Some(child);
            state.asked = Asked::Nothing;
            state.wanted = true;
            state.starting = true;
            state.starts += 1;
        }
        let result = self.wait_ready().await;
        let mut state = self.state();
        state.starting = false;
        if result.is_err()
            && let Some(mut child) = state.child.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        result
    }

    async fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = self.exited() {
                return Err(format!("exited early with {status}"));
            }
            // Alive before and after the answer, so the answer is not from a server that held the port when this
            // one failed to bind it.
            if self.readyz().await == Some(200) && self.exited().is_none() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("not ready after {READY_WITHIN:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The status of the current run if it has ended (recording the exit), else `None`.
    fn exited(&self) -> Option<ExitStatus> {
        let mut state = self.state();
        let status = state.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
        if status.is_some() {
            reap(&mut state);
        }
        status
    }

    /// Its name, e.g. `gateway-2`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT{path}`: its public port.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Its admin port: `/healthz`, `/readyz`, `/metrics` are served there only.
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// `http://127.0.0.1:ADMIN{path}`: its admin port.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// For a gateway: `ws://127.0.0.1:PORT/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    /// The process id of the current run.
    pub fn pid(&self) -> Option<u32> {
        let mut state = self.state();
        reap(&mut state);
        state.child.as_ref().map(Child::id)
    }

    /// Whether a run is alive now.
    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// Whether it should be running: not stopped on purpose (a killed process still is, as a crashed one would be).
    pub fn is_wanted(&self) -> bool {
        self.state().wanted
    }

    /// Whether a start is in progress.
    pub(crate) fn is_starting(&self) -> bool {
        self.state().starting
    }

    /// Runs started so far (the first start included).
    pub fn starts(&self) -> u32 {
        self.state().starts
    }

    /// How every ended run ended.
    pub fn exits(&self) -> Vec<Exit> {
        let mut state = self.state();
        reap(&mut state);
        state.exits.clone()
    }

    /// SIGKILL, as a crash: the process dies at once without a word, and is reaped. It is still wanted, so a
    /// supervisor starts it again.
    pub fn kill(&self) {
        let mut state = self.state();
        if let Some(child) = state.child.as_mut() {
            // A frozen process dies of SIGKILL too.
            let _ = child.kill();
            let _ = child.wait();
            state.asked = Asked::Kill;
        }
        reap(&mut state);
    }

    /// SIGTERM: a clean stop (a gateway drains, a persister finishes its batch). Not wanted any more, so a
    /// supervisor leaves it; [`Program::wait_exit`] waits for it.
    pub fn terminate(&self) {
        let mut state = self.state();
        state.wanted = false;
        if let Some(child) = state.child.as_ref() {
            signal(child.id(), "CONT");
            signal(child.id(), "TERM");
            state.asked = Asked::Terminate;
        }
    }

    /// Waits up to `within` for the current run to end; its exit, if it did.
    pub async fn wait_exit(&self, within: Duration) -> Option<Exit> {
        let deadline = Instant::now() + within;
        loop {
            if self.exited().is_some() || !self.is_running() {
                return self.exits().last().cloned();
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then SIGKILL if it has not ended within `grace`.
    pub async fn stop(&self, grace: Duration) -> Option<Exit> {
        self.terminate();
        if self.wait_exit(grace).await.is_none() {
            self.kill();
        }
        self.exits().last().cloned()
    }

    /// SIGSTOP: the process freezes with its sockets open, as a hung one would.
    pub fn pause(&self) {
        if let Some(pid) = self.pid() {
            signal(pid, "STOP");
        }
    }

    /// SIGCONT: a frozen process goes on.
    pub fn resume(&self) {
        if let Some(pid) = self.pid() {
            signal(pid, "CONT");
        }
    }

    /// Starts it again on the same port with the same flags (killing the current run, if any) and waits until it is
    /// ready. Panics if it does not come up.
    pub async fn restart(&self) {
        self.kill();
        if let Err(err) = self.launch().await {
            panic!(
                "{} failed to restart on port {}: {err}; log:\n{}",
                self.name,
                self.port,
                self.log()
            );
        }
    }

    /// Starts it again if it is wanted, not running and nobody is starting it already (what a supervisor does).
    /// Whether it started it.
    pub(crate) async fn revive(&self) -> Result<bool, String> {
        {
            let mut state = self.state();
            reap(&mut state);
            if !state.wanted || state.starting || state.child.is_some() {
                return Ok(false);
            }
        }
        self.launch().await.map(|()| true)
    }

    /// The HTTP status of its `/readyz`, or `None` when it does not answer (in time).
    pub async fn readyz(&self) -> Option<u16> {
        self.http
            .get(self.admin_url("/readyz"))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// Its `/metrics` page, or `None` when it does not answer.
    pub async fn metrics(&self) -> Option<String> {
        let response = self.http.get(self.admin_url("/metrics")).send().await.ok()?;
        response.text().await.ok()
    }

    /// Its log so far (every run), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Records the current run's exit if it has ended.
fn reap(state: &mut State) {
    let Some(child) = state.child.as_mut() else { return };
    let Ok(Some(status)) = child.try_wait() else { return };
    let expected = match state.asked {
        Asked::Kill => status.signal() == Some(9),
        Asked::Terminate => status.success(),
        Asked::Nothing => false,
    };
    state.exits.push(Exit { status, expected });
    state.child = None;
}

impl Drop for Program {
    fn drop(&mut self) {
        self.kill();
    }
}
