//! The workers' figures merged exactly (counts add, histograms merge) with what the coordinator measured around
//! them (CPU by role, the gateways' metrics), into the report.

use std::collections::BTreeMap;

use super::args::{RunArgs, Settings};
use super::phases::Phases;
use crate::counts::{Counts, FaultCounts};
use crate::cpu::PhaseCost;
use crate::latency::Latencies;
use crate::plan::WorkerResult;
use crate::report::{Connects, Drift, GatewayFigures, Messages, Quantiles, Report};
use crate::scrape;
use crate::setup::HistoryCheck;
use crate::worker::decode;

/// Every worker's figures together.
pub(crate) struct Merged {
    /// The counts, CPU and views of all workers, added up.
    pub(crate) total: WorkerResult,
    /// TCP connect to hello frame.
    pub(crate) connect_latency: Latencies,
    /// Due time to arrival.
    pub(crate) latency: Latencies,
    /// Due time to ack.
    pub(crate) ack_latency: Latencies,
    /// The send the gateway took to arrival.
    pub(crate) accepted_latency: Latencies,
    /// Due time to arrival of changes.
    pub(crate) change_latency: Latencies,
}

/// Adds up the workers' counts and merges their histograms.
pub(crate) fn merge(results: &[WorkerResult]) -> anyhow::Result<Merged> {
    let mut merged = Merged {
        total: WorkerResult::default(),
        connect_latency: Latencies::new(),
        latency: Latencies::new(),
        ack_latency: Latencies::new(),
        accepted_latency: Latencies::new(),
        change_latency: Latencies::new(),
    };
    for r in results {
        merged.connect_latency.merge(&decode(&r.connect_latency)?)?;
        merged.latency.merge(&decode(&r.latency)?)?;
        merged.ack_latency.merge(&decode(&r.ack_latency)?)?;
        merged.accepted_latency.merge(&decode(&r.accepted_latency)?)?;
        if !r.change_latency.is_empty() {
            merged.change_latency.merge(&decode(&r.change_latency)?)?;
        }
        merged.total.add(r);
    }
    Ok(merged)
}

/// Resident memory, connections and CPU seconds, summed over one scrape of every gateway.
pub(crate) fn totals(samples: &[scrape::Sample]) -> (f64, f64, f64) {
    let get = |name: &str| samples.iter().filter_map(|s| s.values.get(name)).sum::<f64>();
    (
        get("process_resident_memory_bytes"),
        get("natter_gateway_connections"),
        get("process_cpu_seconds_total"),
    )
}

/// What the run around the workers found, for the report.
pub(crate) struct Around {
    /// The command line.
    pub(crate) command: String,
    /// Gateway URLs.
    pub(crate) gateways: Vec<String>,
    /// The gateways' scrapes.
    pub(crate) figures: GatewayFigures,
    /// `--verify-history`'s findings.
    pub(crate) history: Option<HistoryCheck>,
}

/// The report, its SLO checks not yet made.
pub(crate) fn report(args: &RunArgs, settings: &Settings, phases: Phases, merged: &Merged, around: Around) -> Report {
    let Around {
        command,
        gateways,
        mut figures,
        history,
    } = around;
    let total = &merged.total;
    let Counts {
        connect,
        messages,
        mut faults,
        events,
    } = total.counts.clone();
    faults.rooms = faults.rooms.into_iter().take(FaultCounts::MAX_ROOMS).collect();
    let (connected, delivered) = (connect.connected, messages.delivered);

    // CPU per unit of work: the harness (its workers and this coordinator), the gateways (from their metrics) and
    // every watched role.
    let [at_start, at_connected, at_end] = &phases.cpu;
    let mut cpu_costs = BTreeMap::new();
    cpu_costs.insert(
        "harness".to_owned(),
        PhaseCost::of(
            0.0,
            phases.workers_cpu_connected + (at_connected.own - at_start.own),
            total.cpu_secs + (at_end.own - at_start.own),
            connected,
            delivered,
        ),
    );
    for (role, start) in &at_start.watched {
        let at = |sums: &BTreeMap<String, f64>| sums.get(role).copied().unwrap_or(*start);
        cpu_costs.insert(
            role.clone(),
            PhaseCost::of(
                *start,
                at(&at_connected.watched),
                at(&at_end.watched),
                connected,
                delivered,
            ),
        );
    }

    // Samples come per page: before connecting, once connected, during the run, at the end.
    let pages = args.common.metrics.len();
    if pages > 0 && figures.samples.len() >= 3 * pages {
        let baseline = totals(&figures.samples[..pages]);
        let at_ready = totals(&figures.samples[pages..2 * pages]);
        let end = totals(&figures.samples[figures.samples.len() - pages..]);
        figures.memory_connected_bytes = Some(at_ready.0);
        figures.memory_end_bytes = Some(end.0);
        let added = at_ready.1 - baseline.1;
        if added > 0.0 && at_ready.0 > 0.0 {
            figures.memory_per_connection_bytes = Some((at_ready.0 - baseline.0) / added);
            if end.0 > 0.0 {
                figures.memory_after_traffic_per_connection_bytes = Some((end.0 - baseline.0) / added);
            }
        }
        cpu_costs.insert(
            "gateways".to_owned(),
            PhaseCost::of(baseline.2, at_ready.2, end.2, connected, delivered),
        );
        let cpu = end.2 - at_ready.2;
        if cpu > 0.0 {
            figures.cpu_seconds = Some(cpu);
            figures.deliveries_per_cpu_second = Some(delivered as f64 / cpu);
        }
    }

    let connect_secs = phases.connect_secs;
    let send_secs = settings.duration.as_secs_f64().max(1.0);
    let peak = phases.timeline.iter().map(|s| s.delivered).max().unwrap_or(0) as f64;
    Report {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        command,
        started_unix: crate::client::unix_micros() / 1_000_000,
        machine: machine(),
        settings: args.effective(settings),
        workers: phases.results.len(),
        gateways,
        connect: Connects {
            counts: connect,
            phase_secs: connect_secs,
            per_sec: connected as f64 / connect_secs.max(0.001),
            latency: Quantiles::of(&merged.connect_latency),
        },
        messages: Messages {
            counts: messages,
            deliveries_per_sec: delivered as f64 / send_secs,
            peak_deliveries_per_sec: peak,
            latency: Quantiles::of(&merged.latency),
            change_latency: Quantiles::of(&merged.change_latency),
            ack_latency: Quantiles::of(&merged.ack_latency),
            accepted_latency: Quantiles::of(&merged.accepted_latency),
        },
        faults,
        events,
        history,
        history_reads: phases.history_reads,
        drift: Drift::of(&phases.timeline, &figures),
        gateway_metrics: figures,
        relay_deliveries_per_cpu_second: relay_rate(&cpu_costs, delivered),
        cpu: cpu_costs,
        timeline: phases.timeline,
        slo: Vec::new(),
        passed: true,
    }
}

/// Deliveries per CPU second of the whole relay (the gateways and nats-server) over the send phase, when the run
/// watched nats-server (`--watch-cpu nats=PID`).
fn relay_rate(costs: &BTreeMap<String, PhaseCost>, delivered: u64) -> Option<f64> {
    let secs = costs.get("gateways")?.send_secs + costs.get("nats")?.send_secs;
    (secs > 0.0).then(|| delivered as f64 / secs)
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
