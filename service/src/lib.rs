//! What every Natter service process does the same way: read its configuration (exit 64 on a bad setting),
//! log to stderr, wait for Ctrl-C or SIGTERM, and serve Prometheus metrics from one process-wide recorder.

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

/// Whether this process is connected to NATS (gauge, 1 or 0), for every service that uses NATS.
pub const NATS_CONNECTED: &str = "natter_nats_connected";
/// Times this process's NATS connection came back after it was lost.
pub const NATS_RECONNECTS: &str = "natter_nats_reconnects_total";
/// Times this process's NATS connection was lost.
pub const NATS_DISCONNECTS: &str = "natter_nats_disconnects_total";
/// User and system CPU time this process spent, in seconds (a counter read from `/proc` at each scrape).
pub const CPU_SECONDS: &str = "process_cpu_seconds_total";
/// The most files this process may hold open (gauge; the soft `RLIMIT_NOFILE`), beside `process_open_fds`.
pub const MAX_FDS: &str = "process_max_fds";

/// NATS connection options every service starts from: the client's `name`, the connection state and its changes
/// as metrics ([`NATS_CONNECTED`], [`NATS_RECONNECTS`], [`NATS_DISCONNECTS`]), and a lost connection logged as a
/// warning rather than lost among the info lines. Call [`nats_connected`] once the first connect succeeded.
pub fn nats_options(name: impl Into<String>) -> async_nats::ConnectOptions {
    describe_nats();
    let name = name.into();
    async_nats::ConnectOptions::new()
        .name(name)
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
                async_nats::Event::SlowConsumer(sid) => tracing::warn!(sid, "NATS: a subscription fell behind"),
                other => tracing::warn!(event = %other, "NATS"),
            }
        })
}

fn nats_reconnects_sender() -> &'static tokio::sync::watch::Sender<u64> {
    static RECONNECTS: std::sync::OnceLock<tokio::sync::watch::Sender<u64>> = std::sync::OnceLock::new();
    RECONNECTS.get_or_init(|| tokio::sync::watch::channel(0).0)
}

/// Changes each time this process's NATS connection comes back after it was lost (the value counts the returns):
/// what a process that keeps state learnt over core NATS waits on, to catch up on what it may have missed.
pub fn nats_reconnects() -> tokio::sync::watch::Receiver<u64> {
    nats_reconnects_sender().subscribe()
}

/// Whether the NATS server answers within `within`: a request nobody serves, which a live server answers at once
/// with "no responders". A connection that looks up can still lead to a server that is frozen or cut off; this
/// is what readiness asks.
pub async fn nats_answers(nats: &async_nats::Client, within: std::time::Duration) -> bool {
    if !matches!(nats.connection_state(), async_nats::connection::State::Connected) {
        return false;
    }
    use async_nats::client::RequestErrorKind;
    match tokio::time::timeout(within, nats.request("_NATTER.ROUND_TRIP", Default::default())).await {
        Ok(Ok(_)) => true,
        Ok(Err(err)) => err.kind() == RequestErrorKind::NoResponders,
        Err(_) => false,
    }
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
                Ok(handle) => handle,
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
    fn the_metrics_page_carries_the_process_cpu_counter() {
        let before = cpu_seconds().expect("read /proc/self/stat");
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = cpu_seconds().expect("read /proc/self/stat");
        assert!(
            after >= before + 0.1,
            "300 ms of spinning shows as CPU time: {before} -> {after}"
        );
        let page = render_metrics();
        assert!(page.contains("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total "));
    }
}
