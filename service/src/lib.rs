//! What every Natter service process does the same way: read its configuration (exit 64 on a bad setting),
//! log to stderr, wait for Ctrl-C or SIGTERM, and serve Prometheus metrics from one process-wide recorder.

pub mod net;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use clap::Parser;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// EX_USAGE from sysexits.h: the configuration is wrong.
pub const EX_USAGE: u8 = 64;

/// Latency buckets (seconds) for every `*_seconds` histogram: 100 µs to 5 s.
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A configuration that can check itself once parsed.
pub trait Validate {
    /// Checks the settings together, before anything is bound or connected: one line saying what is wrong, if
    /// anything.
    fn validate(&self) -> Result<(), String>;
}

/// The flag that makes a service check its configuration (flags and environment) and exit: 0 when it is valid, 64
/// with one line naming the problem when not. Nothing is connected or bound.
pub const CHECK_CONFIG: &str = "--check-config";

/// Parses flags and environment into `C` and validates it. On `--help`/`--version`, a bad setting or
/// [`CHECK_CONFIG`], returns the exit code to end with, having printed the help, one line naming the problem, or
/// that the configuration is valid.
pub fn config<C: Parser + Validate>(program: &str) -> Result<C, ExitCode> {
    let check_only = std::env::args_os().any(|arg| arg == CHECK_CONFIG);
    let parsed = C::try_parse_from(std::env::args_os().filter(|arg| arg != CHECK_CONFIG));
    let config = match parsed {
        Ok(config) => config,
        Err(err) if !err.use_stderr() => {
            let _ = err.print();
            return Err(ExitCode::SUCCESS);
        }
        Err(err) => {
            let text = err.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("{program}: invalid configuration: {first} (see --help)");
            return Err(ExitCode::from(EX_USAGE));
        }
    };
    if let Err(problem) = config.validate() {
        eprintln!("{program}: invalid configuration: {problem}");
        return Err(ExitCode::from(EX_USAGE));
    }
    if check_only {
        eprintln!("{program}: the configuration is valid");
        return Err(ExitCode::SUCCESS);
    }
    Ok(config)
}

/// A future that completes when the service should stop.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A Natter service process: built from its configuration, then run until told to stop.
pub trait Service: Sized {
    /// Its configuration.
    type Config: Parser + Validate;
    /// The program name, for messages.
    const NAME: &'static str;
    /// The log filter when `RUST_LOG` is not set.
    const LOG_FILTER: &'static str;

    /// Connects, migrates, binds: everything before serving.
    fn build(config: Self::Config) -> impl Future<Output = anyhow::Result<Self>> + Send;
    /// The address it serves on.
    fn local_addr(&self) -> SocketAddr;
    /// Serves until `shutdown` completes, then stops gracefully.
    fn run(self, shutdown: Shutdown) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// How many threads its runtime runs tasks on: 1 is a single-threaded runtime, `None` one per core.
    fn runtime_threads(_config: &Self::Config) -> Option<usize> {
        None
    }
}

/// The whole `main` of a service: configuration (exit 64 when bad), the runtime, logging, build, run until
/// Ctrl-C or SIGTERM; exit 0 on a clean stop, 1 on a failure.
pub fn main<S: Service>() -> ExitCode {
    let config = match config::<S::Config>(S::NAME) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let runtime = match S::runtime_threads(&config) {
        Some(1) => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        Some(threads) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    };
    match runtime {
        Ok(runtime) => runtime.block_on(serve::<S>(config)),
        Err(err) => {
            eprintln!("{}: cannot start its runtime: {err}", S::NAME);
            ExitCode::FAILURE
        }
    }
}

async fn serve<S: Service>(config: S::Config) -> ExitCode {
    init_logging(S::LOG_FILTER);
    raise_open_file_limit();
    let service = match S::build(config).await {
        Ok(service) => service,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "failed to start");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(addr = %service.local_addr(), "{} started", S::NAME);
    match service.run(Box::pin(shutdown_signal())).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "stopped with an error");
            ExitCode::FAILURE
        }
    }
}

/// Raises this process's soft limit on open files to its hard limit (a stock machine's soft limit, 1024, would
/// refuse connections long before the machine could serve them) and says at start how many it may hold: every
/// client connection, NATS connection, database connection and listener is one. Returns the limit now in force.
pub fn raise_open_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            tracing::info!(
                open_files = limit,
                "open-file limit set to the hard limit: room for about {} connections",
                limit.saturating_sub(64)
            );
            Some(limit)
        }
        Err(err) => {
            tracing::warn!(error = %err, limit = ?max_open_files(), "cannot raise the open-file limit");
            max_open_files()
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `default_filter`); coloured only when stderr is a terminal, so
/// log files and collectors get plain text.
pub fn init_logging(default_filter: &str) {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Binds the admin listener (`--admin-listen`) when one is configured: `/healthz`, `/readyz` and `/metrics` on a
/// port of their own, so scrapes and health checks work whatever the public port suffers (a flood of connections
/// that never finish their request, say), and the public port serves only clients.
pub async fn bind_admin(addr: Option<SocketAddr>) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    use anyhow::Context;
    match addr {
        None => Ok(None),
        Some(addr) => tokio::net::TcpListener::bind(addr)
            .await
            .map(Some)
            .with_context(|| format!("failed to listen on {addr} (--admin-listen)")),
    }
}

/// Serves `admin` on its own listener until the returned task is aborted (the service does so last, so health and
/// metrics answer throughout a drain); without a listener the admin routes are merged into `public` instead.
pub fn serve_admin(
    public: axum::Router,
    admin: axum::Router,
    listener: Option<tokio::net::TcpListener>,
) -> (axum::Router, Option<tokio::task::JoinHandle<()>>) {
    match listener {
        None => (public.merge(admin), None),
        Some(listener) => {
            let task = tokio::spawn(async move {
                if let Err(err) = axum::serve(listener, admin).await {
                    tracing::error!(error = %err, "the admin listener failed");
                }
            });
            (public, Some(task))
        }
    }
}

/// Whether this process is connected to NATS (gauge, 1 or 0), for every service that uses NATS.
pub const NATS_CONNECTED: &str = "natter_nats_connected";
/// Times this process's NATS connection came back after it was lost.
pub const NATS_RECONNECTS: &str = "natter_nats_reconnects_total";
/// Times this process's NATS connection was lost.
pub const NATS_DISCONNECTS: &str = "natter_nats_disconnects_total";
/// Times this process moved its NATS connection off a cluster node that had lost the JetStream quorum.
pub const NATS_QUORUM_MOVES: &str = "natter_nats_quorum_moves_total";
/// User and system CPU time this process spent, in seconds (a counter read from `/proc` at each scrape).
pub const CPU_SECONDS: &str = "process_cpu_seconds_total";
/// The most files this process may hold open (gauge; the soft `RLIMIT_NOFILE`), beside `process_open_fds`.
pub const MAX_FDS: &str = "process_max_fds";

/// The NATS servers named by `--nats-url` / `NATS_URL`: one `nats://` or `tls://` URL, or several separated by
/// commas (every node of a cluster, so that a service whose node goes reconnects to another at once rather than
/// waiting for it). Errors name the entry at fault, never a password it may hold.
pub fn nats_servers(list: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
    let servers: Vec<async_nats::ServerAddr> = list
        .split(',')
        .map(str::trim)
        .enumerate()
        .map(|(i, url)| {
            if !url.starts_with("nats://") && !url.starts_with("tls://") {
                return Err(format!(
                    "--nats-url / NATS_URL: entry {} must start with nats:// or tls:// (several URLs are separated \
                     by commas)",
                    i + 1
                ));
            }
            url.parse()
                .map_err(|_| format!("--nats-url / NATS_URL: entry {} is not a valid URL", i + 1))
        })
        .collect::<Result<_, _>>()?;
    if servers.is_empty() {
        return Err("--nats-url / NATS_URL names no server".into());
    }
    Ok(servers)
}

/// Who a service is to NATS: the user it connects as and that user's password (deploy/nats/auth.conf gives each
/// service a user of its own, allowed only the subjects its role needs). Flattened into each service's settings.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct NatsAuth {
    /// The NATS user this service connects as (deploy/nats/auth.conf names natter-gateway, natter-auth-api and
    /// natter-persister, each allowed only what its role needs). Unset: no credentials, which a server configured
    /// with users refuses.
    #[arg(long, env = "NATS_USER")]
    pub nats_user: Option<String>,

    /// The NATS user's password. Prefer the environment variable to the flag: a flag is visible to every user of
    /// the machine in the process list.
    #[arg(long, env = "NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,
}

impl NatsAuth {
    /// Both or neither of the user and the password.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.nats_user, &self.nats_password) {
            (Some(user), _) if user.trim().is_empty() => Err("--nats-user / NATS_USER is empty".into()),
            (Some(_), None) => Err("--nats-user / NATS_USER is set without NATS_PASSWORD".into()),
            (None, Some(_)) => Err("NATS_PASSWORD is set without --nats-user / NATS_USER".into()),
            _ => Ok(()),
        }
    }
}

/// The services' roles towards NATS: each subscribes to replies under an inbox prefix of its own
/// ([`NatsRole::inbox_prefix`]), so that NATS can let each see only the answers meant for its role
/// (deploy/nats/auth.conf).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatsRole {
    /// natter-gateway.
    Gateway,
    /// natter-auth-api.
    AuthApi,
    /// natter-persister.
    Persister,
}

impl NatsRole {
    /// The prefix of this role's reply subjects: `_INBOX_gateway`, `_INBOX_auth_api`, `_INBOX_persister`.
    pub fn inbox_prefix(self) -> &'static str {
        match self {
            Self::Gateway => "_INBOX_gateway",
            Self::AuthApi => "_INBOX_auth_api",
            Self::Persister => "_INBOX_persister",
        }
    }
}

/// NATS connection options every service starts from: the client's `name`, its role's inbox prefix and its
/// credentials (`auth`), the connection state and its changes
/// as metrics ([`NATS_CONNECTED`], [`NATS_RECONNECTS`], [`NATS_DISCONNECTS`]), and a lost connection logged as a
/// warning rather than lost among the info lines. Call [`nats_connected`] once the first connect succeeded.
pub fn nats_options(name: impl Into<String>, role: NatsRole, auth: &NatsAuth) -> async_nats::ConnectOptions {
    describe_nats();
    let name = name.into();
    let options = match (&auth.nats_user, &auth.nats_password) {
        (Some(user), Some(password)) => {
            async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
        }
        _ => async_nats::ConnectOptions::new(),
    };
    options
        .name(name)
        .custom_inbox_prefix(role.inbox_prefix())
        // Away from a node this process just left for having lost the quorum, while another is in the pool.
        .reconnect_to_server_callback(|servers, _info| async move {
            let avoided = avoided_nodes();
            if avoided.is_empty() {
                return None;
            }
            let mut others: Vec<_> = servers
                .into_iter()
                .filter(|s| {
                    !avoided.iter().any(|(host, port)| {
                        // A node listening on every interface names none in its INFO: its port alone tells it.
                        let same_host = s.addr.host() == host || host == "0.0.0.0" || host == "::";
                        same_host && s.addr.port() == *port
                    })
                })
                .collect();
            others.sort_by_key(|s| s.failed_attempts);
            others.first().map(|s| async_nats::ReconnectToServer {
                addr: s.addr.clone(),
                delay: Some(std::time::Duration::ZERO),
            })
        })
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => {
                    if NATS_STATE.swap(NATS_UP, Ordering::Relaxed) == NATS_LOST {
                        metrics::counter!(NATS_RECONNECTS).increment(1);
                        nats_reconnects_sender().send_modify(|n| *n += 1);
                    }
                    metrics::gauge!(NATS_CONNECTED).set(1.0);
                    tracing::info!("connected to NATS");
                }
                async_nats::Event::Disconnected => {
                    NATS_STATE.store(NATS_LOST, Ordering::Relaxed);
                    metrics::gauge!(NATS_CONNECTED).set(0.0);
                    metrics::counter!(NATS_DISCONNECTS).increment(1);
                    tracing::warn!("lost the connection to NATS; reconnecting");
                }
                async_nats::Event::SlowConsumer(sid) => {
                    nats_slow_consumers_sender().send_modify(|n| *n += 1);
                    tracing::warn!(sid, "NATS: a subscription fell behind; messages for it were dropped");
                }
                other => tracing::warn!(event = %other, "NATS"),
            }
        })
}

fn nats_reconnects_sender() -> &'static tokio::sync::watch::Sender<u64> {
    static RECONNECTS: std::sync::OnceLock<tokio::sync::watch::Sender<u64>> = std::sync::OnceLock::new();
    RECONNECTS.get_or_init(|| tokio::sync::watch::channel(0).0)
}

fn nats_slow_consumers_sender() -> &'static tokio::sync::watch::Sender<u64> {
    static SLOW: std::sync::OnceLock<tokio::sync::watch::Sender<u64>> = std::sync::OnceLock::new();
    SLOW.get_or_init(|| tokio::sync::watch::channel(0).0)
}

/// Changes each time the NATS client drops messages for one of this process's subscriptions because it fell
/// behind (the value counts the times): what a process that keeps state learnt over core NATS waits on, as for
/// [`nats_reconnects`].
pub fn nats_slow_consumers() -> tokio::sync::watch::Receiver<u64> {
    nats_slow_consumers_sender().subscribe()
}

/// Changes each time this process's NATS connection comes back after it was lost (the value counts the returns):
/// what a process that keeps state learnt over core NATS waits on, to catch up on what it may have missed.
pub fn nats_reconnects() -> tokio::sync::watch::Receiver<u64> {
    nats_reconnects_sender().subscribe()
}

/// Whether NATS answers within `within` and its JetStream is part of a quorum: an account-info request, which a
/// live server answers at once. A connection that looks up can still lead to a server that is frozen or cut off;
/// and a node of a cluster cut off from the other nodes answers, but with an error ("JetStream system temporarily
/// unavailable", once it has seen it lost the quorum), while every publish through it goes unacknowledged. A
/// service whose readiness asks this is taken out of the load balancer's rotation in both cases.
pub async fn nats_answers(nats: &async_nats::Client, within: std::time::Duration) -> bool {
    if !matches!(nats.connection_state(), async_nats::connection::State::Connected) {
        return false;
    }
    match tokio::time::timeout(within, nats.request("$JS.API.INFO", Default::default())).await {
        Ok(Ok(answer)) => jetstream_info_ok(&answer.payload),
        Ok(Err(_)) | Err(_) => false,
    }
}

/// Whether a JetStream account-info answer reports the account rather than an error. Only the presence of the
/// `error` member matters, so the answer is not parsed into a type that would break on a server's new fields.
fn jetstream_info_ok(payload: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(payload)
        .is_ok_and(|v| v.get("error").is_none() && v.get("type").is_some())
}

/// How often [`watch_quorum`] asks, and how many answers in a row saying "JetStream unavailable" make it move.
const QUORUM_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
const QUORUM_STRIKES: u32 = 3;
/// How long a node left for having lost the quorum is passed over by reconnects.
const AVOID_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// The nodes left for having lost the quorum (host, port) and when: while a partition heals or a new meta leader
/// is elected, the node moved to may be without a quorum too, and the one left first must not be the next pick.
static AVOIDED: std::sync::Mutex<Vec<(String, u16, std::time::Instant)>> = std::sync::Mutex::new(Vec::new());

/// The nodes left within [`AVOID_FOR`]; when every node of the pool is among them, reconnects pick as usual.
fn avoided_nodes() -> Vec<(String, u16)> {
    let mut avoided = AVOIDED.lock().unwrap_or_else(|p| p.into_inner());
    avoided.retain(|(_, _, at)| at.elapsed() < AVOID_FOR);
    avoided.iter().map(|(host, port, _)| (host.clone(), *port)).collect()
}

/// Keeps this process's NATS connection on a node that is part of the JetStream quorum. A cluster node cut off
/// from the others still answers its clients, so their connection looks healthy while every publish and every
/// JetStream request through it fails; asked every second, a node that answers "JetStream unavailable" three times
/// in a row is left for another node of the pool (given in `--nats-url` or learnt from the cluster), passed over
/// by reconnects for 30 s (every node left within that time is, unless that is every node). A lone server in that state is reconnected to (there is no other), which costs nothing.
/// Timeouts are left to the client's own pings: a frozen node is dropped by them.
pub fn watch_quorum(nats: async_nats::Client) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut strikes = 0;
        let mut tick = tokio::time::interval(QUORUM_CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !matches!(nats.connection_state(), async_nats::connection::State::Connected) {
                strikes = 0;
                continue;
            }
            let answer = tokio::time::timeout(
                std::time::Duration::from_secs(1),
                nats.request("$JS.API.INFO", Default::default()),
            )
            .await;
            match answer {
                Ok(Ok(answer)) if !jetstream_info_ok(&answer.payload) => strikes += 1,
                Ok(Ok(_)) => strikes = 0,
                _ => {}
            }
            if strikes >= QUORUM_STRIKES {
                strikes = 0;
                let info = nats.server_info();
                tracing::warn!(
                    server = %info.server_name,
                    "this NATS node has lost the JetStream quorum; moving to another node"
                );
                metrics::counter!(NATS_QUORUM_MOVES).increment(1);
                AVOIDED.lock().unwrap_or_else(|p| p.into_inner()).push((
                    info.host.clone(),
                    info.port,
                    std::time::Instant::now(),
                ));
                if let Err(err) = nats.force_reconnect().await {
                    tracing::warn!(error = %err, "could not reconnect to NATS");
                }
            }
        }
    })
}

/// The NATS connection: never up yet, up, or lost (and not back yet).
static NATS_STATE: AtomicU8 = AtomicU8::new(NATS_NEVER);
const NATS_NEVER: u8 = 0;
const NATS_UP: u8 = 1;
const NATS_LOST: u8 = 2;

/// Records that the first connection to NATS is up.
pub fn nats_connected() {
    if NATS_STATE
        .compare_exchange(NATS_NEVER, NATS_UP, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
    {
        metrics::gauge!(NATS_CONNECTED).set(1.0);
    }
}

fn describe_nats() {
    let _ = metrics_handle();
    metrics::describe_gauge!(
        NATS_CONNECTED,
        "Whether this process is connected to NATS (1) or not (0)."
    );
    metrics::describe_counter!(
        NATS_RECONNECTS,
        "Times the NATS connection came back after it was lost."
    );
    metrics::describe_counter!(NATS_DISCONNECTS, "Times the NATS connection was lost.");
    metrics::describe_counter!(
        NATS_QUORUM_MOVES,
        "Times the NATS connection was moved off a cluster node that had lost the JetStream quorum."
    );
    metrics::counter!(NATS_QUORUM_MOVES).absolute(0);
    metrics::gauge!(NATS_CONNECTED).set(0.0);
    metrics::counter!(NATS_RECONNECTS).absolute(0);
    metrics::counter!(NATS_DISCONNECTS).absolute(0);
}

/// The soft limit on open files from `/proc/self/limits` (Linux).
fn max_open_files() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// This process's metrics as Prometheus text, with its resident memory and open files read fresh from `/proc`
/// (`process_resident_memory_bytes`, `process_open_fds`, the names Prometheus client libraries use).
pub fn render_metrics() -> String {
    let handle = metrics_handle();
    if let Some(bytes) = resident_memory_bytes() {
        metrics::gauge!("process_resident_memory_bytes").set(bytes as f64);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        metrics::gauge!("process_open_fds").set(fds.count() as f64);
    }
    if let Some(max) = max_open_files() {
        metrics::gauge!(MAX_FDS).set(max as f64);
    }
    let mut page = handle.render();
    // A counter the process does not count itself: written as the counter it is, from the kernel's figure.
    if let Some(cpu) = cpu_seconds() {
        page.push_str(&format!(
            "# HELP {CPU_SECONDS} User and system CPU time spent, in seconds.\n\
             # TYPE {CPU_SECONDS} counter\n{CPU_SECONDS} {cpu}\n"
        ));
    }
    page
}

/// User plus system CPU time from `/proc/self/stat` (Linux), in seconds.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // Clock ticks are 100 per second on every Linux target this runs on (USER_HZ).
    Some((utime + stime) as f64 / 100.0)
}

/// The `GET /metrics` handler every service mounts: [`render_metrics`] as Prometheus text.
pub async fn metrics_page() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render_metrics(),
    )
}

/// Resident set size from `/proc/self/statm` (Linux), in bytes.
fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // The page size is 4 KiB on every Linux target this runs on (x86-64, aarch64 with 4K pages).
    Some(pages * 4096)
}

/// The process-wide Prometheus recorder, installed on first use. A process has one global recorder, so tests
/// that run several services in one process share it.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
                // The bucket list is a non-empty constant, the only thing this call rejects.
                .expect("bucket list is not empty");
            match builder.install_recorder() {
                Ok(handle) => {
                    // Histograms keep every sample recorded until upkeep drains them into their buckets, and with
                    // `install_recorder` upkeep is ours to run: left to the scrapes, a gateway delivering 50,000
                    // frames a second between two scrapes a minute apart held 12 MB of samples per histogram. Once
                    // a second bounds that to a second's samples.
                    let upkeep = handle.clone();
                    let spawned = std::thread::Builder::new()
                        .name("metrics-upkeep".into())
                        .spawn(move || {
                            loop {
                                std::thread::sleep(std::time::Duration::from_secs(1));
                                upkeep.run_upkeep();
                            }
                        });
                    if let Err(err) = spawned {
                        tracing::warn!(error = %err, "cannot start the metrics upkeep thread; scrapes drain histograms");
                    }
                    handle
                }
                // Another recorder was installed first (not by Natter): serve an empty page rather than fail.
                Err(err) => {
                    tracing::warn!(error = %err, "a metrics recorder was already installed");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jetstream_answer_with_an_error_is_not_ready() {
        assert!(jetstream_info_ok(
            br#"{"type":"io.nats.jetstream.api.v1.account_info_response","memory":0,"streams":1}"#
        ));
        assert!(!jetstream_info_ok(
            br#"{"type":"io.nats.jetstream.api.v1.account_info_response","error":{"code":503,"err_code":10008,"description":"JetStream system temporarily unavailable"}}"#
        ));
        assert!(!jetstream_info_ok(b""));
        assert!(!jetstream_info_ok(b"not json"));
    }

    #[test]
    fn a_comma_separated_list_names_every_nats_node_and_a_bad_entry_is_named() {
        let three = nats_servers("nats://n1:4222, nats://n2:4222,nats://n3:4222").expect("three nodes");
        assert_eq!(three.len(), 3);
        assert_eq!(three[1].host(), "n2");
        assert_eq!(nats_servers("nats://127.0.0.1:4222").expect("one").len(), 1);
        let err = nats_servers("nats://n1:4222,n2:4222").expect_err("a bare host:port");
        assert!(err.contains("entry 2"), "{err}");
        let err = nats_servers("nats://user:secret@n1:notaport").expect_err("a bad port");
        assert!(err.contains("entry 1") && !err.contains("secret"), "{err}");
        assert!(nats_servers("").is_err());
    }

    #[test]
    fn the_metrics_page_carries_the_process_cpu_counter() {
        // Spins until the kernel has counted 0.1 s of this process's CPU time, however busy the machine (a shared
        // core may give it a small share of the wall clock); a counter that never moves fails at the minute.
        let before = cpu_seconds().expect("read /proc/self/stat");
        let started = std::time::Instant::now();
        let mut x = 0u64;
        let mut after = before;
        while after < before + 0.1 {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "a minute of spinning never showed as CPU time: {before} -> {after}"
            );
            for _ in 0..1_000_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            after = cpu_seconds().expect("read /proc/self/stat");
        }
        let page = render_metrics();
        assert!(page.contains("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total "));
    }
}
