#!/usr/bin/env bash
# Fuzzes the gateway's WebSocket frame decoder and reassembly (gateway/fuzz/fuzz_targets/frame_decoder.rs) with
# cargo-fuzz (libFuzzer), installing cargo-fuzz from crates.io when missing.
#
#   scripts/fuzz.sh [SECONDS]        default 60; findings land in gateway/fuzz/artifacts/
#
# libFuzzer's sanitizer flags need a nightly compiler; on a stable toolchain RUSTC_BOOTSTRAP=1 lets the stable
# compiler accept them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
secs="${1:-60}"
[[ "$secs" =~ ^[0-9]+$ ]] || { echo "fuzz: SECONDS must be a whole number" >&2; exit 64; }
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
cd "$ROOT/gateway"
RUSTC_BOOTSTRAP=1 cargo fuzz run frame_decoder -- -max_total_time="$secs" -max_len=4096
