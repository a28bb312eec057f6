//! The coordinator: it reads the flags, gets tokens and rooms from the auth API, splits the users over worker
//! processes, drives the phases, merges the workers' figures exactly, and writes the report.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;

use crate::client::unix_micros;
use crate::cpu::PhaseCost;
use crate::latency::Latencies;
use crate::plan::{FromWorker, Schedule, ToWorker, UserPlan, WorkerPlan, WorkerResult};
use crate::report::{
    Connects, Drift, FaultCounts, GatewayFigures, HistoryReads, Messages, Quantiles, Report, Second, SloCheck,
};
use crate::scrape;
use crate::setup::Api;
use crate::worker::decode;

/// Most clients one worker process runs: the machines this is measured on allow 20,000 open files per process.
pub const MAX_CLIENTS_PER_WORKER: usize = 18_000;

/// This process's open-file limit, its soft limit first raised to the hard one (once; the workers it starts
/// inherit it): a stock machine's soft limit of 1024 would fail a run of a few thousand users with errors that
/// say nothing of the cause.
pub fn open_file_limit() -> u64 {
    static LIMIT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        rlimit::increase_nofile_limit(u64::MAX)
            .or_else(|_| rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft))
            .unwrap_or(1024)
    })
}

/// Most clients one worker runs here: [`MAX_CLIENTS_PER_WORKER`], or fewer when the open-file limit is lower
/// (each client holds one file; a worker keeps 200 for itself).
pub fn clients_per_worker() -> usize {
    let room = usize::try_from(open_file_limit().saturating_sub(200)).unwrap_or(usize::MAX);
    MAX_CLIENTS_PER_WORKER.min(room).max(1)
}

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

/// Flags of `natter-loadtest run`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct RunArgs {
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

    /// Simulated users, one connection each.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,

    /// Rooms the users are spread over.
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

    /// History readers during the send phase: each reads the newest page of 50 of one room after another (as a
    /// client opening a room does), one page every 100 ms, timed from when each read was due.
    #[arg(long, default_value_t = 0)]
    pub history_readers: usize,

    /// SLO: fail if the --history-readers' page p99 is above this many milliseconds.
    #[arg(long)]
    pub max_history_p99_ms: Option<f64>,

    /// After the run, check through the history API that every acknowledged message was stored exactly once, and
    /// that every receiver's view of its room (edits, deletions, reactions, replies as they arrived) is the
    /// history's.
    #[arg(long)]
    pub verify_history: bool,

    /// How long --verify-history waits for the persister to catch up.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    #[serde(with = "secs")]
    pub history_timeout: Duration,

    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,

    /// Write latency plots (SVG) into this directory.
    #[arg(long)]
    pub plot: Option<std::path::PathBuf>,

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

    /// No live progress view, even on a terminal.
    #[arg(long)]
    pub quiet: bool,

    /// Saturate: each step's rate is the last one's times this.
    #[arg(long, default_value_t = 1.25)]
    pub step_factor: f64,

    /// Saturate: most steps before giving up on finding the limit.
    #[arg(long, default_value_t = 10)]
    pub max_steps: usize,

    /// Saturate: after the search, one step at twice the highest rate that held, to show how overload is shed.
    #[arg(long)]
    pub overload: bool,
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
struct Settings {
    senders: usize,
    ramp_up: Duration,
    duration: Duration,
    workers: usize,
    source_addrs: Vec<IpAddr>,
    reconnect_share: f64,
    scrape_every: Option<Duration>,
}

impl RunArgs {
    fn settle(&mut self) -> Result<Settings, String> {
        let storm = self.scenario == Scenario::ConnectStorm;
        let senders = self.senders.unwrap_or(if storm { 0 } else { 1 });
        let ramp_up = self
            .ramp_up
            .unwrap_or(if storm { Duration::ZERO } else { Duration::from_secs(10) });
        let duration = self.duration.unwrap_or(match self.scenario {
            Scenario::ConnectStorm => Duration::ZERO,
            Scenario::Soak => Duration::from_secs(600),
            Scenario::Saturate => Duration::from_secs(20),
            _ => Duration::from_secs(30),
        });
        let reconnect_share = self.reconnect_share.unwrap_or(if self.scenario == Scenario::Reconnect {
            0.25
        } else {
            0.0
        });
        let scrape_every = self
            .scrape_every
            .or((self.scenario == Scenario::Soak).then(|| Duration::from_secs(10)));
        if self.users == 0 || self.rooms == 0 || self.rooms > self.users {
            return Err("--users and --rooms must be at least 1, with no more rooms than users".into());
        }
        if self.users > 1_000_000 {
            return Err("--users is capped at 1,000,000".into());
        }
        if !(self.rate > 0.0 && self.rate <= 1000.0) {
            return Err("--rate must be above 0 and at most 1000 messages per second".into());
        }
        if self.size < 20 || self.size > 4000 {
            return Err("--size must be 20 to 4000 bytes (the gateway's default --max-body-chars)".into());
        }
        if duration > Duration::from_secs(24 * 3600) || ramp_up > Duration::from_secs(3600) {
            return Err("--duration is capped at 24h and --ramp-up at 1h".into());
        }
        let receivers: usize = room_sizes(self.users, self.rooms, self.room_sizes)
            .iter()
            .map(|size| size.saturating_sub(senders))
            .sum();
        if self.slow_readers > receivers {
            return Err(format!(
                "--slow-readers {} is more than the {receivers} users who only receive",
                self.slow_readers
            ));
        }
        if self.slow_readers > 0 && self.slow_for >= duration.mul_f64(0.75) {
            return Err(
                "--slow-for must be shorter than the last three quarters of --duration (slow readers stop \
                        reading a quarter in, and must read again before the send phase ends)"
                    .into(),
            );
        }
        if !(0.0..=1.0).contains(&reconnect_share) {
            return Err("--reconnect-share must be between 0 and 1".into());
        }
        if self.min_connected.is_some_and(|m| !(0.0..=1.0).contains(&m)) {
            return Err("--min-connected is a share between 0 and 1".into());
        }
        if self.connect_concurrency == 0 {
            return Err("--connect-concurrency must be at least 1".into());
        }
        for url in &self.gateways {
            if !url.starts_with("ws://") {
                return Err(format!("--gateway '{url}' must be a ws:// URL"));
            }
        }
        let per_worker = clients_per_worker();
        let workers = self.workers.unwrap_or_else(|| self.users.div_ceil(per_worker));
        if workers == 0 || workers > 64 || self.users.div_ceil(workers) > per_worker {
            return Err(format!(
                "--workers must be 1 to 64, with at most {per_worker} users each (this process may hold {} open \
                 files, its hard limit; raise it with `ulimit -Hn` or the service manager's LimitNOFILE)",
                open_file_limit()
            ));
        }
        let source_addrs = match &self.source_addrs {
            Some(addrs) => addrs.clone(),
            None if !self.gateways.is_empty() && self.gateways.iter().all(|g| is_loopback_url(g)) => {
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
}

fn is_loopback_url(url: &str) -> bool {
    let host = url.trim_start_matches("ws://").split(['/', ':']).next().unwrap_or("");
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Room sizes for `users` over `rooms`: every room gets at least one user, and the sizes add up to `users`.
pub fn room_sizes(users: usize, rooms: usize, spread: RoomSizes) -> Vec<usize> {
    let weights: Vec<f64> = (0..rooms)
        .map(|i| match spread {
            RoomSizes::Uniform => 1.0,
            RoomSizes::Zipf(s) => 1.0 / ((i + 1) as f64).powf(s),
        })
        .collect();
    let total: f64 = weights.iter().sum();
    let spare = users - rooms;
    let shares: Vec<f64> = weights.iter().map(|w| spare as f64 * w / total).collect();
    let mut sizes: Vec<usize> = shares.iter().map(|s| 1 + s.floor() as usize).collect();
    let mut left = users - sizes.iter().sum::<usize>();
    // Hand out the rounding remainder to the rooms with the largest fractions.
    let mut order: Vec<usize> = (0..rooms).collect();
    order.sort_by(|a, b| (shares[*b].fract()).total_cmp(&shares[*a].fract()));
    for i in order {
        if left == 0 {
            break;
        }
        sizes[i] += 1;
        left -= 1;
    }
    sizes
}

/// Whether user `i` is one of the `share` that drop mid-run: spread evenly by the golden ratio.
fn drops(i: usize, share: f64) -> bool {
    (i as f64 * 0.618_033_988_75).fract() < share
}

/// Where each user (laid out room by room, `(room, sender)`) runs: its worker and its first gateway. Senders and
/// receivers are each dealt round-robin on their own, so both spread evenly over the workers and the gateways
/// (dealt together, with one sender at the head of each room and even room sizes, every sender would land on the
/// first worker and the first gateway).
fn deal(room_of: &[(usize, bool)], workers: usize, gateways: usize) -> Vec<(usize, usize)> {
    let (mut senders, mut receivers) = (0usize, 0usize);
    room_of
        .iter()
        .map(|(_, sender)| {
            let n = if *sender { &mut senders } else { &mut receivers };
            let placed = (*n % workers.max(1), *n % gateways.max(1));
            *n += 1;
            placed
        })
        .collect()
}

/// Which users (laid out room by room) are slow readers: `count` receivers (or as many as there are), the last
/// member of each room first, then the next to last, and so on, so they spread over the rooms.
fn slow_readers(sizes: &[usize], senders: usize, count: usize) -> Vec<bool> {
    let starts: Vec<usize> = sizes
        .iter()
        .scan(0, |next, size| {
            let start = *next;
            *next += size;
            Some(start)
        })
        .collect();
    let mut slow = vec![false; sizes.iter().sum()];
    let mut picked = 0;
    let deepest = sizes.iter().map(|size| size.saturating_sub(senders)).max().unwrap_or(0);
    for depth in 0..deepest {
        for (room, size) in sizes.iter().enumerate() {
            if picked < count && depth < size.saturating_sub(senders) {
                slow[starts[room] + size - 1 - depth] = true;
                picked += 1;
            }
        }
    }
    slow
}

/// A worker process and the channel to it.
struct WorkerProc {
    child: Child,
    stdin: ChildStdin,
}

async fn tell(worker: &mut WorkerProc, command: &ToWorker) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(command)?;
    line.push(b'\n');
    worker.stdin.write_all(&line).await.context("a worker went away")?;
    worker.stdin.flush().await.context("a worker went away")
}

fn unix_ms() -> u64 {
    unix_micros() / 1000
}

/// Flags that cannot work together or are out of bounds: the run never started (exit status 64).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Runs a load test and returns whether every SLO held.
pub async fn run(mut args: RunArgs, command: String) -> anyhow::Result<(Report, bool)> {
    let settings = args.settle().map_err(UsageError)?;
    let Some(key) = args.load_test_key.clone() else {
        return Err(UsageError(
            "tokens come from the auth API's load-test mode: give --load-test-key (or NATTER_LOAD_TEST_KEY)".into(),
        )
        .into());
    };
    let live = !args.quiet && std::io::stderr().is_terminal();
    let say = |text: &str| eprintln!("natter-loadtest: {text}");
    let api = Api::new(&args.api)?;
    let http = reqwest::Client::new();

    let gateways = if args.gateways.is_empty() {
        let url = api.assigned_gateway().await?;
        say(&format!("no --gateway given; the auth API assigned {url}"));
        vec![url]
    } else {
        args.gateways.clone()
    };
    let run_id = format!("lt{:05x}", unix_micros() % 0xfffff);
    let started = Instant::now();
    say(&format!("minting {} guest tokens ({run_id}-*)", args.users));
    let (users, expires_in) = api.bulk_guests(&key, &run_id, args.users).await?;
    if users.len() != args.users {
        bail!(
            "the auth API made {} users where {} were asked for",
            users.len(),
            args.users
        );
    }
    let needed = settings.ramp_up + settings.duration + args.drain_timeout + Duration::from_secs(60);
    if Duration::from_secs(expires_in) < needed {
        say(&format!(
            "warning: tokens expire after {expires_in}s, before this run ends; expect 4001 closes (raise the auth \
             API's --access-token-ttl for long runs)"
        ));
    }
    let rooms = api.create_rooms(&users[0].access_token, &run_id, args.rooms).await?;
    say(&format!(
        "{} users and {} rooms ready in {:.1}s",
        users.len(),
        rooms.len(),
        started.elapsed().as_secs_f64()
    ));

    // Lay users out room by room, then deal them round-robin to workers and gateways, so every room spans them.
    let sizes = room_sizes(args.users, args.rooms, args.room_sizes);
    let room_of: Vec<(usize, bool)> = sizes
        .iter()
        .enumerate()
        .flat_map(|(room, size)| (0..*size).map(move |k| (room, k < settings.senders)))
        .collect();
    let slow = slow_readers(&sizes, settings.senders, args.slow_readers);
    let senders_total = room_of.iter().filter(|(_, s)| *s).count() as u64;
    let messages_per_sender = match args.messages {
        Some(total) => total.div_ceil(senders_total.max(1)),
        None => u64::MAX,
    };
    let schedule = Schedule {
        ramp_up_ms: settings.ramp_up.as_millis() as u64,
        connect_concurrency: args.connect_concurrency,
        connect_timeout_ms: args.connect_timeout.as_millis() as u64,
        duration_ms: settings.duration.as_millis() as u64,
        rate_per_sender: args.rate,
        messages_per_sender,
        body_bytes: args.size,
        changes_percent: args.changes,
        ack_timeout_ms: 10_000,
        drain_timeout_ms: args.drain_timeout.as_millis() as u64,
        drop_at_ms: settings.duration.as_millis() as u64 / 3,
        drop_for_ms: args.reconnect_after.as_millis() as u64,
        stall_at_ms: settings.duration.as_millis() as u64 / 4,
        stall_for_ms: args.slow_for.as_millis() as u64,
    };
    let mut plans: Vec<WorkerPlan> = (0..settings.workers)
        .map(|worker| WorkerPlan {
            worker,
            gateways: gateways.clone(),
            source_addrs: settings.source_addrs.clone(),
            users: Vec::new(),
            schedule: schedule.clone(),
        })
        .collect();
    let placed = deal(&room_of, settings.workers, gateways.len());
    for (i, (user, (room, sender))) in users.iter().zip(&room_of).enumerate() {
        let (worker, gateway) = placed[i];
        plans[worker].users.push(UserPlan {
            name: user.name.clone(),
            token: user.access_token.clone(),
            room: rooms[*room].clone(),
            sender: *sender,
            gateway,
            // A slow reader does not also drop: its drop would come before it read the 4008 waiting for it.
            drops: settings.reconnect_share > 0.0 && drops(i, settings.reconnect_share) && !slow[i],
            stalls: slow[i],
        });
    }

    let mut figures = GatewayFigures::default();
    figures
        .samples
        .extend(scrape::scrape_all(&http, &args.metrics, 0.0).await);
    let baseline = totals(&figures.samples);
    let watched_at_start = crate::cpu::by_role(&args.watch_cpu);
    let own_at_start = crate::cpu::own_seconds();

    // Start the workers.
    let exe = std::env::current_exe().context("cannot find the harness binary to start workers")?;
    let (events_tx, mut events) = mpsc::unbounded_channel::<(usize, Option<FromWorker>)>();
    let mut workers = Vec::new();
    for (index, plan) in plans.into_iter().enumerate() {
        let mut child = tokio::process::Command::new(&exe)
            .arg("worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start a worker process")?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("a worker has no stdin or stdout");
        };
        let tx = events_tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<FromWorker>(&line) {
                    Ok(event) => {
                        if tx.send((index, Some(event))).is_err() {
                            return;
                        }
                    }
                    Err(err) => eprintln!("natter-loadtest: worker {index} said something unreadable: {err}"),
                }
            }
            let _ = tx.send((index, None));
        });
        let mut proc = WorkerProc { child, stdin };
        tell_plan(&mut proc, &plan).await?;
        workers.push(proc);
    }
    drop(events_tx);
    say(&format!(
        "{} workers, {} gateways, {} source addresses; connecting {} users",
        workers.len(),
        gateways.len(),
        settings.source_addrs.len(),
        args.users
    ));

    // Drive the phases.
    let n = workers.len();
    let connect_started = Instant::now();
    let mut connect_secs = 0.0;
    let mut ready = 0;
    // The workers' CPU once connected, and the coordinator's and the watched processes' at that moment.
    let mut workers_cpu_connected = 0.0;
    let mut own_connected = own_at_start;
    let mut watched_connected = watched_at_start.clone();
    let mut acked_from = 0;
    let mut acked: HashMap<String, Vec<u64>> = HashMap::new();
    let mut results: Vec<WorkerResult> = Vec::new();
    let mut finished = vec![false; n];
    let mut open = vec![0u64; n];
    let mut timeline: Vec<Second> = Vec::new();
    let mut bucket: Option<(u64, Second, Latencies)> = None;
    let mut go_at: Option<Instant> = None;
    let mut drained_gateway = false;
    let mut readers: Vec<tokio::task::JoinHandle<(Latencies, u64)>> = Vec::new();
    let mut next_scrape = settings.scrape_every.map(|every| Instant::now() + every);
    let tick = tokio::time::sleep(Duration::from_millis(500));
    tokio::pin!(tick);
    // However the run goes, it ends: connecting, sending, the last acks and the drain each have a bound.
    let watchdog = connect_started
        + settings.ramp_up
        + args.connect_timeout * 2
        + settings.duration
        + Duration::from_secs(10)
        + args.drain_timeout
        + Duration::from_secs(120 + args.users as u64 / 500);

    while results.len() < n {
        tokio::select! {
            event = events.recv() => {
                let Some((index, event)) = event else { bail!("every worker went away") };
                let Some(event) = event else {
                    if !finished[index] {
                        let status = workers[index].child.wait().await.ok();
                        bail!("worker {index} exited early ({status:?})");
                    }
                    continue;
                };
                match event {
                    FromWorker::Progress(p) => {
                        open[index] = p.open;
                        let second = connect_started.elapsed().as_secs();
                        if bucket.as_ref().is_some_and(|(s, _, _)| *s != second)
                            && let Some((s, mut row, lat)) = bucket.take()
                        {
                            close_second(&mut row, s, &lat, open.iter().sum());
                            if live {
                                live_line(&row, &args);
                            }
                            timeline.push(row);
                        }
                        let (_, row, lat) = bucket.get_or_insert_with(|| (second, Second::default(), Latencies::new()));
                        row.connected += p.connected;
                        row.connect_failed += p.connect_failed;
                        row.sent += p.sent;
                        row.delivered += p.delivered;
                        row.errors += p.errors;
                        if let Ok(h) = decode(&p.latency) {
                            let _ = lat.merge(&h);
                        }
                    }
                    FromWorker::Ready { cpu_secs, .. } => {
                        ready += 1;
                        workers_cpu_connected += cpu_secs;
                        if ready == n {
                            connect_secs = connect_started.elapsed().as_secs_f64();
                            own_connected = crate::cpu::own_seconds();
                            watched_connected = crate::cpu::by_role(&args.watch_cpu);
                            let at = connect_secs;
                            figures.samples.extend(scrape::scrape_all(&http, &args.metrics, at).await);
                            // One second's notice, so every worker hears go before it is due.
                            let start = unix_ms() + 1000;
                            go_at = Some(Instant::now() + Duration::from_secs(1));
                            if live { eprintln!(); }
                            say(&format!("all connected in {connect_secs:.1}s; sending for {}s", settings.duration.as_secs()));
                            for worker in &mut workers {
                                tell(worker, &ToWorker::Go { start_unix_ms: start }).await?;
                            }
                            let until = Instant::now() + Duration::from_secs(1) + settings.duration;
                            readers = (0..args.history_readers)
                                .map(|i| {
                                    let (api, token) = (api.clone(), users[0].access_token.clone());
                                    tokio::spawn(read_history(api, token, rooms.clone(), i, until))
                                })
                                .collect();
                        }
                    }
                    FromWorker::Acked { acked: part } => {
                        for (room, seqs) in part {
                            acked.entry(room).or_default().extend(seqs);
                        }
                        acked_from += 1;
                        if acked_from == n {
                            for seqs in acked.values_mut() {
                                seqs.sort_unstable();
                                seqs.dedup();
                            }
                            let command = ToWorker::Expect { acked: acked.clone() };
                            for worker in &mut workers {
                                tell(worker, &command).await?;
                            }
                        }
                    }
                    FromWorker::Done(result) => {
                        finished[index] = true;
                        results.push(*result);
                    }
                    FromWorker::Failed { message } => bail!("worker {index} failed: {message}"),
                }
            }
            () = &mut tick => {
                tick.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(500));
                if Instant::now() >= watchdog {
                    bail!("the run did not finish in time ({} of {n} workers done); stopping it", results.len());
                }
                if let (Some(pid), Some(go)) = (args.drain_gateway_pid, go_at)
                    && !drained_gateway
                    && go.elapsed() >= settings.duration / 2
                {
                    drained_gateway = true;
                    say(&format!("draining gateway process {pid} (SIGTERM)"));
                    let status = tokio::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
                    if !status.is_ok_and(|s| s.success()) {
                        say(&format!("warning: could not signal process {pid}"));
                    }
                }
                if let (Some(at), Some(every), Some(_)) = (next_scrape, settings.scrape_every, go_at)
                    && Instant::now() >= at
                {
                    next_scrape = Some(at + every);
                    let t = connect_started.elapsed().as_secs_f64();
                    figures.samples.extend(scrape::scrape_all(&http, &args.metrics, t).await);
                }
            }
        }
    }
    if let Some((s, mut row, lat)) = bucket.take() {
        close_second(&mut row, s, &lat, 0);
        timeline.push(row);
    }
    if live {
        eprintln!();
    }
    for worker in &mut workers {
        let _ = worker.child.wait().await;
    }
    let watched_at_end = crate::cpu::by_role(&args.watch_cpu);
    let own_at_end = crate::cpu::own_seconds();
    figures
        .samples
        .extend(scrape::scrape_all(&http, &args.metrics, connect_started.elapsed().as_secs_f64()).await);

    let history_reads = if args.history_readers > 0 {
        let mut reads = HistoryReads {
            readers: args.history_readers,
            ..HistoryReads::default()
        };
        let mut latency = Latencies::new();
        for reader in readers {
            let (part, errors) = reader.await.context("a history reader failed")?;
            latency.merge(&part)?;
            reads.errors += errors;
        }
        reads.pages = latency.count();
        reads.latency = Quantiles::of(&latency);
        Some(reads)
    } else {
        None
    };
    let mut views = std::collections::BTreeMap::new();
    for result in &results {
        crate::plan::merge_views(&mut views, &result.views);
    }
    let history = if args.verify_history {
        say("checking the history API for every acknowledged message");
        Some(
            api.verify_history(&users[0].access_token, &acked, &views, args.history_timeout)
                .await?,
        )
    } else {
        None
    };

    // Merge the workers' figures: counts add, histograms merge.
    let mut connect_latency = Latencies::new();
    let mut latency = Latencies::new();
    let mut ack_latency = Latencies::new();
    let mut accepted_latency = Latencies::new();
    let mut change_latency = Latencies::new();
    let mut total = WorkerResult::default();
    for r in &results {
        connect_latency.merge(&decode(&r.connect_latency)?)?;
        latency.merge(&decode(&r.latency)?)?;
        ack_latency.merge(&decode(&r.ack_latency)?)?;
        accepted_latency.merge(&decode(&r.accepted_latency)?)?;
        if !r.change_latency.is_empty() {
            change_latency.merge(&decode(&r.change_latency)?)?;
        }
        total.add_counts(r);
    }

    // CPU per unit of work: the harness (its workers and this coordinator), the gateways (from their metrics) and
    // every watched role.
    let mut cpu_costs = BTreeMap::new();
    cpu_costs.insert(
        "harness".to_owned(),
        PhaseCost::of(
            0.0,
            workers_cpu_connected + (own_connected - own_at_start),
            total.cpu_secs + (own_at_end - own_at_start),
            total.connected,
            total.delivered,
        ),
    );
    for (role, start) in &watched_at_start {
        let at = |sums: &BTreeMap<String, f64>| sums.get(role).copied().unwrap_or(*start);
        cpu_costs.insert(
            role.clone(),
            PhaseCost::of(
                *start,
                at(&watched_connected),
                at(&watched_at_end),
                total.connected,
                total.delivered,
            ),
        );
    }

    // Samples come per page: before connecting, once connected, during the run, at the end.
    let pages = args.metrics.len();
    if pages > 0 && figures.samples.len() >= 3 * pages {
        let at_ready = totals(&figures.samples[pages..2 * pages]);
        let end = totals(&figures.samples[figures.samples.len() - pages..]);
        figures.memory_connected_bytes = Some(at_ready.0);
        figures.memory_end_bytes = Some(end.0);
        let added = at_ready.1 - baseline.1;
        if added > 0.0 && at_ready.0 > 0.0 {
            figures.memory_per_connection_bytes = Some((at_ready.0 - baseline.0) / added);
        }
        cpu_costs.insert(
            "gateways".to_owned(),
            PhaseCost::of(baseline.2, at_ready.2, end.2, total.connected, total.delivered),
        );
        let cpu = end.2 - at_ready.2;
        if cpu > 0.0 {
            figures.cpu_seconds = Some(cpu);
            figures.deliveries_per_cpu_second = Some(total.delivered as f64 / cpu);
        }
    }

    let send_secs = settings.duration.as_secs_f64().max(1.0);
    let peak = timeline.iter().map(|s| s.delivered).max().unwrap_or(0) as f64;
    let mut report = Report {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        command,
        started_unix: unix_ms() / 1000,
        machine: machine(),
        settings: effective_settings(&args, &settings),
        workers: n,
        gateways,
        connect: Connects {
            clients: total.clients,
            connected: total.connected,
            failures: total.connect_failures.clone(),
            phase_secs: connect_secs,
            per_sec: total.connected as f64 / connect_secs.max(0.001),
            latency: Quantiles::of(&connect_latency),
        },
        messages: Messages {
            sent: total.sent,
            acked: total.acked,
            unacked: total.unacked,
            resent: total.resent,
            delivered: total.delivered,
            expected: total.expected,
            deliveries_per_sec: total.delivered as f64 / send_secs,
            peak_deliveries_per_sec: peak,
            latency: Quantiles::of(&latency),
            change_latency: Quantiles::of(&change_latency),
            ack_latency: Quantiles::of(&ack_latency),
            accepted_latency: Quantiles::of(&accepted_latency),
        },
        faults: FaultCounts {
            lost: total.lost,
            duplicates: total.duplicates,
            reordered: total.reordered,
            unrecovered: total.unrecovered,
            rooms: total.faulty_rooms.into_iter().take(20).collect(),
        },
        reconnects: total.reconnects,
        stalls: total.stalls,
        error_codes: total.error_codes,
        close_codes: total.close_codes,
        history,
        history_reads,
        drift: Drift::of(&timeline, &figures),
        gateway_metrics: figures,
        relay_deliveries_per_cpu_second: relay_rate(&cpu_costs, total.delivered),
        cpu: cpu_costs,
        timeline,
        slo: Vec::new(),
        passed: true,
    };
    report.slo = slo_checks(&args, &report);
    report.passed = report.slo.iter().all(|c| c.passed);

    if let Some(path) = &args.report {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    if let Some(dir) = &args.plot {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let points: Vec<_> = report.timeline.iter().map(Second::point).collect();
        let title = format!(
            "natter-loadtest {:?}: {} users, {} rooms",
            args.scenario, args.users, args.rooms
        );
        std::fs::write(
            dir.join("latency-over-time.svg"),
            crate::plot::latency_over_time(&title, &points),
        )?;
        let spectrum: Vec<(f64, f64)> = percentile_spectrum(&latency);
        std::fs::write(
            dir.join("latency-distribution.svg"),
            crate::plot::latency_distribution(&title, &spectrum),
        )?;
    }
    let passed = report.passed;
    Ok((report, passed))
}

/// Deliveries per CPU second of the whole relay (the gateways and nats-server) over the send phase, when the run
/// watched nats-server (`--watch-cpu nats=PID`).
fn relay_rate(costs: &BTreeMap<String, PhaseCost>, delivered: u64) -> Option<f64> {
    let secs = costs.get("gateways")?.send_secs + costs.get("nats")?.send_secs;
    (secs > 0.0).then(|| delivered as f64 / secs)
}

/// The flags as given, with the scenario's defaults filled in.
fn effective_settings(args: &RunArgs, settings: &Settings) -> serde_json::Value {
    let mut value = serde_json::to_value(args).unwrap_or_default();
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

async fn tell_plan(worker: &mut WorkerProc, plan: &WorkerPlan) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(plan)?;
    line.push(b'\n');
    worker
        .stdin
        .write_all(&line)
        .await
        .context("cannot hand a worker its plan")?;
    worker.stdin.flush().await.context("cannot hand a worker its plan")
}

/// (resident bytes, connections) summed over a set of scrapes.
/// Resident memory, connections and CPU seconds, summed over one scrape of every gateway.
fn totals(samples: &[scrape::Sample]) -> (f64, f64, f64) {
    let get = |name: &str| samples.iter().filter_map(|s| s.values.get(name)).sum::<f64>();
    (
        get("process_resident_memory_bytes"),
        get("natter_gateway_connections"),
        get("process_cpu_seconds_total"),
    )
}

fn close_second(row: &mut Second, second: u64, latency: &Latencies, open: u64) {
    let q = Quantiles::of(latency);
    row.t_secs = (second + 1) as f64;
    row.p50_ms = q.p50_ms;
    row.p99_ms = q.p99_ms;
    row.p999_ms = q.p999_ms;
    row.max_ms = q.max_ms;
    if open > 0 {
        row.open = open;
    }
}

fn live_line(row: &Second, args: &RunArgs) {
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r\x1b[2K[{:>4}s] open {:>6}/{}  +{}/s conn  {} fail  sent {}/s  delivered {}/s  p50 {:.1} ms  p99 {:.1} ms  errors {}",
        row.t_secs,
        row.open,
        args.users,
        row.connected,
        row.connect_failed,
        row.sent,
        row.delivered,
        row.p50_ms,
        row.p99_ms,
        row.errors
    );
    let _ = err.flush();
}

/// (percentile, ms) pairs for the distribution plot.
fn percentile_spectrum(latency: &Latencies) -> Vec<(f64, f64)> {
    if latency.count() == 0 {
        return Vec::new();
    }
    let mut points = Vec::new();
    let mut p: f64 = 0.0;
    // Halve the distance to 100% each step, like HdrHistogram's percentile output.
    while p < 99.9999 {
        points.push((p, latency.quantile(p / 100.0).as_secs_f64() * 1000.0));
        let gap = 100.0 - p;
        p += gap / 8.0;
        p = (p * 1e6).round() / 1e6;
    }
    points.push((100.0, latency.quantile(1.0).as_secs_f64() * 1000.0));
    points
}

fn slo_checks(args: &RunArgs, report: &Report) -> Vec<SloCheck> {
    let mut checks = Vec::new();
    if let Some(bound) = args.max_p99_ms {
        let actual = report.messages.latency.p99_ms;
        checks.push(SloCheck {
            flag: "--max-p99-ms".into(),
            bound,
            actual,
            passed: actual <= bound,
        });
    }
    if let Some(bound) = args.max_loss {
        let f = &report.faults;
        let actual = f.lost + f.duplicates + f.reordered + f.unrecovered + report.messages.unacked;
        checks.push(SloCheck {
            flag: "--max-loss".into(),
            bound: bound as f64,
            actual: actual as f64,
            passed: actual <= bound,
        });
    }
    if let Some(bound) = args.min_connected {
        let actual = report.connect.connected as f64 / report.connect.clients.max(1) as f64;
        checks.push(SloCheck {
            flag: "--min-connected".into(),
            bound,
            actual,
            passed: actual >= bound,
        });
    }
    if let (Some(bound), Some(reads)) = (args.max_history_p99_ms, &report.history_reads) {
        checks.push(SloCheck {
            flag: "--max-history-p99-ms".into(),
            bound,
            actual: reads.latency.p99_ms,
            passed: reads.latency.p99_ms <= bound && reads.errors == 0,
        });
    }
    if let Some(h) = &report.history {
        checks.push(SloCheck {
            flag: "--verify-history".into(),
            bound: 0.0,
            actual: (h.missing + h.duplicated + h.views_diverged) as f64,
            passed: h.missing == 0 && h.duplicated == 0 && h.views_diverged == 0,
        });
    }
    checks
}

/// How often one history reader reads a page.
const HISTORY_READ_EVERY: Duration = Duration::from_millis(100);

/// History reader `index`: the newest page of each of `rooms` in turn (starting at its own), one every
/// [`HISTORY_READ_EVERY`] until `until`. Each read is timed from when it was due, so a slow answer delays the next
/// without hiding it. Returns the latencies and the failed reads.
async fn read_history(api: Api, token: String, rooms: Vec<String>, index: usize, until: Instant) -> (Latencies, u64) {
    let mut latency = Latencies::new();
    let mut errors = 0;
    let mut due = Instant::now();
    for room in rooms.iter().cycle().skip(index % rooms.len().max(1)) {
        if due >= until {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        if api.newest_page(&token, room).await {
            latency.record(due.elapsed());
        } else {
            errors += 1;
        }
        due += HISTORY_READ_EVERY;
    }
    (latency, errors)
}

/// The machine's description for the report.
fn machine() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert(
        "cores".into(),
        std::thread::available_parallelism().map_or(0, |n| n.get()).to_string(),
    );
    if let Ok(info) = std::fs::read_to_string("/proc/meminfo")
        && let Some(kb) = info.lines().find_map(|l| l.strip_prefix("MemTotal:"))
    {
        m.insert("memory".into(), kb.trim().to_owned());
    }
    if let Ok(cpu) = std::fs::read_to_string("/proc/cpuinfo")
        && let Some(name) = cpu.lines().find_map(|l| l.strip_prefix("model name"))
    {
        m.insert("cpu".into(), name.trim_start_matches([' ', '\t', ':']).to_owned());
    }
    if let Ok(os) = std::fs::read_to_string("/etc/os-release")
        && let Some(name) = os.lines().find_map(|l| l.strip_prefix("PRETTY_NAME="))
    {
        m.insert("os".into(), name.trim_matches('"').to_owned());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_sizes_add_up_and_keep_every_room() {
        for (users, rooms) in [(10, 3), (1000, 7), (100_000, 1000), (5, 5)] {
            for spread in [RoomSizes::Uniform, RoomSizes::Zipf(1.0), RoomSizes::Zipf(2.5)] {
                let sizes = room_sizes(users, rooms, spread);
                assert_eq!(sizes.len(), rooms);
                assert_eq!(sizes.iter().sum::<usize>(), users, "{users} over {rooms} ({spread:?})");
                assert!(sizes.iter().all(|s| *s >= 1));
            }
        }
        let uniform = room_sizes(1000, 10, RoomSizes::Uniform);
        assert!(uniform.iter().all(|s| *s == 100));
        let zipf = room_sizes(1000, 10, RoomSizes::Zipf(1.0));
        assert!(zipf.windows(2).all(|w| w[0] >= w[1]), "zipf rooms shrink: {zipf:?}");
        assert!(zipf[0] > 3 * zipf[9]);
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
    fn senders_and_receivers_each_spread_evenly_over_workers_and_gateways() {
        let mut cases = vec![(7, 50, 3, 3, 2)];
        for gateways in [2, 4] {
            for size in [50, 100] {
                for senders in [1, 2] {
                    for workers in [1, 2, 3, 4] {
                        cases.push((8, size, senders, workers, gateways));
                        cases.push((9, size, senders, workers, gateways));
                    }
                }
            }
        }
        for (rooms, size, senders, workers, gateways) in cases {
            let case =
                format!("{rooms} rooms of {size}, {senders} senders each, {workers} workers, {gateways} gateways");
            let room_of: Vec<(usize, bool)> = (0..rooms)
                .flat_map(|room| (0..size).map(move |k| (room, k < senders)))
                .collect();
            let placed = deal(&room_of, workers, gateways);
            for sending in [true, false] {
                let mut per_worker = vec![0usize; workers];
                let mut per_gateway = vec![0usize; gateways];
                for ((_, sender), (worker, gateway)) in room_of.iter().zip(&placed) {
                    if *sender == sending {
                        per_worker[*worker] += 1;
                        per_gateway[*gateway] += 1;
                    }
                }
                // Within one of each other: closer than the one room's worth of senders a fair share allows.
                for counts in [&per_worker, &per_gateway] {
                    let (min, max) = (counts.iter().min(), counts.iter().max());
                    assert!(
                        max.zip(min).is_some_and(|(max, min)| max - min <= 1),
                        "senders {sending}: {counts:?} ({case})"
                    );
                }
                assert!(
                    per_gateway.iter().all(|n| *n > 0),
                    "every gateway has some: {per_gateway:?} ({case})"
                );
            }
            // And every room spans the gateways: its receivers are on each of them.
            for room in 0..rooms {
                let mut on = vec![false; gateways];
                for ((r, sender), (_, gateway)) in room_of.iter().zip(&placed) {
                    if *r == room && !sender {
                        on[*gateway] = true;
                    }
                }
                assert!(
                    on.iter().all(|on| *on),
                    "room {room}'s receivers on every gateway ({case})"
                );
            }
        }
    }

    #[test]
    fn slow_readers_are_receivers_spread_over_the_rooms() {
        let slow = slow_readers(&[4, 4, 3], 1, 4);
        let picked: Vec<usize> = slow.iter().enumerate().filter(|(_, s)| **s).map(|(i, _)| i).collect();
        // The last member of each room, then the next to last of the first room; never a sender (0, 4, 8).
        assert_eq!(picked, vec![2, 3, 7, 10]);
        assert_eq!(slow_readers(&[2, 2], 2, 3).iter().filter(|s| **s).count(), 0);
        // Uneven rooms: the small ones run out, the big ones go on giving.
        let uneven = slow_readers(&[11, 5, 3, 2, 2, 2, 2, 1, 1, 1], 1, 20);
        assert_eq!(uneven.iter().filter(|s| **s).count(), 20);
        let every_receiver = slow_readers(&[11, 5, 3, 2, 2, 2, 2, 1, 1, 1], 1, 100);
        assert_eq!(every_receiver.iter().filter(|s| **s).count(), 30 - 10);
    }

    #[test]
    fn the_dropping_share_is_close_to_the_share_asked() {
        let dropped = (0..10_000).filter(|i| drops(*i, 0.25)).count();
        assert!((2400..=2600).contains(&dropped), "{dropped}");
        assert_eq!((0..1000).filter(|i| drops(*i, 0.0)).count(), 0);
    }

    #[test]
    fn loopback_gateways_are_recognised() {
        assert!(is_loopback_url("ws://127.0.0.1:9001/ws"));
        assert!(is_loopback_url("ws://localhost:9001/ws"));
        assert!(!is_loopback_url("ws://gw1.example:9001/ws"));
    }
}
