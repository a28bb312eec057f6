//! The flags of `natter-loadtest run`, grouped as `--help` shows them, and the settings they come to once the
//! scenario's defaults are applied and checked.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Serialize;

use super::layout::room_sizes;
use super::workers::{clients_per_worker, open_file_limit};

/// What a run exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Users spread over rooms, senders in each room at a steady rate: delivery, latency and fan-out rate.
    Fanout,
    /// Connect every user as fast as the fleet accepts them; nothing is sent.
    ConnectStorm,
    /// Fan-out while a share of clients drop mid-run and rejoin from their last seq: recovery must be complete.
    Reconnect,
    /// Fan-out for a long time, scraping gateway memory as it goes, to watch memory and latency drift.
    Soak,
    /// Fan-out steps at a rising rate (`--rate`, then times `--step-factor`) until a step breaks the SLOs
    /// (`--max-p99-ms`, default 250; `--max-loss`, default 0): the highest rate that held, with deliveries per
    /// gateway CPU second and memory per connection; `--overload` then runs one step at twice that rate.
    Saturate,
    /// Fan-out steps on one worker process at a rising user count (`--users`, then times `--step-factor`; rooms
    /// the size `--users`/`--rooms` gives) until a step breaks the SLOs (as saturate) or the worker uses 0.9 of a
    /// core: the most users one worker holds at `--rate`, and the harness's CPU per user.
    Capacity,
}

/// How users are spread over rooms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum RoomSizes {
    /// Every room the same size.
    Uniform,
    /// Room i weighs 1/(i+1)^s: a few big rooms and a long tail.
    Zipf(f64),
}

fn parse_room_sizes(text: &str) -> Result<RoomSizes, String> {
    match text.split_once(':') {
        None if text == "uniform" => Ok(RoomSizes::Uniform),
        None if text == "zipf" => Ok(RoomSizes::Zipf(1.0)),
        Some(("zipf", s)) => match s.parse::<f64>() {
            Ok(s) if s > 0.0 && s <= 4.0 => Ok(RoomSizes::Zipf(s)),
            _ => Err(format!("zipf exponent '{s}' must be a number in (0, 4]")),
        },
        _ => Err(format!("'{text}' is not uniform, zipf or zipf:S")),
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    natter_proto::duration::parse(text)
}

fn parse_addr_range(text: &str) -> Result<Vec<IpAddr>, String> {
    if text.is_empty() || text == "none" {
        return Ok(Vec::new());
    }
    let mut addrs = Vec::new();
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let a: Ipv4Addr = a.trim().parse().map_err(|_| format!("'{a}' is not an IPv4 address"))?;
                let b: Ipv4Addr = b.trim().parse().map_err(|_| format!("'{b}' is not an IPv4 address"))?;
                let (a, b) = (u32::from(a), u32::from(b));
                if b < a || b - a > 1024 {
                    return Err(format!("'{part}' is not a range of at most 1024 addresses"));
                }
                addrs.extend((a..=b).map(|n| IpAddr::V4(Ipv4Addr::from(n))));
            }
            None => addrs.push(
                part.trim()
                    .parse()
                    .map_err(|_| format!("'{part}' is not an IP address"))?,
            ),
        }
    }
    Ok(addrs)
}

/// Flags of `natter-loadtest run`, one group per heading of `--help`. The report's `settings` holds them flat, as
/// one object.
#[derive(Debug, Clone, Args, Serialize)]
pub struct RunArgs {
    /// Where the fleet is and how the harness reaches it.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
    /// Users, rooms and the messages they send.
    #[command(flatten)]
    #[serde(flatten)]
    pub load: LoadArgs,
    /// Faults the run injects.
    #[command(flatten)]
    #[serde(flatten)]
    pub faults: FaultArgs,
    /// The steps of saturate and capacity.
    #[command(flatten)]
    #[serde(flatten)]
    pub steps: StepArgs,
    /// History reads and checks.
    #[command(flatten)]
    #[serde(flatten)]
    pub history: HistoryArgs,
    /// The bounds that decide the exit status.
    #[command(flatten)]
    #[serde(flatten)]
    pub slo: SloArgs,
    /// What the run measures and writes.
    #[command(flatten)]
    #[serde(flatten)]
    pub output: OutputArgs,
}

/// The scenario, the fleet and the harness's own processes.
#[derive(Debug, Clone, Args, Serialize)]
pub struct CommonArgs {
    /// What to exercise; it sets the defaults of the flags below.
    #[arg(long, value_enum, default_value = "fanout")]
    pub scenario: Scenario,

    /// The auth API (tokens, rooms, history).
    #[arg(long, env = "NATTER_API_URL", default_value = "http://127.0.0.1:8080")]
    pub api: String,

    /// The auth API's load-test key (its `--load-test-key`), for bulk guest tokens.
    #[arg(long, env = "NATTER_LOAD_TEST_KEY", hide_env_values = true)]
    #[serde(skip)]
    pub load_test_key: Option<String>,

    /// A gateway WebSocket URL (repeat for several, or comma-separate); users are spread over all of them. Without
    /// one, the auth API assigns one (`GET /api/gateway`).
    #[arg(long = "gateway", value_delimiter = ',')]
    pub gateways: Vec<String>,

    /// A gateway's Prometheus page to scrape for memory and delivery figures (repeat or comma-separate).
    #[arg(long = "metrics", value_delimiter = ',')]
    pub metrics: Vec<String>,

    /// Worker processes. Default: enough for at most 18,000 clients each.
    #[arg(long)]
    pub workers: Option<usize>,

    /// Source addresses for client sockets, e.g. `127.0.0.2-127.0.0.9` (one address reaches one gateway port about
    /// 28,000 times). Default that range when every gateway is on loopback, else none (the system chooses).
    #[arg(long, value_parser = parse_addr_range)]
    pub source_addrs: Option<Vec<IpAddr>>,

    /// Connection attempts in flight at once per worker.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,

    /// A connection attempt (TCP, upgrade, hello, join) that takes longer fails.
    #[arg(long, value_parser = parse_duration, default_value = "15s")]
    #[serde(with = "secs")]
    pub connect_timeout: Duration,

    /// How long after the send phase receivers may take to get every acknowledged message.
    #[arg(long, value_parser = parse_duration, default_value = "15s")]
    #[serde(with = "secs")]
    pub drain_timeout: Duration,
}

/// The load's shape: users, rooms, senders and what they send.
#[derive(Debug, Clone, Args, Serialize)]
#[command(next_help_heading = "Load shape (fan-out and every scenario that sends)")]
pub struct LoadArgs {
    /// Simulated users, one connection each (capacity: the first step's).
    #[arg(long, default_value_t = 1000)]
    pub users: usize,

    /// Rooms the users are spread over (capacity: the first step's, which sets every step's room size).
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,

    /// How users are spread over rooms: `uniform`, `zipf` or `zipf:S`.
    #[arg(long, value_parser = parse_room_sizes, default_value = "uniform")]
    pub room_sizes: RoomSizes,

    /// Senders per room (every user receives). Default 1; 0 for connect-storm.
    #[arg(long)]
    pub senders: Option<usize>,

    /// Messages per second per sender.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,

    /// Message body size in bytes, 20 (the body carries its due time) to 4000 (the gateway's default cap).
    #[arg(long, default_value_t = 100)]
    pub size: usize,

    /// The share of sends, in percent, that are changes to the sender's earlier messages rather than new ones:
    /// in turn a reaction, a reply, an edit, the reaction taken back, a deletion (0: messages only). Each is acked
    /// and delivered like a message and counted the same way; `--verify-history` also checks that history holds
    /// each message as the changes left it.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub changes: u8,

    /// Time over which connections are opened (0: as fast as --connect-concurrency allows). Default 10s; 0 for
    /// connect-storm.
    #[arg(long, value_parser = parse_duration)]
    #[serde(with = "secs_opt")]
    pub ramp_up: Option<Duration>,

    /// Length of the send phase. Default 30s; 10m for soak; 0 for connect-storm.
    #[arg(long, value_parser = parse_duration)]
    #[serde(with = "secs_opt")]
    pub duration: Option<Duration>,

    /// Most messages sent in the whole run, split over the senders.
    #[arg(long)]
    pub messages: Option<u64>,
}

/// Faults injected while sending: clients that drop, readers that stall, a gateway drained.
#[derive(Debug, Clone, Args, Serialize)]
#[command(next_help_heading = "Faults (reconnect, slow readers, drain)")]
pub struct FaultArgs {
    /// Share of clients that drop mid-run and rejoin from their last seq. Default 0.25 for reconnect, else 0.
    #[arg(long)]
    pub reconnect_share: Option<f64>,

    /// How long dropped clients stay away.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    #[serde(with = "secs")]
    pub reconnect_after: Duration,

    /// Receivers (one per room first) that stop reading a quarter into the send phase, with a small socket
    /// receive buffer: the gateway should close them as slow consumers (4008); they rejoin from their last seq.
    #[arg(long, default_value_t = 0)]
    pub slow_readers: usize,

    /// How long slow readers stop reading.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    #[serde(with = "secs")]
    pub slow_for: Duration,

    /// A local gateway process to drain (SIGTERM) in the middle of the send phase; its clients must rejoin
    /// elsewhere with nothing lost.
    #[arg(long)]
    pub drain_gateway_pid: Option<u32>,
}

/// The steps of the scenarios that search for a limit.
#[derive(Debug, Clone, Args, Serialize)]
#[command(next_help_heading = "Steps (saturate, capacity)")]
pub struct StepArgs {
    /// Saturate and capacity: each step's rate (saturate) or users (capacity) is the last one's times this.
    #[arg(long, default_value_t = 1.25)]
    pub step_factor: f64,

    /// Saturate and capacity: most steps before giving up on finding the limit.
    #[arg(long, default_value_t = 10)]
    pub max_steps: usize,

    /// Saturate: after the search, one step at twice the highest rate that held, to show how overload is shed.
    #[arg(long)]
    pub overload: bool,
}

/// History read while sending, and checked after.
#[derive(Debug, Clone, Args, Serialize)]
#[command(next_help_heading = "History")]
pub struct HistoryArgs {
    /// History readers during the send phase: each reads the newest page of 50 of one room after another (as a
    /// client opening a room does), one page every 100 ms, timed from when each read was due.
    #[arg(long, default_value_t = 0)]
    pub history_readers: usize,

    /// After the run, check through the history API that every acknowledged message was stored exactly once, and
    /// that every receiver's view of its room (edits, deletions, reactions, replies as they arrived) is the
    /// history's.
    #[arg(long)]
    pub verify_history: bool,

    /// How long --verify-history waits for the persister to catch up.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    #[serde(with = "secs")]
    pub history_timeout: Duration,
}

/// Service-level objectives: a run that misses one exits 1.
#[derive(Debug, Clone, Args, Serialize)]
#[command(next_help_heading = "SLOs (exit status 1 when one is missed)")]
pub struct SloArgs {
    /// SLO: fail if the end-to-end p99 latency is above this many milliseconds.
    #[arg(long)]
    pub max_p99_ms: Option<f64>,

    /// SLO: fail if more than this many expected deliveries were lost (duplicates, reordering, unrecovered
    /// rejoins and sends never acknowledged count too).
    #[arg(long)]
    pub max_loss: Option<u64>,

    /// SLO: fail if fewer than this share of users (0 to 1) connected.
    #[arg(long)]
    pub min_connected: Option<f64>,

    /// SLO: fail if the --history-readers' page p99 is above this many milliseconds.
    #[arg(long)]
    pub max_history_p99_ms: Option<f64>,
}

/// What the run measures besides the clients' own figures, and where it writes them.
#[derive(Debug, Clone, Args, Serialize)]
#[command(next_help_heading = "Measurement and output")]
pub struct OutputArgs {
    /// A local process whose CPU time (from /proc) the report divides by the connections and deliveries, as
    /// ROLE=PID (`nats=1234`); repeat it, and several processes of one role are summed.
    #[arg(long = "watch-cpu", value_parser = crate::cpu::parse_watched)]
    #[serde(skip)]
    pub watch_cpu: Vec<crate::cpu::Watched>,

    /// Scrape the --metrics pages this often during the send phase (soak default 10s; else only before, when
    /// connected and at the end).
    #[arg(long, value_parser = parse_duration)]
    #[serde(with = "secs_opt")]
    pub scrape_every: Option<Duration>,

    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,

    /// Write latency plots (SVG) into this directory.
    #[arg(long)]
    pub plot: Option<std::path::PathBuf>,

    /// No live progress view, even on a terminal.
    #[arg(long)]
    pub quiet: bool,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

mod secs_opt {
    pub fn serialize<S: serde::Serializer>(d: &Option<std::time::Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}

/// The settings once the scenario's defaults are applied and checked.
pub(crate) struct Settings {
    /// Senders per room.
    pub(crate) senders: usize,
    /// Time over which connections are opened.
    pub(crate) ramp_up: Duration,
    /// Length of the send phase.
    pub(crate) duration: Duration,
    /// Worker processes.
    pub(crate) workers: usize,
    /// Source addresses for client sockets.
    pub(crate) source_addrs: Vec<IpAddr>,
    /// Share of clients that drop mid-run.
    pub(crate) reconnect_share: f64,
    /// How often the metrics pages are scraped while sending.
    pub(crate) scrape_every: Option<Duration>,
}

impl RunArgs {
    /// Applies the scenario's defaults and checks the flags against each other and their bounds.
    pub(crate) fn settle(&mut self) -> Result<Settings, String> {
        let (common, load, faults) = (&self.common, &self.load, &self.faults);
        let scenario = common.scenario;
        let storm = scenario == Scenario::ConnectStorm;
        let senders = load.senders.unwrap_or(if storm { 0 } else { 1 });
        let ramp_up = load
            .ramp_up
            .unwrap_or(if storm { Duration::ZERO } else { Duration::from_secs(10) });
        let duration = load.duration.unwrap_or(match scenario {
            Scenario::ConnectStorm => Duration::ZERO,
            Scenario::Soak => Duration::from_secs(600),
            Scenario::Saturate => Duration::from_secs(20),
            _ => Duration::from_secs(30),
        });
        let reconnect_share =
            faults
                .reconnect_share
                .unwrap_or(if scenario == Scenario::Reconnect { 0.25 } else { 0.0 });
        let scrape_every = self
            .output
            .scrape_every
            .or((scenario == Scenario::Soak).then(|| Duration::from_secs(10)));
        if load.users == 0 || load.rooms == 0 || load.rooms > load.users {
            return Err("--users and --rooms must be at least 1, with no more rooms than users".into());
        }
        if load.users > 1_000_000 {
            return Err("--users is capped at 1,000,000".into());
        }
        if !(load.rate > 0.0 && load.rate <= 1000.0) {
            return Err("--rate must be above 0 and at most 1000 messages per second".into());
        }
        if load.size < 20 || load.size > 4000 {
            return Err("--size must be 20 to 4000 bytes (the gateway's default --max-body-chars)".into());
        }
        if duration > Duration::from_secs(24 * 3600) || ramp_up > Duration::from_secs(3600) {
            return Err("--duration is capped at 24h and --ramp-up at 1h".into());
        }
        let receivers: usize = room_sizes(load.users, load.rooms, load.room_sizes)
            .iter()
            .map(|size| size.saturating_sub(senders))
            .sum();
        if faults.slow_readers > receivers {
            return Err(format!(
                "--slow-readers {} is more than the {receivers} users who only receive",
                faults.slow_readers
            ));
        }
        if faults.slow_readers > 0 && faults.slow_for >= duration.mul_f64(0.75) {
            return Err(
                "--slow-for must be shorter than the last three quarters of --duration (slow readers stop \
                        reading a quarter in, and must read again before the send phase ends)"
                    .into(),
            );
        }
        if !(0.0..=1.0).contains(&reconnect_share) {
            return Err("--reconnect-share must be between 0 and 1".into());
        }
        if self.slo.min_connected.is_some_and(|m| !(0.0..=1.0).contains(&m)) {
            return Err("--min-connected is a share between 0 and 1".into());
        }
        if common.connect_concurrency == 0 {
            return Err("--connect-concurrency must be at least 1".into());
        }
        for url in &common.gateways {
            if !url.starts_with("ws://") {
                return Err(format!("--gateway '{url}' must be a ws:// URL"));
            }
        }
        let per_worker = clients_per_worker();
        let workers = common.workers.unwrap_or_else(|| load.users.div_ceil(per_worker));
        if workers == 0 || workers > 64 || load.users.div_ceil(workers) > per_worker {
            return Err(format!(
                "--workers must be 1 to 64, with at most {per_worker} users each (this process may hold {} open \
                 files, its hard limit; raise it with `ulimit -Hn` or the service manager's LimitNOFILE)",
                open_file_limit()
            ));
        }
        let source_addrs = match &common.source_addrs {
            Some(addrs) => addrs.clone(),
            None if !common.gateways.is_empty() && common.gateways.iter().all(|g| is_loopback_url(g)) => {
                parse_addr_range("127.0.0.2-127.0.0.9")?
            }
            None => Vec::new(),
        };
        Ok(Settings {
            senders,
            ramp_up,
            duration,
            workers,
            source_addrs,
            reconnect_share,
            scrape_every,
        })
    }

    /// The flags as given, with the scenario's defaults filled in: the report's `settings`.
    pub(crate) fn effective(&self, settings: &Settings) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.insert("senders".into(), settings.senders.into());
            map.insert("ramp_up".into(), settings.ramp_up.as_secs_f64().into());
            map.insert("duration".into(), settings.duration.as_secs_f64().into());
            map.insert("workers".into(), settings.workers.into());
            map.insert("reconnect_share".into(), settings.reconnect_share.into());
            map.insert(
                "scrape_every".into(),
                settings.scrape_every.map(|d| d.as_secs_f64()).into(),
            );
            let addrs: Vec<String> = settings.source_addrs.iter().map(ToString::to_string).collect();
            map.insert("source_addrs".into(), addrs.into());
        }
        value
    }
}

fn is_loopback_url(url: &str) -> bool {
    let host = url.trim_start_matches("ws://").split(['/', ':']).next().unwrap_or("");
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn flags_parse_or_say_why_not() {
        assert_eq!(parse_room_sizes("zipf:1.5"), Ok(RoomSizes::Zipf(1.5)));
        assert!(parse_room_sizes("zipf:0").is_err());
        assert!(parse_room_sizes("normal").is_err());
        let addrs = parse_addr_range("127.0.0.2-127.0.0.4,10.0.0.1").expect("parses");
        assert_eq!(addrs.len(), 4);
        assert!(parse_addr_range("127.0.0.9-127.0.0.2").is_err());
        assert!(
            parse_addr_range("127.0.0.1-127.0.255.255").is_err(),
            "ranges are capped"
        );
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn loopback_gateways_are_recognised() {
        assert!(is_loopback_url("ws://127.0.0.1:9001/ws"));
        assert!(is_loopback_url("ws://localhost:9001/ws"));
        assert!(!is_loopback_url("ws://gw1.example:9001/ws"));
    }

    #[test]
    fn the_settings_are_one_flat_object_with_the_defaults_filled_in() {
        let mut args = Cli::try_parse_from(["run", "--users", "50", "--rooms", "5", "--scenario", "reconnect"])
            .expect("parses")
            .run;
        let settings = args.settle().expect("settles");
        let value = args.effective(&settings);
        assert_eq!(value["users"], 50);
        assert_eq!(value["scenario"], "reconnect");
        assert_eq!(value["reconnect_share"], 0.25);
        assert_eq!(value["duration"], 30.0);
        assert_eq!(value["connect_timeout"], 15.0);
        assert_eq!(value["max_p99_ms"], serde_json::Value::Null);
        assert!(value.get("load_test_key").is_none() && value.get("common").is_none());
    }
}
