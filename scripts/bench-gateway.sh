#!/usr/bin/env bash
# Measures one gateway process on this machine: memory per idle connection, connect rate, fan-out deliveries
# per second in one room, and the CPU a Prometheus scrape of its /metrics costs. Brings up its own stack (./natter up --release, one gateway) on free ports, runs
# gateway/examples/gateway_bench.rs against it, stops the stack, and prints a Markdown block for
# docs/benchmarks.md with the machine and the command.
#
#   IDLE=10000 RECEIVERS=500 MESSAGES=2000 scripts/bench-gateway.sh
#
# GATEWAY_FEATURES=mimalloc (or jemalloc) builds the gateway with another allocator; NATTER_GATEWAY_THREADS=1
# runs it on a single-threaded runtime.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IDLE="${IDLE:-10000}" RECEIVERS="${RECEIVERS:-500}" MESSAGES="${MESSAGES:-2000}"
tmp="$(mktemp -d /tmp/natter-bench.XXXXXX)"
chmod 755 "$tmp"
group=""
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
cleanup() {
  stop_group "$group"
  rm -rf "$tmp"
}
trap cleanup EXIT
api_port="$(free_port)"; gw_port="$(free_port)"; admin_port="$(free_port)"
while busy $((admin_port + 1)); do admin_port="$(free_port)"; done

# Bench settings: one user holds every connection, and sends are not rate limited.
export NATTER_MAX_CONNECTIONS_PER_USER=100000 NATTER_SENDS_PER_SECOND=1000000 NATTER_MAX_CONNECTIONS=19500
export RUST_LOG=warn
cargo build --release -q -p natter-auth-api -p natter-persister
cargo build --release -q -p natter-gateway --example gateway_bench
# The gateway binary last, so the variant asked for is the one that runs.
cargo build --release -q -p natter-gateway ${GATEWAY_FEATURES:+--features "$GATEWAY_FEATURES"}
set -m
"$ROOT/natter" up --json --release --no-build --no-web --gateways 1 --api-port "$api_port" --gateway-port "$gw_port" \
  --admin-port "$admin_port" --nats-port "$(free_port)" --pg-port "$(free_port)" --data-dir "$tmp/data" >"$tmp/up" 2>"$tmp/up.err" &
group=$!
set +m
for _ in $(seq 1 900); do [ -s "$tmp/up" ] && break; sleep 0.2; done
[ -s "$tmp/up" ] || { cat "$tmp/up.err" >&2; echo "the stack did not come up" >&2; exit 1; }
api="http://127.0.0.1:$api_port"
token="$(curl -fsS -X POST "$api/api/guest" -H 'content-type: application/json' \
  -d "{\"username\":\"bench$RANDOM\"}" | jq -r .access_token)"
room="$(curl -fsS -X POST "$api/api/rooms" -H "authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"name":"bench"}' | jq -r .id)"
gw_pid="$(ss -ltnpH "sport = :$gw_port" | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2)"

cmd=(target/release/examples/gateway_bench --url "ws://127.0.0.1:$gw_port/ws" --token "$token" --room "$room"
     --gateway-pid "$gw_pid" --idle "$IDLE" --receivers "$RECEIVERS" --messages "$MESSAGES")
"${cmd[@]}" | tee "$tmp/result"

# What Prometheus costs it: the gateway's CPU time over SCRAPES back-to-back scrapes of /metrics, less what it
# spends idle over as long a time without them (heartbeats, the sweep).
SCRAPES="${SCRAPES:-1000}"
ticks() { awk '{print $14 + $15}' "/proc/$gw_pid/stat"; }
before="$(ticks)"; started="$(date +%s%N)"
for _ in $(seq 1 "$SCRAPES"); do curl -fsS -o "$tmp/page" "http://127.0.0.1:$((admin_port + 1))/metrics"; done
elapsed_ns=$(( $(date +%s%N) - started )); scrape_ticks=$(( $(ticks) - before ))
before="$(ticks)"; sleep "$(awk -v ns="$elapsed_ns" 'BEGIN {printf "%.3f", ns / 1e9}')"; idle_ticks=$(( $(ticks) - before ))
awk -v n="$SCRAPES" -v t="$scrape_ticks" -v idle="$idle_ticks" -v hz="$(getconf CLK_TCK)" -v ns="$elapsed_ns" \
  -v bytes="$(wc -c <"$tmp/page")" -v series="$(grep -cvE '^(#|$)' "$tmp/page")" 'BEGIN {
    cpu_ms = (t - idle) / hz * 1000 / n
    printf "scrape: %d series, %.1f KiB a page; %.2f ms of gateway CPU (%d ticks, %d of them idle) and %.2f ms wall a scrape (%d scrapes); ", series, bytes / 1024, cpu_ms, t, idle, ns / 1e6 / n, n
    printf "at one scrape every 5 s, %.3f %% of a core\n", cpu_ms / 5000 * 100
  }' | tee -a "$tmp/result"

cat <<MD

### One gateway process, $(date -u +%Y-%m-%d)

Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB,
$(. /etc/os-release && echo "$PRETTY_NAME"), $(rustc --version), $(/usr/sbin/nats-server --version 2>/dev/null || nats-server --version).
Command: \`${GATEWAY_FEATURES:+GATEWAY_FEATURES=$GATEWAY_FEATURES }${NATTER_GATEWAY_THREADS:+NATTER_GATEWAY_THREADS=$NATTER_GATEWAY_THREADS }IDLE=$IDLE RECEIVERS=$RECEIVERS MESSAGES=$MESSAGES SCRAPES=$SCRAPES scripts/bench-gateway.sh\` (release build; client,
gateway, NATS and PostgreSQL share the machine).

\`\`\`
$(cat "$tmp/result")
\`\`\`
MD
