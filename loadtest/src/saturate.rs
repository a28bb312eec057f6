//! `--scenario saturate`: fan-out steps at a rising rate until one breaks the SLOs, reporting the highest rate
//! that held.
//!
//! Each step is a whole fan-out run (fresh users and rooms, everyone connected before the first send, the same
//! accounting and the same loss rules), so a step's figures are exactly those of `--scenario fanout` at that
//! rate. A step holds when no acknowledged message was lost, duplicated or reordered, every send was
//! acknowledged, and the end-to-end p99 is within `--max-p99-ms` (default 250 ms).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Context;
use serde::Serialize;

use crate::report::Report;
use crate::run::{RunArgs, Scenario, run as run_fanout};

/// The p99 bound of a step when `--max-p99-ms` is not given.
const DEFAULT_MAX_P99_MS: f64 = 250.0;

/// One step's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Messages per second per sender.
    pub rate_per_sender: f64,
    /// Deliveries per second the senders asked for (every send, times its room's receivers).
    pub offered_per_sec: f64,
    /// Deliveries per second that arrived.
    pub delivered_per_sec: f64,
    /// End-to-end latency, due time to arrival (ms).
    pub p50_ms: f64,
    /// End-to-end p99 (ms).
    pub p99_ms: f64,
    /// Due time to ack, p99 (ms).
    pub ack_p99_ms: f64,
    /// The send the gateway took to arrival, p99 (ms): the delay of what the gateway acknowledged, without the
    /// pauses of refused sends.
    pub accepted_p99_ms: f64,
    /// Sends.
    pub sent: u64,
    /// Sends never acknowledged (refusals included).
    pub unacked: u64,
    /// Deliveries of acknowledged messages that never arrived, or arrived twice or out of order.
    pub faults: u64,
    /// Error frames by code (`overloaded`: sends the gateway shed).
    pub error_codes: BTreeMap<String, u64>,
    /// Closes by code (`4008`: slow consumers shed).
    pub close_codes: BTreeMap<String, u64>,
    /// Gateway CPU seconds while sending, all gateways.
    pub gateway_cpu_seconds: Option<f64>,
    /// Deliveries per gateway CPU second.
    pub deliveries_per_gateway_cpu_second: Option<f64>,
    /// Gateway memory added per connection (meaningful for the first step, on fresh gateways).
    pub memory_per_connection_bytes: Option<f64>,
    /// Whether every SLO held.
    pub held: bool,
}

impl Step {
    fn of(rate: f64, report: &Report, max_p99_ms: f64, max_loss: u64) -> Self {
        let m = &report.messages;
        let f = &report.faults;
        let secs = report
            .settings
            .get("duration")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(1.0)
            .max(1.0);
        // Receivers per message, from what the acknowledged ones were owed.
        let fan = m.expected as f64 / m.acked.max(1) as f64;
        let faults = f.lost + f.duplicates + f.reordered + f.unrecovered;
        let g = &report.gateway_metrics;
        Step {
            rate_per_sender: rate,
            offered_per_sec: m.sent as f64 * fan / secs,
            delivered_per_sec: m.deliveries_per_sec,
            p50_ms: m.latency.p50_ms,
            p99_ms: m.latency.p99_ms,
            ack_p99_ms: m.ack_latency.p99_ms,
            accepted_p99_ms: m.accepted_latency.p99_ms,
            sent: m.sent,
            unacked: m.unacked,
            faults,
            error_codes: report.error_codes.clone(),
            close_codes: report.close_codes.clone(),
            gateway_cpu_seconds: g.cpu_seconds,
            deliveries_per_gateway_cpu_second: g.deliveries_per_cpu_second,
            memory_per_connection_bytes: g.memory_per_connection_bytes,
            held: m.latency.p99_ms <= max_p99_ms
                && faults + m.unacked <= max_loss
                && report.connect.connected == report.connect.clients
                && m.sent > 0,
        }
    }
}

/// A saturate run's report.
#[derive(Debug, Clone, Serialize)]
pub struct SaturateReport {
    /// The command line.
    pub command: String,
    /// The machine, as the first step saw it.
    pub machine: BTreeMap<String, String>,
    /// Users, rooms, senders per room, seconds per step.
    pub settings: serde_json::Value,
    /// The p99 bound a step had to meet (ms).
    pub max_p99_ms: f64,
    /// Every step, in order.
    pub steps: Vec<Step>,
    /// The step with the highest rate that held.
    pub highest_held: Option<Step>,
    /// The step at twice that rate (`--overload`).
    pub overload: Option<Step>,
}

impl SaturateReport {
    /// The table printed at the end.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "natter-loadtest saturate: steps until p99 > {} ms or any loss",
            self.max_p99_ms
        );
        let _ = writeln!(
            out,
            "  {:>8} {:>10} {:>10} {:>9} {:>9} {:>9} {:>8} {:>7} {:>9} {:>11}  held",
            "rate/s", "offered/s", "deliv/s", "p50 ms", "p99 ms", "taken p99", "unacked", "faults", "shed", "per CPU-s"
        );
        let rows = self
            .steps
            .iter()
            .map(|s| ("", s))
            .chain(self.overload.iter().map(|s| ("overload", s)));
        for (label, s) in rows {
            let shed = s
                .error_codes
                .get(natter_proto::error::ErrorCode::Overloaded.as_str())
                .copied()
                .unwrap_or(0)
                + s.close_codes.get("4008").copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "  {:>8.2} {:>10.0} {:>10.0} {:>9.1} {:>9.1} {:>9.1} {:>8} {:>7} {:>9} {:>11}  {}{}",
                s.rate_per_sender,
                s.offered_per_sec,
                s.delivered_per_sec,
                s.p50_ms,
                s.p99_ms,
                s.accepted_p99_ms,
                s.unacked,
                s.faults,
                shed,
                s.deliveries_per_gateway_cpu_second
                    .map_or("-".into(), |v| format!("{v:.0}")),
                if s.held { "yes" } else { "no" },
                if label.is_empty() {
                    String::new()
                } else {
                    format!(" ({label})")
                },
            );
        }
        match &self.highest_held {
            Some(s) => {
                let _ = writeln!(
                    out,
                    "  highest rate that held: {:.0} deliveries/s ({:.2} messages/s per sender), p99 {:.1} ms{}",
                    s.offered_per_sec,
                    s.rate_per_sender,
                    s.p99_ms,
                    s.deliveries_per_gateway_cpu_second
                        .map_or(String::new(), |v| format!(", {v:.0} deliveries per gateway CPU second")),
                );
            }
            None => {
                let _ = writeln!(out, "  no step held: start lower (--rate)");
            }
        }
        if let Some(per) = self.steps.first().and_then(|s| s.memory_per_connection_bytes) {
            let _ = writeln!(
                out,
                "  gateway memory {:.1} KiB per joined connection (first step)",
                per / 1024.0
            );
        }
        out
    }
}

/// Runs the steps. Passed: at least one step held.
pub async fn run(args: RunArgs, command: String) -> anyhow::Result<(SaturateReport, bool)> {
    if !(args.step_factor > 1.0 && args.step_factor <= 4.0) || args.max_steps == 0 || args.max_steps > 50 {
        return Err(
            crate::run::UsageError("--step-factor must be above 1 and at most 4, --max-steps 1 to 50".into()).into(),
        );
    }
    let max_p99_ms = args.max_p99_ms.unwrap_or(DEFAULT_MAX_P99_MS);
    let max_loss = args.max_loss.unwrap_or(0);
    let step_args = |rate: f64| {
        let mut a = args.clone();
        a.scenario = Scenario::Fanout;
        a.rate = rate;
        a.report = None;
        a.plot = None;
        a.quiet = true;
        a.max_p99_ms = Some(max_p99_ms);
        a.max_loss = Some(max_loss);
        a
    };
    let mut steps: Vec<Step> = Vec::new();
    let mut machine = BTreeMap::new();
    let mut settings = serde_json::Value::Null;
    let mut rate = args.rate;
    for i in 0..args.max_steps {
        eprintln!(
            "natter-loadtest: saturate step {}: {rate:.2} messages/s per sender",
            i + 1
        );
        let (report, _) = run_fanout(step_args(rate), command.clone())
            .await
            .with_context(|| format!("saturate step {} at {rate:.2}/s", i + 1))?;
        if i == 0 {
            machine = report.machine.clone();
            settings = report.settings.clone();
        }
        let step = Step::of(rate, &report, max_p99_ms, max_loss);
        eprintln!(
            "natter-loadtest: step {}: {:.0} deliveries/s offered, p99 {:.1} ms, unacked {}, faults {}: {}",
            i + 1,
            step.offered_per_sec,
            step.p99_ms,
            step.unacked,
            step.faults,
            if step.held { "held" } else { "broke" }
        );
        let held = step.held;
        steps.push(step);
        if !held {
            break;
        }
        rate *= args.step_factor;
    }
    let highest_held = steps.iter().rfind(|s| s.held).cloned();
    let mut overload = None;
    if args.overload
        && let Some(best) = &highest_held
    {
        let rate = best.rate_per_sender * 2.0;
        eprintln!("natter-loadtest: overload step: {rate:.2} messages/s per sender (twice the highest that held)");
        let (report, _) = run_fanout(step_args(rate), command.clone())
            .await
            .context("the overload step")?;
        overload = Some(Step::of(rate, &report, max_p99_ms, max_loss));
    }
    let passed = highest_held.is_some();
    let report = SaturateReport {
        command,
        machine,
        settings,
        max_p99_ms,
        steps,
        highest_held,
        overload,
    };
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    Ok((report, passed))
}
