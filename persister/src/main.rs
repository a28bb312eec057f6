//! The natter-persister binary: everything is in [`natter_persister::startup::Application`].

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    natter_service::main::<natter_persister::startup::Application>().await
}
