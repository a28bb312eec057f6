//! `--scenario capacity`: fan-out steps on one worker process at a rising user count, until a step breaks the SLOs
//! or the worker uses most of a core, reporting the most users one worker holds at the rate and what each costs
//! the harness in CPU.
//!
//! Each step is a whole fan-out run on one worker (`--workers 1`), with fresh users and rooms of the size the
//! flags give (`--users` over `--rooms`, 100 by default), one sender per room at `--rate`. A step holds as a
//! saturate step does (no loss, every send acknowledged, every user connected, p99 within `--max-p99-ms`); the
//! search also stops at a step whose harness spent [`SATURATED_CPU_SHARE`] CPU-seconds or more per second of
//! sending: one worker is one thread, so it cannot take more than a core.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Context;
use serde::Serialize;

use crate::report::Report;
use crate::run::{RunArgs, UsageError, clients_per_worker};
use crate::saturate::{Bounds, Climb, Ladder, Step, check_steps, climb, send_secs, step_args};

/// CPU-seconds per second of sending at which the worker counts as saturated.
pub const SATURATED_CPU_SHARE: f64 = 0.9;

/// One step's figures.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityStep {
    /// Users, all on the one worker.
    pub users: usize,
    /// Rooms they were spread over.
    pub rooms: usize,
    /// The fan-out figures, as a saturate step reports them.
    #[serde(flatten)]
    pub fanout: Step,
    /// The harness's connect-phase CPU per connection made (µs).
    pub cpu_per_connection_us: Option<f64>,
    /// The harness's send-phase CPU per delivery (µs).
    pub cpu_per_delivery_us: Option<f64>,
    /// The harness's CPU-seconds per second of sending: the worker's share of a core (the coordinator's small
    /// share included).
    pub cpu_share: f64,
    /// Whether the worker reached [`SATURATED_CPU_SHARE`].
    pub saturated: bool,
}

impl CapacityStep {
    /// The harness's CPU per user per second of sending (µs).
    pub fn cpu_per_user_us(&self) -> f64 {
        self.cpu_share * 1e6 / self.users.max(1) as f64
    }
}

/// A capacity run's report.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityReport {
    /// The command line.
    pub command: String,
    /// The machine, as the first step saw it.
    pub machine: BTreeMap<String, String>,
    /// The first step's settings.
    pub settings: serde_json::Value,
    /// Messages per second per sender.
    pub rate_per_sender: f64,
    /// Users per room.
    pub room_size: usize,
    /// The p99 bound a step had to meet (ms).
    pub max_p99_ms: f64,
    /// The CPU share at which the worker counts as saturated.
    pub max_cpu_share: f64,
    /// Every step, in order.
    pub steps: Vec<CapacityStep>,
    /// The step with the most users that held.
    pub most_held: Option<CapacityStep>,
    /// The harness's CPU per user per second of sending at that step (µs).
    pub cpu_per_user_us: Option<f64>,
    /// Why the search stopped.
    pub ended: String,
}

impl CapacityReport {
    /// The table printed at the end.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "natter-loadtest capacity: one worker, {:.2} messages/s per sender, rooms of {}; steps until p99 > {} ms, \
             any loss or {} of a core",
            self.rate_per_sender, self.room_size, self.max_p99_ms, self.max_cpu_share
        );
        let _ = writeln!(
            out,
            "  {:>8} {:>6} {:>10} {:>9} {:>8} {:>10} {:>9} {:>6}  held",
            "users", "rooms", "deliv/s", "p99 ms", "loss", "µs/deliv", "µs/conn", "cores"
        );
        let us = |v: Option<f64>, digits: usize| v.map_or("-".into(), |v| format!("{v:.digits$}"));
        for s in &self.steps {
            let _ = writeln!(
                out,
                "  {:>8} {:>6} {:>10.0} {:>9.1} {:>8} {:>10} {:>9} {:>6.2}  {}{}",
                s.users,
                s.rooms,
                s.fanout.delivered_per_sec,
                s.fanout.p99_ms,
                s.fanout.faults + s.fanout.unacked,
                us(s.cpu_per_delivery_us, 2),
                us(s.cpu_per_connection_us, 0),
                s.cpu_share,
                if s.fanout.held { "yes" } else { "no" },
                if s.saturated { " (saturated)" } else { "" },
            );
        }
        match &self.most_held {
            Some(s) => {
                let _ = writeln!(
                    out,
                    "  most users that held: {} ({:.0} deliveries/s, p99 {:.1} ms), {:.2} of a core: {:.1} µs of \
                     harness CPU per user per second",
                    s.users,
                    s.fanout.delivered_per_sec,
                    s.fanout.p99_ms,
                    s.cpu_share,
                    s.cpu_per_user_us()
                );
            }
            None => {
                let _ = writeln!(out, "  no step held: start lower (--users)");
            }
        }
        let _ = writeln!(out, "  stopped: {}", self.ended);
        out
    }
}

/// Capacity's steps: a rising user count on one worker.
struct Users<'a> {
    args: &'a RunArgs,
    bounds: Bounds,
    room_size: usize,
}

impl Ladder for Users<'_> {
    type Step = CapacityStep;

    fn step_args(&self, value: f64) -> Result<RunArgs, String> {
        let users = value.round() as usize;
        let most = clients_per_worker();
        if users > most {
            return Err(format!("{users} users are more than one worker may hold here ({most})"));
        }
        let mut a = step_args(self.args, self.bounds);
        a.common.workers = Some(1);
        a.load.users = users;
        a.load.rooms = users.div_ceil(self.room_size).max(1);
        Ok(a)
    }

    fn announce(&self, number: usize, value: f64) -> (String, String) {
        let users = value.round() as usize;
        (
            format!(
                "capacity step {number}: {users} users in rooms of {}, {:.2} messages/s per sender",
                self.room_size, self.args.load.rate
            ),
            format!("capacity step {number} with {users} users"),
        )
    }

    fn step(&self, value: f64, report: &Report) -> CapacityStep {
        let harness = report.cpu.get("harness");
        let cpu_share = harness.map_or(0.0, |cost| cost.send_secs / send_secs(report));
        let users = value.round() as usize;
        CapacityStep {
            users,
            rooms: users.div_ceil(self.room_size).max(1),
            fanout: Step::of(self.args.load.rate, report, self.bounds),
            cpu_per_connection_us: harness.and_then(|cost| cost.per_connection_us),
            cpu_per_delivery_us: harness.and_then(|cost| cost.per_delivery_us),
            cpu_share,
            saturated: cpu_share >= SATURATED_CPU_SHARE,
        }
    }

    fn judge(&self, number: usize, step: &CapacityStep) -> (String, Option<String>) {
        let line = format!(
            "step {number}: {} users, {:.0} deliveries/s, p99 {:.1} ms, unacked {}, faults {}, {:.2} of a core: {}",
            step.users,
            step.fanout.delivered_per_sec,
            step.fanout.p99_ms,
            step.fanout.unacked,
            step.fanout.faults,
            step.cpu_share,
            match (step.fanout.held, step.saturated) {
                (true, false) => "held",
                (true, true) => "held, saturated",
                (false, _) => "broke",
            }
        );
        let stop = if !step.fanout.held {
            Some(format!("step {number} broke the SLOs"))
        } else if step.saturated {
            Some(format!(
                "step {number} used {:.2} of a core, at least {SATURATED_CPU_SHARE}",
                step.cpu_share
            ))
        } else {
            None
        };
        (line, stop)
    }
}

/// Runs the steps. Passed: at least one step held.
pub async fn run(args: RunArgs, command: String) -> anyhow::Result<(CapacityReport, bool)> {
    check_steps(&args)?;
    if args.common.workers.is_some_and(|w| w != 1) {
        return Err(UsageError("capacity measures one worker: leave --workers out or give 1".into()).into());
    }
    if args.steps.overload {
        return Err(UsageError("--overload is saturate's".into()).into());
    }
    if args.load.users == 0 || args.load.rooms == 0 || args.load.rooms > args.load.users {
        return Err(UsageError("--users and --rooms must be at least 1, with no more rooms than users".into()).into());
    }
    let bounds = Bounds::of(&args);
    let room_size = args.load.users / args.load.rooms;
    let users = Users {
        args: &args,
        bounds,
        room_size,
    };
    let Climb {
        steps,
        machine,
        settings,
        ended,
    } = climb(
        &users,
        args.load.users as f64,
        args.steps.step_factor,
        args.steps.max_steps,
        &command,
    )
    .await?;
    let most_held = steps.iter().rfind(|s| s.fanout.held).cloned();
    let passed = most_held.is_some();
    let report = CapacityReport {
        command,
        machine,
        settings,
        rate_per_sender: args.load.rate,
        room_size,
        max_p99_ms: bounds.max_p99_ms,
        max_cpu_share: SATURATED_CPU_SHARE,
        cpu_per_user_us: most_held.as_ref().map(CapacityStep::cpu_per_user_us),
        most_held,
        steps,
        ended,
    };
    if let Some(path) = &args.output.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    Ok((report, passed))
}
