//! Unmasking client payloads: the loop the gateway's codec had (4 bytes at a time through `chunks_exact_mut`)
//! against fastwebsockets' exported `unmask` (which the codec calls now), side by side in one run, as CPU time
//! (user + system, from /proc/self/stat) per byte, for payload sizes from a typing frame to the message cap.
//!
//!   cargo bench -p natter-gateway --bench unmask
#![allow(clippy::print_stdout)]

use std::hint::black_box;

/// The codec's own loop before it called fastwebsockets.
fn unmask_chunks(data: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = data.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let mut raw = [0u8; 4];
        raw.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u32::from_ne_bytes(raw) ^ word).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i];
    }
}

/// This process's CPU seconds so far (utime + stime, in clock ticks of 1/100 s: USER_HZ on Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces) start after its closing parenthesis.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// Nanoseconds of CPU per byte for unmasking `total` bytes in payloads of `size`.
fn measure(unmask: fn(&mut [u8], [u8; 4]), size: usize, total: usize) -> f64 {
    let mut payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let rounds = total / size;
    let start = cpu_seconds();
    for round in 0..rounds {
        let mask = (round as u32).wrapping_mul(0x9e37_79b9).to_ne_bytes();
        // Odd offsets as well: a payload starts wherever its header ends.
        let at = round % 3;
        unmask(black_box(&mut payload[at..]), mask);
    }
    black_box(&payload);
    (cpu_seconds() - start) * 1e9 / (rounds * size) as f64
}

fn main() {
    println!("| payload | own loop (ns/byte) | fastwebsockets::unmask (ns/byte) | own / fastwebsockets |");
    println!("|---|---|---|---|");
    // About half a second of CPU per measurement: the clock ticks every 10 ms.
    for (size, total) in [
        (24usize, 1usize << 31),
        (125, 1 << 33),
        (300, 1 << 33),
        (1024, 1 << 34),
        (4096, 1 << 34),
        (16 * 1024, 1 << 34),
    ] {
        let (mut own, mut theirs) = (0.0, 0.0);
        // Alternated, three times each: both see the same machine state.
        for _ in 0..3 {
            own += measure(unmask_chunks, size, total);
            theirs += measure(fastwebsockets::unmask, size, total);
        }
        println!(
            "| {size} B | {:.3} | {:.3} | {:.2} |",
            own / 3.0,
            theirs / 3.0,
            own / theirs
        );
    }
}
