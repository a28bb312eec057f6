#!/usr/bin/env bash
# Measures the latency of direct messages and personal events: a direct message from one gateway to the other,
# a read cursor moved on one device reaching the user's other device (`read`), and a mention reaching a device in
# no room (`mentioned`). gateway/examples/personal_bench.rs brings up its own stack (natter-test-support:
# nats-server, PostgreSQL, the auth API, one persister and two gateways on free ports) and prints the figures; this
# prints them as a Markdown block for docs/benchmarks.md with the machine and the command.
#
#   PROBES=200 [PROFILE=debug] scripts/bench-personal.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROBES="${PROBES:-200}" PROFILE="${PROFILE:-release}"
cd "$ROOT"
flag=(--release); [ "$PROFILE" = release ] || flag=()
cargo build "${flag[@]}" -q -p natter-auth-api -p natter-persister -p natter-gateway --bins
cargo build "${flag[@]}" -q -p natter-gateway --example personal_bench
result="$(mktemp /tmp/natter-bench-personal.XXXXXX)"
trap 'rm -f "$result"' EXIT
NATTER_BIN_DIR="$ROOT/target/$PROFILE" RUST_LOG=warn \
  "target/$PROFILE/examples/personal_bench" --probes "$PROBES" | tee "$result"

cat <<MD

Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB,
$(. /etc/os-release && echo "$PRETTY_NAME"), $(rustc --version), $(/usr/sbin/nats-server --version 2>/dev/null || nats-server --version).
Date: $(date -u '+%Y-%m-%d %H:%M UTC'). Command: \`PROFILE=$PROFILE PROBES=$PROBES scripts/bench-personal.sh\` ($PROFILE build; the
client, both gateways, the auth API, the persister, NATS and PostgreSQL share the machine).

\`\`\`
$(cat "$result")
\`\`\`
MD
