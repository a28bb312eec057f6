//! Feeds arbitrary bytes, cut at arbitrary places, through the gateway's frame decoder and reassembly, as the
//! reader does: whatever arrives, the codec returns a frame, asks for more, or names an error; it never panics,
//! never reports a frame longer than the bytes it was given, and never holds more than the message cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natter_gateway::frame::{Reassembly, decode};

const MAX: usize = 1024;

fuzz_target!(|data: &[u8]| {
    // The first byte chooses how the rest is cut into reads.
    let Some((&cut, data)) = data.split_first() else { return };
    let step = usize::from(cut).max(1);
    let mut buffer: Vec<u8> = Vec::new();
    let mut messages = Reassembly::default();
    for chunk in data.chunks(step) {
        buffer.extend_from_slice(chunk);
        loop {
            match decode(&mut buffer, MAX) {
                Ok(Some(frame)) => {
                    assert!(frame.len <= buffer.len(), "a frame is never longer than the bytes read");
                    assert!(frame.payload.end <= frame.len && frame.payload.start <= frame.payload.end);
                    let payload = buffer[frame.payload.clone()].to_vec();
                    let pushed = messages.push(frame.fin, frame.opcode, &payload, MAX).map(|m| m.is_some());
                    assert!(messages.held() <= MAX.next_power_of_two() * 2, "reassembly stays under the cap");
                    buffer.drain(..frame.len);
                    if pushed.is_err() {
                        return; // The connection would be closed with the error's code.
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    let code = err.close_code();
                    assert!(code == 1002 || code == 1007 || code == 1009, "a protocol error closes with 1002/1007/1009");
                    return;
                }
            }
        }
    }
});
