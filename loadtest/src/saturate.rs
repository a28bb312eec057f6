//! `--scenario saturate`: fan-out steps at a rising rate until one breaks the SLOs, reporting the highest rate
//! that held; and the step machinery ([`Ladder`], [`climb`]) that `--scenario capacity` shares.
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
use crate::run::{RunArgs, Scenario, UsageError, run as run_fanout};

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
    /// A step's figures at `rate` messages/s per sender, from its fan-out run's report; it holds when it met the
    /// bounds, every user connected and something was sent.
    pub fn of(rate: f64, report: &Report, bounds: Bounds) -> Self {
        let Bounds { max_p99_ms, max_loss } = bounds;
        let (m, mc) = (&report.messages, &report.messages.counts);
        let secs = send_secs(report);
        // Receivers per message, from what the acknowledged ones were owed.
        let fan = mc.expected as f64 / mc.acked.max(1) as f64;
        let faults = report.faults.total();
        let g = &report.gateway_metrics;
        Step {
            rate_per_sender: rate,
            offered_per_sec: mc.sent as f64 * fan / secs,
            delivered_per_sec: m.deliveries_per_sec,
            p50_ms: m.latency.p50_ms,
            p99_ms: m.latency.p99_ms,
            ack_p99_ms: m.ack_latency.p99_ms,
            accepted_p99_ms: m.accepted_latency.p99_ms,
            sent: mc.sent,
            unacked: mc.unacked,
            faults,
            error_codes: report.events.error_codes.clone(),
            close_codes: report.events.close_codes.clone(),
            gateway_cpu_seconds: g.cpu_seconds,
            deliveries_per_gateway_cpu_second: g.deliveries_per_cpu_second,
            memory_per_connection_bytes: g.memory_per_connection_bytes,
            held: m.latency.p99_ms <= max_p99_ms
                && faults + mc.unacked <= max_loss
                && report.connect.counts.connected == report.connect.counts.clients
                && mc.sent > 0,
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

/// Seconds of a run's send phase (its `--duration`, at least 1): what its rates are per.
pub fn send_secs(report: &Report) -> f64 {
    report
        .settings
        .get("duration")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(1.0)
        .max(1.0)
}

/// The bounds a step must meet to hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// End-to-end p99 (ms): `--max-p99-ms`, default 250.
    pub max_p99_ms: f64,
    /// Faults and sends never acknowledged: `--max-loss`, default 0.
    pub max_loss: u64,
}

impl Bounds {
    /// The bounds the flags set.
    pub fn of(args: &RunArgs) -> Self {
        Self {
            max_p99_ms: args.slo.max_p99_ms.unwrap_or(DEFAULT_MAX_P99_MS),
            max_loss: args.slo.max_loss.unwrap_or(0),
        }
    }
}

/// Checks the flags every search over steps shares.
pub fn check_steps(args: &RunArgs) -> Result<(), UsageError> {
    let steps = &args.steps;
    if !(steps.step_factor > 1.0 && steps.step_factor <= 4.0) || steps.max_steps == 0 || steps.max_steps > 50 {
        return Err(UsageError(
            "--step-factor must be above 1 and at most 4, --max-steps 1 to 50".into(),
        ));
    }
    Ok(())
}

/// The flags of one step: a quiet fan-out run held to `bounds`, writing no report or plots of its own.
pub fn step_args(args: &RunArgs, bounds: Bounds) -> RunArgs {
    let mut a = args.clone();
    a.common.scenario = Scenario::Fanout;
    a.output.report = None;
    a.output.plot = None;
    a.output.quiet = true;
    a.slo.max_p99_ms = Some(bounds.max_p99_ms);
    a.slo.max_loss = Some(bounds.max_loss);
    a
}

/// A search over steps of a rising value (a rate, a user count): what a step at a value runs, and what it found.
pub trait Ladder {
    /// A step's figures.
    type Step;

    /// The flags of the step at `value`; `Err` says why no step can run there, which ends the search.
    fn step_args(&self, value: f64) -> Result<RunArgs, String>;

    /// The line announcing step `number` at `value`, and the context of its error if it fails.
    fn announce(&self, number: usize, value: f64) -> (String, String);

    /// The step's figures, from its fan-out run's report.
    fn step(&self, value: f64, report: &Report) -> Self::Step;

    /// The line saying how step `number` went, and, when the search stops there, why.
    fn judge(&self, number: usize, step: &Self::Step) -> (String, Option<String>);
}

/// What a search over steps found.
#[derive(Debug, Clone)]
pub struct Climb<S> {
    /// Every step, in order.
    pub steps: Vec<S>,
    /// The machine, as the first step saw it.
    pub machine: BTreeMap<String, String>,
    /// The first step's settings.
    pub settings: serde_json::Value,
    /// Why the search stopped.
    pub ended: String,
}

/// Runs steps from `start`, each value the last one's times `factor`, until one stops the search or
/// `max_steps` have run. Each step is a whole fan-out run.
pub async fn climb<L: Ladder>(
    ladder: &L,
    start: f64,
    factor: f64,
    max_steps: usize,
    command: &str,
) -> anyhow::Result<Climb<L::Step>> {
    let mut climb = Climb {
        steps: Vec::new(),
        machine: BTreeMap::new(),
        settings: serde_json::Value::Null,
        ended: format!("--max-steps {max_steps} ran"),
    };
    let mut value = start;
    for i in 0..max_steps {
        let args = match ladder.step_args(value) {
            Ok(args) => args,
            Err(why) => {
                eprintln!("natter-loadtest: {why}; stopping");
                climb.ended = why;
                break;
            }
        };
        let (line, context) = ladder.announce(i + 1, value);
        eprintln!("natter-loadtest: {line}");
        let (report, _) = run_fanout(args, command.to_owned()).await.context(context)?;
        if i == 0 {
            climb.machine = report.machine.clone();
            climb.settings = report.settings.clone();
        }
        let step = ladder.step(value, &report);
        let (line, stop) = ladder.judge(i + 1, &step);
        eprintln!("natter-loadtest: {line}");
        climb.steps.push(step);
        if let Some(why) = stop {
            climb.ended = why;
            break;
        }
        value *= factor;
    }
    Ok(climb)
}

/// Saturate's steps: a rising rate per sender.
struct Rates<'a> {
    args: &'a RunArgs,
    bounds: Bounds,
}

impl Ladder for Rates<'_> {
    type Step = Step;

    fn step_args(&self, rate: f64) -> Result<RunArgs, String> {
        let mut a = step_args(self.args, self.bounds);
        a.load.rate = rate;
        Ok(a)
    }

    fn announce(&self, number: usize, rate: f64) -> (String, String) {
        (
            format!("saturate step {number}: {rate:.2} messages/s per sender"),
            format!("saturate step {number} at {rate:.2}/s"),
        )
    }

    fn step(&self, rate: f64, report: &Report) -> Step {
        Step::of(rate, report, self.bounds)
    }

    fn judge(&self, number: usize, step: &Step) -> (String, Option<String>) {
        let line = format!(
            "step {number}: {:.0} deliveries/s offered, p99 {:.1} ms, unacked {}, faults {}: {}",
            step.offered_per_sec,
            step.p99_ms,
            step.unacked,
            step.faults,
            if step.held { "held" } else { "broke" }
        );
        (line, (!step.held).then(|| format!("step {number} broke the SLOs")))
    }
}

/// Runs the steps. Passed: at least one step held.
pub async fn run(args: RunArgs, command: String) -> anyhow::Result<(SaturateReport, bool)> {
    check_steps(&args)?;
    let bounds = Bounds::of(&args);
    let rates = Rates { args: &args, bounds };
    let Climb {
        steps,
        machine,
        settings,
        ..
    } = climb(
        &rates,
        args.load.rate,
        args.steps.step_factor,
        args.steps.max_steps,
        &command,
    )
    .await?;
    let highest_held = steps.iter().rfind(|s| s.held).cloned();
    let mut overload = None;
    if args.steps.overload
        && let Some(best) = &highest_held
    {
        let rate = best.rate_per_sender * 2.0;
        eprintln!("natter-loadtest: overload step: {rate:.2} messages/s per sender (twice the highest that held)");
        let step_args = rates.step_args(rate).map_err(UsageError)?;
        let (report, _) = run_fanout(step_args, command.clone())
            .await
            .context("the overload step")?;
        overload = Some(Step::of(rate, &report, bounds));
    }
    let passed = highest_held.is_some();
    let report = SaturateReport {
        command,
        machine,
        settings,
        max_p99_ms: bounds.max_p99_ms,
        steps,
        highest_held,
        overload,
    };
    if let Some(path) = &args.output.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    Ok((report, passed))
}
