//! The phases of a run, driven by what the workers say: connect (every worker ready), go (one start time for
//! all), acked (every worker's senders done), expect (every room's acknowledged seqs to every worker) and done
//! (every worker's figures). Along the way: the per-second timeline and live view, the scrapes of the gateways'
//! metrics, CPU time at the phases' edges, the history readers, and a gateway drained half-way.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::args::{RunArgs, Settings};
use super::workers::Workers;
use crate::client::unix_micros;
use crate::latency::Latencies;
use crate::plan::{FromWorker, Progress, ToWorker, WorkerResult};
use crate::report::{GatewayFigures, HistoryReads, Quantiles, Second};
use crate::scrape;
use crate::setup::Api;
use crate::worker::decode;

/// How often one history reader reads a page.
const HISTORY_READ_EVERY: Duration = Duration::from_millis(100);

/// What the phases need from the run around them.
pub(crate) struct Run<'a> {
    /// The flags.
    pub(crate) args: &'a RunArgs,
    /// The flags once settled.
    pub(crate) settings: &'a Settings,
    /// The auth API, for history reads.
    pub(crate) api: &'a Api,
    /// The client that scrapes the gateways' metrics.
    pub(crate) http: &'a reqwest::Client,
    /// A user's access token, for history reads.
    pub(crate) token: &'a str,
    /// The run's rooms.
    pub(crate) rooms: &'a [String],
    /// Whether to draw the live progress line.
    pub(crate) live: bool,
}

/// CPU seconds of this process and of every watched role at one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct CpuMark {
    /// This process (the coordinator).
    pub(crate) own: f64,
    /// Every watched role (`--watch-cpu`).
    pub(crate) watched: BTreeMap<String, f64>,
}

impl CpuMark {
    /// The CPU seconds now.
    pub(crate) fn now(args: &RunArgs) -> Self {
        Self {
            watched: crate::cpu::by_role(&args.output.watch_cpu),
            own: crate::cpu::own_seconds(),
        }
    }
}

/// What the phases found: every worker's figures and what the coordinator saw around them.
pub(crate) struct Phases {
    /// Every worker's final figures.
    pub(crate) results: Vec<WorkerResult>,
    /// Every room's acknowledged seqs, sorted, from all workers.
    pub(crate) acked: HashMap<String, Vec<u64>>,
    /// Per second, from the first connection attempt to the end.
    pub(crate) timeline: Vec<Second>,
    /// Seconds from the first connection attempt to every worker ready.
    pub(crate) connect_secs: f64,
    /// The workers' CPU seconds once every one was ready.
    pub(crate) workers_cpu_connected: f64,
    /// CPU at the start, once every worker was ready, and at the end.
    pub(crate) cpu: [CpuMark; 3],
    /// The history readers' figures (`--history-readers`).
    pub(crate) history_reads: Option<HistoryReads>,
}

/// The state of the phases as the workers' lines come in.
struct Drive<'r, 'a> {
    run: &'r Run<'a>,
    n: usize,
    connect_started: Instant,
    connect_secs: f64,
    ready: usize,
    workers_cpu_connected: f64,
    cpu_connected: CpuMark,
    acked_from: usize,
    acked: HashMap<String, Vec<u64>>,
    results: Vec<WorkerResult>,
    finished: Vec<bool>,
    open: Vec<u64>,
    timeline: Vec<Second>,
    bucket: Option<(u64, Second, Latencies)>,
    go_at: Option<Instant>,
    drained_gateway: bool,
    readers: Vec<tokio::task::JoinHandle<(Latencies, u64)>>,
    next_scrape: Option<Instant>,
}

/// Drives the workers through the phases to their end, scraping into `figures` as it goes (once every worker is
/// ready, every `--scrape-every` while sending, and at the end). `at_start` is the CPU before the workers started.
pub(crate) async fn drive(
    run: &Run<'_>,
    workers: &mut Workers,
    figures: &mut GatewayFigures,
    at_start: CpuMark,
) -> anyhow::Result<Phases> {
    let n = workers.len();
    let settings = run.settings;
    let mut drive = Drive {
        run,
        n,
        connect_started: Instant::now(),
        connect_secs: 0.0,
        ready: 0,
        workers_cpu_connected: 0.0,
        cpu_connected: at_start.clone(),
        acked_from: 0,
        acked: HashMap::new(),
        results: Vec::new(),
        finished: vec![false; n],
        open: vec![0; n],
        timeline: Vec::new(),
        bucket: None,
        go_at: None,
        drained_gateway: false,
        readers: Vec::new(),
        next_scrape: settings.scrape_every.map(|every| Instant::now() + every),
    };
    let tick = tokio::time::sleep(Duration::from_millis(500));
    tokio::pin!(tick);
    // However the run goes, it ends: connecting, sending, the last acks and the drain each have a bound.
    let watchdog = drive.connect_started
        + settings.ramp_up
        + run.args.common.connect_timeout * 2
        + settings.duration
        + Duration::from_secs(10)
        + run.args.common.drain_timeout
        + Duration::from_secs(120 + run.args.load.users as u64 / 500);

    while drive.results.len() < n {
        tokio::select! {
            event = workers.events.recv() => {
                let Some((index, event)) = event else { bail!("every worker went away") };
                let Some(event) = event else {
                    if !drive.finished[index] {
                        let status = workers.exit_status(index).await;
                        bail!("worker {index} exited early ({status:?})");
                    }
                    continue;
                };
                match event {
                    FromWorker::Progress(p) => drive.progress(index, &p),
                    FromWorker::Ready { cpu_secs, .. } => drive.ready(cpu_secs, workers, figures).await?,
                    FromWorker::Acked { acked } => drive.acked(acked, workers).await?,
                    FromWorker::Done(result) => {
                        drive.finished[index] = true;
                        drive.results.push(*result);
                    }
                    FromWorker::Failed { message } => bail!("worker {index} failed: {message}"),
                }
            }
            () = &mut tick => {
                tick.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(500));
                if Instant::now() >= watchdog {
                    bail!("the run did not finish in time ({} of {n} workers done); stopping it", drive.results.len());
                }
                drive.tick(figures).await;
            }
        }
    }
    drive.done(workers, figures, at_start).await
}

impl Drive<'_, '_> {
    /// A worker's second: added to the current second of the timeline, which is closed when the next begins.
    fn progress(&mut self, index: usize, p: &Progress) {
        self.open[index] = p.open;
        let second = self.connect_started.elapsed().as_secs();
        if self.bucket.as_ref().is_some_and(|(s, _, _)| *s != second)
            && let Some((s, mut row, lat)) = self.bucket.take()
        {
            close_second(&mut row, s, &lat, self.open.iter().sum());
            if self.run.live {
                live_line(&row, self.run.args);
            }
            self.timeline.push(row);
        }
        let (_, row, lat) = self
            .bucket
            .get_or_insert_with(|| (second, Second::default(), Latencies::new()));
        row.connected += p.connected;
        row.connect_failed += p.connect_failed;
        row.sent += p.sent;
        row.delivered += p.delivered;
        row.errors += p.errors;
        if let Ok(h) = decode(&p.latency) {
            let _ = lat.merge(&h);
        }
    }

    /// A worker is ready; once all are, the send phase starts: go to every worker, history readers started.
    async fn ready(
        &mut self,
        cpu_secs: f64,
        workers: &mut Workers,
        figures: &mut GatewayFigures,
    ) -> anyhow::Result<()> {
        self.ready += 1;
        self.workers_cpu_connected += cpu_secs;
        if self.ready < self.n {
            return Ok(());
        }
        let (run, args) = (self.run, self.run.args);
        self.connect_secs = self.connect_started.elapsed().as_secs_f64();
        self.cpu_connected = CpuMark::now(args);
        figures
            .samples
            .extend(scrape::scrape_all(run.http, &args.common.metrics, self.connect_secs).await);
        // One second's notice, so every worker hears go before it is due.
        let start = unix_micros() / 1000 + 1000;
        self.go_at = Some(Instant::now() + Duration::from_secs(1));
        if run.live {
            eprintln!();
        }
        say(&format!(
            "all connected in {:.1}s; sending for {}s",
            self.connect_secs,
            run.settings.duration.as_secs()
        ));
        workers.tell_all(&ToWorker::Go { start_unix_ms: start }).await?;
        let until = Instant::now() + Duration::from_secs(1) + run.settings.duration;
        self.readers = (0..args.history.history_readers)
            .map(|i| {
                let (api, token) = (run.api.clone(), run.token.to_owned());
                tokio::spawn(read_history(api, token, run.rooms.to_vec(), i, until))
            })
            .collect();
        Ok(())
    }

    /// A worker's senders are done; once all are, every worker hears every room's acknowledged seqs.
    async fn acked(&mut self, part: HashMap<String, Vec<u64>>, workers: &mut Workers) -> anyhow::Result<()> {
        for (room, seqs) in part {
            self.acked.entry(room).or_default().extend(seqs);
        }
        self.acked_from += 1;
        if self.acked_from == self.n {
            for seqs in self.acked.values_mut() {
                seqs.sort_unstable();
                seqs.dedup();
            }
            workers
                .tell_all(&ToWorker::Expect {
                    acked: self.acked.clone(),
                })
                .await?;
        }
        Ok(())
    }

    /// Every half second: the gateway to drain half-way through sending, and the scrapes while sending.
    async fn tick(&mut self, figures: &mut GatewayFigures) {
        let (run, args) = (self.run, self.run.args);
        if let (Some(pid), Some(go)) = (args.faults.drain_gateway_pid, self.go_at)
            && !self.drained_gateway
            && go.elapsed() >= run.settings.duration / 2
        {
            self.drained_gateway = true;
            say(&format!("draining gateway process {pid} (SIGTERM)"));
            let status = tokio::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
            if !status.is_ok_and(|s| s.success()) {
                say(&format!("warning: could not signal process {pid}"));
            }
        }
        if let (Some(at), Some(every), Some(_)) = (self.next_scrape, run.settings.scrape_every, self.go_at)
            && Instant::now() >= at
        {
            self.next_scrape = Some(at + every);
            let t = self.connect_started.elapsed().as_secs_f64();
            figures
                .samples
                .extend(scrape::scrape_all(run.http, &args.common.metrics, t).await);
        }
    }

    /// Every worker is done: the last second closed, the workers' exits, the CPU and a scrape at the end, and the
    /// history readers' figures.
    async fn done(
        mut self,
        workers: &mut Workers,
        figures: &mut GatewayFigures,
        at_start: CpuMark,
    ) -> anyhow::Result<Phases> {
        let (run, args) = (self.run, self.run.args);
        if let Some((s, mut row, lat)) = self.bucket.take() {
            close_second(&mut row, s, &lat, 0);
            self.timeline.push(row);
        }
        if run.live {
            eprintln!();
        }
        workers.wait_all().await;
        let at_end = CpuMark::now(args);
        let t = self.connect_started.elapsed().as_secs_f64();
        figures
            .samples
            .extend(scrape::scrape_all(run.http, &args.common.metrics, t).await);

        let history_reads = if args.history.history_readers > 0 {
            let mut reads = HistoryReads {
                readers: args.history.history_readers,
                ..HistoryReads::default()
            };
            let mut latency = Latencies::new();
            for reader in self.readers {
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
        Ok(Phases {
            results: self.results,
            acked: self.acked,
            timeline: self.timeline,
            connect_secs: self.connect_secs,
            workers_cpu_connected: self.workers_cpu_connected,
            cpu: [at_start, self.cpu_connected, at_end],
            history_reads,
        })
    }
}

/// One line of the coordinator's own on stderr.
pub(crate) fn say(text: &str) {
    eprintln!("natter-loadtest: {text}");
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
        args.load.users,
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
