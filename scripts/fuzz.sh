#!/usr/bin/env bash
# Fuzzes what the gateway parses from clients with cargo-fuzz (libFuzzer), each target for SECONDS:
#
#   frame_decoder       the WebSocket frame decoder and reassembly (gateway/fuzz/fuzz_targets/frame_decoder.rs)
#   frame_differential  the same, against fastwebsockets' server side, cases made by frame::differential's
#                       generator from libFuzzer's bytes   (gateway/fuzz/fuzz_targets/frame_differential.rs)
#   client_frame        the client-frame JSON parser and subject safety (gateway/fuzz/fuzz_targets/client_frame.rs)
#   token               the access-token verifier and key-id reader (gateway/fuzz/fuzz_targets/token.rs)
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]    default 60 s per target, every target
#
# Each target starts from its committed seeds (gateway/fuzz/seeds/TARGET/) and the corpus earlier runs grew
# (gateway/fuzz/corpus/TARGET/, not committed), with its dictionary (gateway/fuzz/dicts/TARGET.dict) if it has
# one. A finding (a panic, a failed assertion, a sanitizer report, a leak, an input slower than 10 s or one
# taking over 2 GiB) is saved under gateway/fuzz/artifacts/TARGET/; replay one with
#   cd gateway && RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-...
# Every target runs even after another found something; the exit status is 1 if any did. The whole libFuzzer
# output of each run is in gateway/fuzz/logs/TARGET.log.
#
# libFuzzer's sanitizer flags need a nightly compiler; on a stable toolchain RUSTC_BOOTSTRAP=1 lets the stable
# compiler accept them. cargo-fuzz is installed from crates.io when missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
secs="${1:-60}"
[[ "$secs" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz: SECONDS must be a whole number above 0" >&2; exit 64; }
shift $(( $# > 0 ? 1 : 0 ))
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
cd "$ROOT/gateway"
export RUSTC_BOOTSTRAP=1

mapfile -t all < <(cargo fuzz list)
if [[ $# -gt 0 ]]; then targets=("$@"); else targets=("${all[@]}"); fi
for target in "${targets[@]}"; do
    [[ " ${all[*]} " == *" $target "* ]] || { echo "fuzz: no target '$target' (have: ${all[*]})" >&2; exit 64; }
done
cargo fuzz build

mkdir -p fuzz/logs
found=()
summary=()
for target in "${targets[@]}"; do
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus" "fuzz/artifacts/$target"
    inputs=("$corpus")
    [[ -d "fuzz/seeds/$target" ]] && inputs+=("fuzz/seeds/$target")
    flags=(-max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
    [[ -f "fuzz/dicts/$target.dict" ]] && flags+=(-dict="fuzz/dicts/$target.dict")
    log="fuzz/logs/$target.log"
    echo "fuzz: $target for ${secs}s (log: gateway/$log)"
    status=0
    cargo fuzz run "$target" "${inputs[@]}" -- "${flags[@]}" >"$log" 2>&1 || status=$?
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n1 || true)"
    if [[ $status -eq 0 ]]; then
        summary+=("$target: ${runs:-?} runs, ${rate:-?}/s, ${cov:-cov: ?}, no finding")
    else
        found+=("$target")
        summary+=("$target: FINDING (exit $status) after ${runs:-?} runs; see gateway/$log")
        grep -E '^(==[0-9]+==|thread .* panicked|SUMMARY|artifact_prefix|Test unit written to)' "$log" | head -n 20 || true
    fi
done

echo
printf 'fuzz: %s\n' "${summary[@]}"
if [[ ${#found[@]} -gt 0 ]]; then
    echo "fuzz: findings in: ${found[*]}; the inputs are in $ROOT/gateway/fuzz/artifacts/<target>/" >&2
    exit 1
fi
echo "fuzz: no findings (artifacts would be in $ROOT/gateway/fuzz/artifacts/<target>/)"
