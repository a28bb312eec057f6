//! Placeholder for the JetStream-to-PostgreSQL persister, which is not built yet.
//!
//! It does nothing and says so, so no script or person mistakes it for a working service.

use std::process::ExitCode;

/// EX_UNAVAILABLE from sysexits.h.
const EX_UNAVAILABLE: u8 = 69;

fn main() -> ExitCode {
    eprintln!(
        "natter-persister: the JetStream-to-PostgreSQL persister is not implemented yet; this binary does nothing"
    );
    ExitCode::from(EX_UNAVAILABLE)
}
