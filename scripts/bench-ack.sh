#!/usr/bin/env bash
# Measures what `--ack-after persisted` costs against `--ack-after stored`, both in one run: ack latency (p50,
# p99) at idle and under a background load, gateway memory per send waiting for the persister, and a persister's
# commit notice next to its commit. gateway/examples/ack_bench.rs brings up its own stack (natter-test-support:
# nats-server, PostgreSQL, the auth API, one persister, one gateway per mode, each on free ports) and prints the
# figures; this prints them as a Markdown block for docs/benchmarks.md with the machine and the command.
#
#   PROBES=300 LOAD=400 WAITING=3000 scripts/bench-ack.sh
#
# PROFILE=debug measures the debug build (quicker to build; slower, and not what docs/benchmarks.md quotes
# unless it says so).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROBES="${PROBES:-300}" LOAD="${LOAD:-400}" WAITING="${WAITING:-3000}" PROFILE="${PROFILE:-release}"
cd "$ROOT"
flag=(--release); [ "$PROFILE" = release ] || flag=()
cargo build "${flag[@]}" -q -p natter-auth-api -p natter-persister -p natter-gateway --bins
cargo build "${flag[@]}" -q -p natter-gateway --example ack_bench
result="$(mktemp /tmp/natter-bench-ack.XXXXXX)"
trap 'rm -f "$result"' EXIT
NATTER_BIN_DIR="$ROOT/target/$PROFILE" RUST_LOG=warn \
  "target/$PROFILE/examples/ack_bench" --probes "$PROBES" --load "$LOAD" --waiting "$WAITING" | tee "$result"

cat <<MD

### Acks after persistence, $(date -u +%Y-%m-%d)

Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB,
$(. /etc/os-release && echo "$PRETTY_NAME"), $(rustc --version), $(/usr/sbin/nats-server --version 2>/dev/null || nats-server --version).
Command: \`PROFILE=$PROFILE PROBES=$PROBES LOAD=$LOAD WAITING=$WAITING scripts/bench-ack.sh\` ($PROFILE build; client, gateways,
persister, NATS and PostgreSQL share the machine).

\`\`\`
$(cat "$result")
\`\`\`
MD
