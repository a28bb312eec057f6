//! The gateway binary: parse and validate the configuration, then run [`natter_gateway::startup::Application`].

use std::process::ExitCode;

use clap::Parser;
use natter_gateway::config::Config;
use natter_gateway::startup::{Application, shutdown_signal};
use tracing_subscriber::EnvFilter;

/// EX_USAGE from sysexits.h: the configuration is wrong.
const EX_USAGE: u8 = 64;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::try_parse() {
        Ok(config) => config,
        Err(err) if !err.use_stderr() => {
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            let text = err.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("natter-gateway: invalid configuration: {first} (see --help)");
            return ExitCode::from(EX_USAGE);
        }
    };
    if let Err(err) = config.validate() {
        eprintln!("natter-gateway: invalid configuration: {err}");
        return ExitCode::from(EX_USAGE);
    }
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "failed to start");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(addr = %app.local_addr(), id = app.id(), url = app.url(), "natter-gateway listening");
    match app.run_until_stopped(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "stopped with an error");
            ExitCode::FAILURE
        }
    }
}
