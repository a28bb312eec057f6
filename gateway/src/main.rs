//! The natter-gateway binary: everything is in [`natter_gateway::startup::Application`].

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    natter_service::main::<natter_gateway::startup::Application>().await
}
