//! The run's report: every figure and the settings that produced it, as JSON and as a summary table, and the SLO
//! checks that decide the exit code.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::counts::{ConnectCounts, EventCounts, FaultCounts, MessageCounts};
use crate::cpu::PhaseCost;
use crate::latency::Latencies;
use crate::plot::IntervalPoint;
use crate::scrape::Sample;
use crate::setup::HistoryCheck;

/// Latency quantiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Quantiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Quantiles {
    /// The quantiles of a distribution.
    pub fn of(latencies: &Latencies) -> Self {
        let ms = |q: f64| latencies.quantile(q).as_secs_f64() * 1000.0;
        if latencies.count() == 0 {
            return Self::default();
        }
        Self {
            count: latencies.count(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: ms(1.0),
        }
    }
}

/// The connect phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Connects {
    /// Clients planned, connected, and failed attempts by cause.
    #[serde(flatten)]
    pub counts: ConnectCounts,
    /// Seconds from the first attempt to the last client settling.
    pub phase_secs: f64,
    /// Connections per second over the phase.
    pub per_sec: f64,
    /// TCP connect to hello frame.
    pub latency: Quantiles,
}

/// Messages and their delivery.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Messages {
    /// Sent, acknowledged, sent again, delivered and expected.
    #[serde(flatten)]
    pub counts: MessageCounts,
    /// Mean deliveries per second over the send phase.
    pub deliveries_per_sec: f64,
    /// Busiest second's deliveries.
    pub peak_deliveries_per_sec: f64,
    /// Due time to arrival, every receiver.
    pub latency: Quantiles,
    /// Due time to arrival of changes to messages (`--changes`), every receiver.
    pub change_latency: Quantiles,
    /// Due time to ack, every sender.
    pub ack_latency: Quantiles,
    /// The send the gateway took to arrival, every receiver: the system's own delay, without the pauses refused
    /// sends waited before they were sent again (equal to `latency` when nothing was refused).
    pub accepted_latency: Quantiles,
}

/// What the gateways' metrics said.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GatewayFigures {
    /// Every scrape: before connecting, once connected, during the run (soak) and at the end.
    pub samples: Vec<Sample>,
    /// Gateway resident memory added per connection, between the scrape before connecting and the one once
    /// connected (all gateways summed).
    pub memory_per_connection_bytes: Option<f64>,
    /// Gateway resident memory added per connection from the scrape before connecting to the one at the end, after
    /// the traffic (all gateways summed): what queues, room state and the allocator kept of it.
    #[serde(default)]
    pub memory_after_traffic_per_connection_bytes: Option<f64>,
    /// Gateway resident memory once connected, all gateways summed.
    pub memory_connected_bytes: Option<f64>,
    /// Gateway resident memory at the end, all gateways summed (a soak compares it with the one above).
    pub memory_end_bytes: Option<f64>,
    /// CPU seconds (user + system, from `/proc`) the gateways spent from the scrape once connected to the one at
    /// the end (the send phase and the drain), all gateways summed.
    pub cpu_seconds: Option<f64>,
    /// Deliveries per gateway CPU second over that span.
    pub deliveries_per_cpu_second: Option<f64>,
}

/// How latency and gateway memory moved between the start and the end of the send phase (what a soak watches).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Drift {
    /// Mean of the per-second p99 over the first tenth of the seconds with deliveries (ms).
    pub p99_first_ms: f64,
    /// The same over the last tenth (ms).
    pub p99_last_ms: f64,
    /// Gateway resident memory once connected, all gateways (bytes).
    pub memory_start_bytes: Option<f64>,
    /// Gateway resident memory at the end (bytes).
    pub memory_end_bytes: Option<f64>,
}

impl Drift {
    /// The drift over a timeline and the gateway figures.
    pub fn of(timeline: &[Second], gateways: &GatewayFigures) -> Self {
        let busy: Vec<&Second> = timeline.iter().filter(|s| s.delivered > 0).collect();
        let tenth = (busy.len() / 10).max(1);
        let mean = |part: &[&Second]| {
            if part.is_empty() {
                0.0
            } else {
                part.iter().map(|s| s.p99_ms).sum::<f64>() / part.len() as f64
            }
        };
        Self {
            p99_first_ms: mean(&busy[..tenth.min(busy.len())]),
            p99_last_ms: mean(&busy[busy.len().saturating_sub(tenth)..]),
            memory_start_bytes: gateways.memory_connected_bytes,
            memory_end_bytes: gateways.memory_end_bytes,
        }
    }
}

/// History pages read during the send phase (`--history-readers`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct HistoryReads {
    /// Readers.
    pub readers: usize,
    /// Pages the API answered.
    pub pages: u64,
    /// Reads that failed (an error status, no answer, a page that did not parse).
    pub errors: u64,
    /// From when each read was due to its page parsed.
    pub latency: Quantiles,
}

/// One SLO bound and how the run did against it.
#[derive(Debug, Clone, Serialize)]
pub struct SloCheck {
    /// The flag that set it.
    pub flag: String,
    /// The bound.
    pub bound: f64,
    /// The run's figure.
    pub actual: f64,
    /// Whether the run met it.
    pub passed: bool,
}

/// One second of the run, all workers merged.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Second {
    /// Seconds from the first connection attempt to the end of this second.
    pub t_secs: f64,
    /// Median end-to-end latency of the second (ms).
    pub p50_ms: f64,
    /// 99th percentile (ms).
    pub p99_ms: f64,
    /// 99.9th percentile (ms).
    pub p999_ms: f64,
    /// Largest (ms).
    pub max_ms: f64,
    /// Open connections at the end of the second.
    pub open: u64,
    /// Connections opened.
    pub connected: u64,
    /// Connection attempts failed.
    pub connect_failed: u64,
    /// Messages sent.
    pub sent: u64,
    /// Messages delivered (the latency samples of the second).
    pub delivered: u64,
    /// Errors.
    pub errors: u64,
}

impl Second {
    /// The second as a point of the latency-over-time plot.
    pub fn point(&self) -> IntervalPoint {
        IntervalPoint {
            t_secs: self.t_secs,
            p50_ms: self.p50_ms,
            p99_ms: self.p99_ms,
            p999_ms: self.p999_ms,
            max_ms: self.max_ms,
            count: self.delivered,
        }
    }
}

/// Everything a run found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The harness version.
    pub version: String,
    /// The command line.
    pub command: String,
    /// When the run started (Unix seconds).
    pub started_unix: u64,
    /// The machine the coordinator ran on.
    pub machine: BTreeMap<String, String>,
    /// The run's settings, after defaults.
    pub settings: serde_json::Value,
    /// Worker processes.
    pub workers: usize,
    /// Gateway URLs.
    pub gateways: Vec<String>,
    /// Connections.
    pub connect: Connects,
    /// Messages.
    pub messages: Messages,
    /// Faults.
    pub faults: FaultCounts,
    /// Reconnections, stalls, error frames and closes (at the top level of the JSON).
    #[serde(flatten)]
    pub events: EventCounts,
    /// `--verify-history`'s findings.
    pub history: Option<HistoryCheck>,
    /// `--history-readers`' figures.
    #[serde(default)]
    pub history_reads: Option<HistoryReads>,
    /// Gateway-side figures.
    pub gateway_metrics: GatewayFigures,
    /// CPU by role (`harness`: the workers and the coordinator; `gateways`: from their metrics; any role watched
    /// with `--watch-cpu`), per phase and per unit of work.
    #[serde(default)]
    pub cpu: BTreeMap<String, PhaseCost>,
    /// Deliveries per CPU second of the gateways and nats-server together over the send phase (with
    /// `--watch-cpu nats=PID`).
    #[serde(default)]
    pub relay_deliveries_per_cpu_second: Option<f64>,
    /// Latency and memory at the start and the end of the send phase.
    pub drift: Drift,
    /// Per second, from the first connection to the end.
    pub timeline: Vec<Second>,
    /// SLO checks.
    pub slo: Vec<SloCheck>,
    /// Whether every SLO check passed.
    pub passed: bool,
}

impl Report {
    /// The summary table printed at the end of a run.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let c = &self.connect;
        let (cc, m, mc) = (&c.counts, &self.messages, &self.messages.counts);
        let (f, e) = (&self.faults, &self.events);
        let row = |out: &mut String, name: &str, value: String| {
            let _ = writeln!(out, "  {name:<22} {value}");
        };
        let _ = writeln!(
            out,
            "natter-loadtest: {} workers, {} gateways",
            self.workers,
            self.gateways.len()
        );
        row(
            &mut out,
            "connected",
            format!(
                "{} of {} ({:.0}/s over {:.1}s)",
                cc.connected, cc.clients, c.per_sec, c.phase_secs
            ),
        );
        row(&mut out, "connect latency", fmt_q(&c.latency));
        if !cc.failures.is_empty() {
            row(&mut out, "connect failures", fmt_map(&cc.failures));
        }
        row(
            &mut out,
            "messages",
            format!("{} sent, {} acked, {} unacked", mc.sent, mc.acked, mc.unacked),
        );
        if !mc.resent.is_empty() {
            row(&mut out, "sent again", fmt_map(&mc.resent));
        }
        row(
            &mut out,
            "deliveries",
            format!(
                "{} of {} expected ({:.0}/s mean, {:.0}/s peak)",
                mc.delivered, mc.expected, m.deliveries_per_sec, m.peak_deliveries_per_sec
            ),
        );
        row(&mut out, "end-to-end latency", fmt_q(&m.latency));
        row(&mut out, "ack latency", fmt_q(&m.ack_latency));
        row(&mut out, "after acceptance", fmt_q(&m.accepted_latency));
        if m.change_latency.count > 0 {
            row(&mut out, "changes' latency", fmt_q(&m.change_latency));
        }
        row(
            &mut out,
            "faults",
            format!(
                "lost {}, duplicates {}, reordered {}, unrecovered {}",
                f.lost, f.duplicates, f.reordered, f.unrecovered
            ),
        );
        row(&mut out, "reconnects", e.reconnects.to_string());
        if e.stalls > 0 {
            row(&mut out, "slow readers", format!("{} stopped reading", e.stalls));
        }
        if !e.error_codes.is_empty() {
            row(&mut out, "error frames", fmt_map(&e.error_codes));
        }
        if !e.close_codes.is_empty() {
            row(&mut out, "closes", fmt_map(&e.close_codes));
        }
        if let Some(h) = &self.history {
            row(
                &mut out,
                "history",
                format!(
                    "{} checked, {} missing, {} duplicated; {} of {} receivers' views differ from it, {} not comparable \
                     (checked for {:.1}s)",
                    h.checked,
                    h.missing,
                    h.duplicated,
                    h.views_diverged,
                    h.views_compared,
                    h.views_incomplete,
                    h.waited_secs
                ),
            );
        }
        if let Some(h) = &self.history_reads {
            row(
                &mut out,
                "history reads",
                format!("{} pages by {} readers, {} failed", h.pages, h.readers, h.errors),
            );
            row(&mut out, "history page latency", fmt_q(&h.latency));
        }
        let g = &self.gateway_metrics;
        if let Some(per) = g.memory_per_connection_bytes {
            let after = g
                .memory_after_traffic_per_connection_bytes
                .filter(|_| self.messages.counts.delivered > 0)
                .map(|after| format!(", {:.1} KiB after the traffic", after / 1024.0))
                .unwrap_or_default();
            row(
                &mut out,
                "gateway memory",
                format!("{:.1} KiB per connection{after}", per / 1024.0),
            );
        }
        if let (Some(cpu), Some(per)) = (g.cpu_seconds, g.deliveries_per_cpu_second) {
            row(
                &mut out,
                "gateway CPU",
                format!("{cpu:.1} s while sending, {per:.0} deliveries per CPU second"),
            );
        }
        let per_unit = |pick: fn(&PhaseCost) -> Option<f64>, digits: usize| {
            self.cpu
                .iter()
                .filter_map(|(role, cost)| pick(cost).map(|us| format!("{role} {us:.digits$} µs")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let per_connection = per_unit(|c| c.per_connection_us, 0);
        if !per_connection.is_empty() {
            row(&mut out, "cpu per connection", per_connection);
        }
        let per_delivery = per_unit(|c| c.per_delivery_us, 2);
        if !per_delivery.is_empty() {
            row(&mut out, "cpu per delivery", per_delivery);
        }
        if let Some(rate) = self.relay_deliveries_per_cpu_second {
            row(
                &mut out,
                "relay",
                format!("{rate:.0} deliveries per CPU second of the gateways and nats-server"),
            );
        }
        if let (Some(a), Some(b)) = (g.memory_connected_bytes, g.memory_end_bytes) {
            row(
                &mut out,
                "gateway RSS",
                format!(
                    "{:.0} MiB connected, {:.0} MiB at the end",
                    a / 1048576.0,
                    b / 1048576.0
                ),
            );
        }
        if self.drift.p99_first_ms > 0.0 {
            row(
                &mut out,
                "drift",
                format!(
                    "p99 {:.2} ms in the first tenth, {:.2} ms in the last",
                    self.drift.p99_first_ms, self.drift.p99_last_ms
                ),
            );
        }
        for check in &self.slo {
            row(
                &mut out,
                &format!("SLO {}", check.flag),
                format!(
                    "{} (bound {}, actual {:.3})",
                    if check.passed { "met" } else { "MISSED" },
                    check.bound,
                    check.actual
                ),
            );
        }
        let _ = writeln!(out, "{}", if self.passed { "PASS" } else { "FAIL" });
        out
    }
}

fn fmt_q(q: &Quantiles) -> String {
    if q.count == 0 {
        return "no samples".into();
    }
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms ({} samples)",
        q.p50_ms, q.p99_ms, q.p999_ms, q.max_ms, q.count
    )
}

fn fmt_map(map: &BTreeMap<String, u64>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
