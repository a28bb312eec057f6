//! The natter-auth-api binary: everything is in [`natter_auth_api::startup::Application`].

use std::process::ExitCode;

fn main() -> ExitCode {
    natter_service::main::<natter_auth_api::startup::Application>()
}
