//! Differential fuzzing of the gateway's inbound WebSocket codec against fastwebsockets' server side: libFuzzer's
//! bytes choose a client byte stream (frames valid and not, cut into reads anywhere; see
//! natter_gateway::frame::differential), and both must make the same messages of it, or refuse it with the same
//! close code, but for the deliberate differences named there. Any other outcome is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natter_gateway::frame::differential::{Case, Choices, check};

fuzz_target!(|data: &[u8]| {
    let case = Case::from_choices(&mut Choices::new(data));
    if let Err(disagreement) = check(&case) {
        panic!("{disagreement}");
    }
});
