//! `natter-loadtest`: runs a load test against a Natter fleet (`run`), or, started by a run, one of its workers.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "natter-loadtest",
    version,
    about = "Load tests a Natter fleet and reports how it held"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a load test. Exit status: 0 when every SLO held, 1 when one was missed, 2 when the run failed,
    /// 64 for bad flags.
    Run(Box<natter_loadtest::run::RunArgs>),
    /// One worker process of a run: plan on stdin, figures on stdout (started by `run`).
    #[command(hide = true)]
    Worker,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { 64 } else { 0 });
        }
    };
    match cli.command {
        Command::Worker => {
            // A worker runs its clients on one thread: several workers share the machine's cores with the fleet.
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            match runtime
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(natter_loadtest::worker::run()))
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("natter-loadtest worker: {err:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run(args) => {
            let command = std::env::args().collect::<Vec<_>>().join(" ");
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    eprintln!("natter-loadtest: cannot start: {err}");
                    return ExitCode::from(2);
                }
            };
            let outcome = runtime.block_on(async move {
                use natter_loadtest::run::Scenario;
                match args.common.scenario {
                    Scenario::Saturate => {
                        let (report, passed) = natter_loadtest::saturate::run(*args, command).await?;
                        Ok((report.summary(), passed))
                    }
                    Scenario::Capacity => {
                        let (report, passed) = natter_loadtest::capacity::run(*args, command).await?;
                        Ok((report.summary(), passed))
                    }
                    _ => {
                        let (report, passed) = natter_loadtest::run::run(*args, command).await?;
                        Ok((report.summary(), passed))
                    }
                }
            });
            match outcome {
                Ok((summary, passed)) => {
                    // The summary table is the run's output; stdout may be a closed pipe, which changes nothing.
                    let _ = std::io::Write::write_all(&mut std::io::stdout(), summary.as_bytes());
                    ExitCode::from(if passed { 0 } else { 1 })
                }
                Err(err) => {
                    let err: anyhow::Error = err;
                    eprintln!("natter-loadtest: {err:#}");
                    let usage = err.downcast_ref::<natter_loadtest::run::UsageError>().is_some();
                    ExitCode::from(if usage { 64 } else { 2 })
                }
            }
        }
    }
}
