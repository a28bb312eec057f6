//! The natter-auth-api binary: everything is in [`natter_auth_api::startup::Application`].

use std::process::ExitCode;

fn main() -> ExitCode {
    // `--migrate-only` applies the schema and exits, serving nothing.
    if std::env::args().skip(1).any(|a| a == "--migrate-only") {
        return natter_auth_api::startup::migrate_only();
    }
    natter_service::main::<natter_auth_api::startup::Application>()
}
