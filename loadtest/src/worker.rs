//! A worker process: it reads its plan on stdin, runs its clients on one thread, reports progress every second on
//! stdout, and at the end works out each receiver's faults against every room's acknowledged messages.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Semaphore, watch};

use crate::accounting::Faults;
use crate::client::{self, Shared, unix_micros};
use crate::counts::{ConnectCounts, Counts, EventCounts, FaultCounts, MessageCounts};
use crate::latency::Latencies;
use crate::plan::{FromWorker, Progress, ToWorker, WorkerPlan, WorkerResult};

/// Writes one line to the coordinator. A coordinator that went away ends the worker.
fn tell(message: &FromWorker) {
    // Worker messages are plain data; serializing them cannot fail.
    let line = serde_json::to_string(message).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(1);
    }
}

/// Encodes a histogram for a message. Serializing an in-memory histogram does not fail in practice; if it did,
/// the coordinator would report the figure as unreadable rather than the worker dying.
pub fn encode(latencies: &Latencies) -> String {
    latencies.to_bytes().map(|b| STANDARD.encode(b)).unwrap_or_default()
}

/// Decodes a histogram from a message.
pub fn decode(text: &str) -> anyhow::Result<Latencies> {
    let bytes = STANDARD.decode(text).context("a histogram is not base64")?;
    Ok(Latencies::from_bytes(&bytes)?)
}

/// The gateway URL's socket address (`ws://host:port/...`).
fn resolve(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("ws://")
        .with_context(|| format!("gateway URL '{url}' must start with ws://"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addrs: Vec<SocketAddr> = authority
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve '{authority}'"))?
        .collect();
    // IPv4 first: the source addresses that spread the sockets are IPv4.
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .with_context(|| format!("'{authority}' has no address"))
}

/// Runs a worker: plan from stdin, messages to stdout. Returns when the run is over.
pub async fn run() -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let plan: WorkerPlan = match lines.next_line().await.context("cannot read the plan")? {
        Some(line) => serde_json::from_str(&line).context("the plan is not valid")?,
        None => bail!("no plan on stdin"),
    };
    let result = run_plan(plan, &mut lines).await;
    if let Err(err) = &result {
        tell(&FromWorker::Failed {
            message: format!("{err:#}"),
        });
    }
    result
}

async fn run_plan(plan: WorkerPlan, lines: &mut tokio::io::Lines<BufReader<tokio::io::Stdin>>) -> anyhow::Result<()> {
    let gateways = plan
        .gateways
        .iter()
        .map(|url| resolve(url).map(|addr| (url.clone(), addr)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if gateways.is_empty() {
        bail!("no gateway URL");
    }
    let (go_tx, go_rx) = watch::channel(None);
    let (expect_tx, expect_rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        stats: Default::default(),
        gateways,
        source_addrs: plan.source_addrs.clone(),
        schedule: plan.schedule.clone(),
        connecting: Semaphore::new(plan.schedule.connect_concurrency.max(1)),
        go: go_rx,
        expect: expect_rx,
        stop: stop_rx,
        changed: tokio::sync::Notify::new(),
    });
    let clients = plan.users.len();
    let senders = plan.users.iter().filter(|u| u.sender).count() as u64;
    let tasks: Vec<_> = plan
        .users
        .into_iter()
        .enumerate()
        .map(|(index, user)| tokio::spawn(client::run(shared.clone(), index, clients, plan.worker, user)))
        .collect();
    let progress = tokio::spawn(report_progress(shared.clone()));

    // Connect phase.
    wait_until(&shared, |s| s.settled >= clients as u64).await;
    let (connected, failed) = {
        let stats = shared.stats();
        (stats.connected, clients as u64 - stats.connected)
    };
    tell(&FromWorker::Ready {
        connected,
        failed,
        cpu_secs: crate::cpu::own_seconds(),
    });

    // Send phase, on the coordinator's word.
    let Some(ToWorker::Go { start_unix_ms }) = next_command(lines).await? else {
        bail!("expected go from the coordinator");
    };
    let start_micros = start_unix_ms * 1000;
    // The same moment on this process's clock; a go heard late puts the start in the past, so overdue sends fire at
    // once and keep their true due times.
    let now_micros = unix_micros();
    let now = Instant::now();
    let start = if start_micros >= now_micros {
        now + Duration::from_micros(start_micros - now_micros)
    } else {
        now.checked_sub(Duration::from_micros(now_micros - start_micros))
            .unwrap_or(now)
    };
    go_tx.send_replace(Some((start_micros, start)));
    wait_until(&shared, |s| s.senders_finished >= senders).await;
    let acked = std::mem::take(&mut shared.stats().acked_seqs);
    tell(&FromWorker::Acked { acked });

    // Drain: receivers wait for everything acknowledged anywhere.
    let Some(ToWorker::Expect { mut acked }) = next_command(lines).await? else {
        bail!("expected the acknowledged seqs from the coordinator");
    };
    for seqs in acked.values_mut() {
        seqs.sort_unstable();
        seqs.dedup();
    }
    let acked = Arc::new(acked);
    expect_tx.send_replace(Some(acked.clone()));
    let drain = Duration::from_millis(shared.schedule.drain_timeout_ms);
    let _ = tokio::time::timeout(drain, wait_until(&shared, |s| s.satisfied >= s.connected)).await;
    stop_tx.send_replace(true);

    let mut faults_by_room: HashMap<String, Faults> = HashMap::new();
    let mut views: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut expected_deliveries = 0;
    for task in tasks {
        let outcome = task.await.context("a client task failed")?;
        if let Some(reception) = outcome.reception {
            if let Some(digest) = reception.view() {
                *views
                    .entry(outcome.room.clone())
                    .or_default()
                    .entry(digest)
                    .or_default() += 1;
            }
            let want = acked.get(&outcome.room).map_or(&[][..], Vec::as_slice);
            expected_deliveries += want.len() as u64;
            faults_by_room
                .entry(outcome.room)
                .or_default()
                .add(&reception.faults(want));
        }
    }
    progress.abort();

    let stats = shared.stats();
    let mut total = Faults::default();
    let mut faulty_rooms = BTreeMap::new();
    for (room, faults) in &faults_by_room {
        total.add(faults);
        if !faults.is_clean() && faulty_rooms.len() < FaultCounts::MAX_ROOMS {
            faulty_rooms.insert(room.clone(), [faults.lost, faults.duplicates, faults.reordered]);
        }
    }
    let result = WorkerResult {
        counts: Counts {
            connect: ConnectCounts {
                clients: clients as u64,
                connected: stats.connected,
                failures: stats.connect_failures.clone(),
            },
            messages: MessageCounts {
                sent: stats.sent,
                acked: stats.acked,
                unacked: stats.unacked,
                resent: stats.resent.clone(),
                delivered: stats.delivered,
                expected: expected_deliveries,
            },
            faults: FaultCounts {
                lost: total.lost,
                duplicates: total.duplicates,
                reordered: total.reordered,
                unrecovered: stats.unrecovered,
                rooms: faulty_rooms,
            },
            events: EventCounts {
                reconnects: stats.reconnects,
                stalls: stats.stalls,
                error_codes: stats.error_codes.clone(),
                close_codes: stats.close_codes.clone(),
            },
        },
        connect_latency: encode(&stats.connect_latency),
        latency: encode(&stats.latency),
        ack_latency: encode(&stats.ack_latency),
        accepted_latency: encode(&stats.accepted_latency),
        change_latency: encode(&stats.change_latency),
        views,
        cpu_secs: crate::cpu::own_seconds(),
    };
    drop(stats);
    tell(&FromWorker::Done(Box::new(result)));
    Ok(())
}

/// Reads the next command; a closed stdin means the coordinator is gone.
async fn next_command(lines: &mut tokio::io::Lines<BufReader<tokio::io::Stdin>>) -> anyhow::Result<Option<ToWorker>> {
    match lines.next_line().await.context("cannot read from the coordinator")? {
        Some(line) => Ok(Some(
            serde_json::from_str(&line).context("a command from the coordinator is not valid")?,
        )),
        None => bail!("the coordinator went away"),
    }
}

/// Waits until `done` holds for the figures, re-checking whenever a client reports a change.
async fn wait_until(shared: &Shared, done: impl Fn(&client::Stats) -> bool) {
    loop {
        let notified = shared.changed.notified();
        if done(&shared.stats()) {
            return;
        }
        // A change may be signalled between the check and the wait; the timeout bounds that window.
        let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
    }
}

/// Every second: the interval's counters and latency histogram.
async fn report_progress(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let progress = {
            let mut stats = shared.stats();
            let interval = std::mem::take(&mut stats.interval);
            let latency = std::mem::take(&mut stats.interval_latency);
            Progress {
                open: stats.open,
                connected: interval[0],
                connect_failed: interval[1],
                sent: interval[2],
                delivered: interval[3],
                errors: interval[4],
                latency: encode(&latency),
            }
        };
        tell(&FromWorker::Progress(progress));
    }
}
