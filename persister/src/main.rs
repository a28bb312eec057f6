//! The persister binary: read the configuration, then run [`natter_persister::startup::Application`].

use std::process::ExitCode;

use natter_persister::config::Config;
use natter_persister::startup::Application;

#[tokio::main]
async fn main() -> ExitCode {
    let config: Config = match natter_service::config("natter-persister") {
        Ok(config) => config,
        Err(code) => return code,
    };
    natter_service::init_logging("info,sqlx=warn");
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "failed to start");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(addr = %app.local_addr(), "natter-persister consuming");
    match app.run_until_stopped(natter_service::shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "stopped with an error");
            ExitCode::FAILURE
        }
    }
}
