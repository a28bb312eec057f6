//! The natter-persister binary: everything is in [`natter_persister::startup::Application`].

use std::process::ExitCode;

fn main() -> ExitCode {
    natter_service::main::<natter_persister::startup::Application>()
}
