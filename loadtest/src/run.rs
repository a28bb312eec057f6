//! The coordinator: it reads the flags, gets tokens and rooms from the auth API, splits the users over worker
//! processes, drives the phases, merges the workers' figures exactly, and writes the report.
//!
//! Its parts: [`args`] (the flags and the settings they come to), [`layout`] (users over rooms, workers and
//! gateways), [`workers`] (the worker processes), [`phases`] (connect, go, acked, expect, done), [`merge`] (the
//! workers' figures into the report), [`slo`] (the verdict) and [`output`] (the JSON report and the plots).

pub mod args;
pub mod layout;
pub(crate) mod merge;
pub(crate) mod output;
pub(crate) mod phases;
pub(crate) mod slo;
pub mod workers;

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::bail;

pub use self::args::{
    CommonArgs, FaultArgs, HistoryArgs, LoadArgs, OutputArgs, RoomSizes, RunArgs, Scenario, SloArgs, StepArgs,
};
pub use self::layout::room_sizes;
use self::merge::Around;
use self::phases::{CpuMark, Run, say};
use self::workers::Workers;
pub use self::workers::{MAX_CLIENTS_PER_WORKER, clients_per_worker, open_file_limit};
use crate::client::unix_micros;
use crate::report::{GatewayFigures, Report};
use crate::scrape;
use crate::setup::Api;

/// Flags that cannot work together or are out of bounds: the run never started (exit status 64).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Runs a load test and returns whether every SLO held.
pub async fn run(mut args: RunArgs, command: String) -> anyhow::Result<(Report, bool)> {
    let settings = args.settle().map_err(UsageError)?;
    let Some(key) = args.common.load_test_key.clone() else {
        return Err(UsageError(
            "tokens come from the auth API's load-test mode: give --load-test-key (or NATTER_LOAD_TEST_KEY)".into(),
        )
        .into());
    };
    let live = !args.output.quiet && std::io::stderr().is_terminal();
    let api = Api::new(&args.common.api)?;
    let http = reqwest::Client::new();
    let users_wanted = args.load.users;

    let gateways = if args.common.gateways.is_empty() {
        let url = api.assigned_gateway().await?;
        say(&format!("no --gateway given; the auth API assigned {url}"));
        vec![url]
    } else {
        args.common.gateways.clone()
    };
    let run_id = format!("lt{:05x}", unix_micros() % 0xfffff);
    let started = Instant::now();
    say(&format!("minting {users_wanted} guest tokens ({run_id}-*)"));
    let (users, expires_in) = api.bulk_guests(&key, &run_id, users_wanted).await?;
    if users.len() != users_wanted {
        bail!(
            "the auth API made {} users where {users_wanted} were asked for",
            users.len()
        );
    }
    let needed = settings.ramp_up + settings.duration + args.common.drain_timeout + Duration::from_secs(60);
    if Duration::from_secs(expires_in) < needed {
        say(&format!(
            "warning: tokens expire after {expires_in}s, before this run ends; expect 4001 closes (raise the auth \
             API's --access-token-ttl for long runs)"
        ));
    }
    let token = users[0].access_token.clone();
    let rooms = api.create_rooms(&token, &run_id, args.load.rooms).await?;
    say(&format!(
        "{} users and {} rooms ready in {:.1}s",
        users.len(),
        rooms.len(),
        started.elapsed().as_secs_f64()
    ));
    let plans = layout::plans(&args, &settings, &users, &rooms, &gateways);

    let mut figures = GatewayFigures::default();
    figures
        .samples
        .extend(scrape::scrape_all(&http, &args.common.metrics, 0.0).await);
    let at_start = CpuMark::now(&args);
    let mut workers = Workers::start(plans).await?;
    say(&format!(
        "{} workers, {} gateways, {} source addresses; connecting {users_wanted} users",
        workers.len(),
        gateways.len(),
        settings.source_addrs.len(),
    ));
    let around_workers = Run {
        args: &args,
        settings: &settings,
        api: &api,
        http: &http,
        token: &token,
        rooms: &rooms,
        live,
    };
    let phases = phases::drive(&around_workers, &mut workers, &mut figures, at_start).await?;

    let merged = merge::merge(&phases.results)?;
    let history = if args.history.verify_history {
        say("checking the history API for every acknowledged message");
        Some(
            api.verify_history(&token, &phases.acked, &merged.total.views, args.history.history_timeout)
                .await?,
        )
    } else {
        None
    };
    let around = Around {
        command,
        gateways,
        figures,
        history,
    };
    let mut report = merge::report(&args, &settings, phases, &merged, around);
    report.slo = slo::slo_checks(&args.slo, &report);
    report.passed = report.slo.iter().all(|c| c.passed);
    output::write(&args, &report, &merged.latency)?;
    let passed = report.passed;
    Ok((report, passed))
}
