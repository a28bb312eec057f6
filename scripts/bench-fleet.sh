#!/usr/bin/env bash
# The standard fleet benchmark: brings up a local fleet with ./natter up's machinery (release build, several
# gateway processes, the auth API in its load-test mode, one persister) on free ports, runs the load-test harness
# against it, and writes the JSON reports and plots under benchmarks/ and a section of figures into
# docs/benchmarks.md with the machine, the versions and the command lines.
#
#   ./natter bench [--users N] [--gateways N] [--workers N] [--room-size N] [--duration 60s] [--rate R]
#                  [--reconnect-users N] [--gateway-threads N] [--history-readers N] [--label NAME] [--no-docs]
#   ./natter bench --saturate [--users 10000] [--gateways 2] [--rate 6] [--duration 15s] ...
#
# Suite: (1) fanout with every user connecting at once (the connect storm), one sender per room, zero loss
# required, history verified; (2) reconnect: a quarter of the clients drop mid-run and rejoin from their last seq,
# and one gateway process is drained (SIGTERM) half-way through the send phase. With --saturate, instead: fan-out
# steps at a rising rate (from --rate messages/s per room, times 1.25 each step, --duration each) until one
# breaks p99 <= 250 ms or zero loss, then one step at twice the highest rate that held (how overload is shed);
# defaults 10,000 users in rooms of 100 over 2 gateways.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

users="" gateways="" workers="" room_size=100 duration="" rate="" reconnect_users=5000 label="" docs=1 saturate=0
threads="" history_readers=0
while [ $# -gt 0 ]; do
  case "$1" in
    --users) users="${2:?}"; shift ;;
    --gateways) gateways="${2:?}"; shift ;;
    --workers) workers="${2:?}"; shift ;;
    --room-size) room_size="${2:?}"; shift ;;
    --duration) duration="${2:?}"; shift ;;
    --rate) rate="${2:?}"; shift ;;
    --reconnect-users) reconnect_users="${2:?}"; shift ;;
    --label) label="${2:?}"; shift ;;
    --gateway-threads) threads="${2:?}"; shift ;;
    --history-readers) history_readers="${2:?}"; shift ;;
    --saturate) saturate=1 ;;
    --no-docs) docs=0 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown flag $1" >&2; exit 64 ;;
  esac
  shift
done
if [ "$saturate" = 1 ]; then
  # One sender per room stands for a room's many senders, so the per-connection send limit is raised: what the
  # overload step measures is the gateways' shedding, not the limit on one client.
  export NATTER_SENDS_PER_SECOND="${NATTER_SENDS_PER_SECOND:-1000}"
  users="${users:-10000}" gateways="${gateways:-2}" duration="${duration:-15s}" rate="${rate:-6}" workers="${workers:-2}"
else
  users="${users:-20000}" gateways="${gateways:-4}" duration="${duration:-60s}" rate="${rate:-1}"
fi
if [ -n "$threads" ]; then
  [[ "$threads" =~ ^[0-9]+$ ]] || { echo "bench: --gateway-threads must be a whole number (0: one per core)" >&2; exit 64; }
  export NATTER_GATEWAY_THREADS="$threads"
fi
[[ "$history_readers" =~ ^[0-9]+$ ]] || { echo "bench: --history-readers must be a whole number" >&2; exit 64; }
history_flag=""
[ "$history_readers" = 0 ] || history_flag=" --history-readers $history_readers"
for n in "$users" "$gateways" "$room_size" "$reconnect_users"; do
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] || { echo "bench: counts must be positive integers" >&2; exit 64; }
done
# One gateway process holds under 20,000 open files: keep each at most 18,000 connections.
if [ $((users / gateways)) -ge 18000 ]; then
  echo "bench: $users users over $gateways gateways is over 18,000 per gateway; add --gateways" >&2; exit 64
fi
workers="${workers:-$(((users + 14999) / 15000))}"
rooms=$(((users + room_size - 1) / room_size))
label="${label:-$users}"
[ "$saturate" = 1 ] && label="saturate-$label"

tmp="$(mktemp -d /tmp/natter-bench-fleet.XXXXXX)"
chmod 755 "$tmp"
group=""
extra_pid=""
cleanup() {
  [ -n "$extra_pid" ] && kill -TERM "$extra_pid" 2>/dev/null || true
  stop_group "$group"
  rm -rf "$tmp"
}
trap cleanup EXIT

api_port="$(free_port)"
gw_port=$((30000 + RANDOM % 20000))
# The auth API's admin port right after the gateways' ports, and each gateway's admin port after it.
admin_port=$((gw_port + gateways))
for ((i = 0; i < 2 * gateways + 1; i++)); do busy $((gw_port + i)) && { echo "bench: port $((gw_port + i)) is busy; retry" >&2; exit 1; }; done

# The auth API's load-test mode hands the harness its tokens; gateways may hold 19,000 sockets each.
NATTER_LOAD_TEST_KEY="bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export NATTER_LOAD_TEST_KEY NATTER_MAX_CONNECTIONS=19000 RUST_LOG="${NATTER_BENCH_LOG:-warn}"
# Tokens must outlive the run.
export NATTER_ACCESS_TOKEN_TTL=2h

echo "bench: building (release)" >&2
cargo build --release -q -p natter-auth-api -p natter-gateway -p natter-persister -p natter-loadtest
set -m
"$ROOT/natter" up --json --release --no-build --gateways "$gateways" --api-port "$api_port" --gateway-port "$gw_port" \
  --admin-port "$admin_port" --persister-port "$(free_port)" --nats-port "$(free_port)" --pg-port "$(free_port)" --data-dir "$tmp/data" \
  >"$tmp/up" 2>"$tmp/up.err" &
group=$!
set +m
for _ in $(seq 1 900); do [ -s "$tmp/up" ] && break; sleep 0.2; done
[ -s "$tmp/up" ] || { cat "$tmp/up.err" >&2; echo "bench: the stack did not come up" >&2; exit 1; }

api="http://127.0.0.1:$api_port"
gateway_flags=()
for ((i = 0; i < gateways; i++)); do
  p=$((gw_port + i))
  gateway_flags+=(--gateway "ws://127.0.0.1:$p/ws" --metrics "http://127.0.0.1:$((admin_port + i + 1))/metrics")
done

if [ "$saturate" = 1 ]; then
  mkdir -p benchmarks
  steps=(run --scenario saturate --overload --api "$api" "${gateway_flags[@]}" --users "$users" --rooms "$rooms"
         --senders 1 --rate "$rate" --duration "$duration" --ramp-up 0 --workers "$workers"
         --report "benchmarks/$label.json")
  echo "bench: natter-loadtest ${steps[*]}" >&2
  status=0
  target/release/natter-loadtest "${steps[@]}" | tee "$tmp/saturate.txt" || status=$?
  if [ "$docs" = 1 ] && [ -s "benchmarks/$label.json" ]; then
    python3 "$ROOT/scripts/bench-fleet-docs.py" --label "$label" --gateways "$gateways" \
      --saturate "benchmarks/$label.json" --saturate-status "$status" \
      --command "./natter bench --saturate --users $users --gateways $gateways --room-size $room_size --rate $rate --duration $duration${threads:+ --gateway-threads $threads}" \
      --nats "$(/usr/sbin/nats-server --version 2>/dev/null || nats-server --version)" --rustc "$(rustc --version)"
    echo "bench: figures written to docs/benchmarks.md" >&2
  fi
  exit "$status"
fi

# One more gateway outside the fleet's supervisor, for the reconnect run to drain: ./natter up treats a service
# that exits as a failure and stops everything.
nats_url="$(jq -r .nats_url "$tmp/up")"
extra_port="$(free_port)"
NATS_URL="$nats_url" NATS_USER=natter-gateway \
  NATS_PASSWORD="$(sed -n 's/^NATTER_NATS_GATEWAY_PASSWORD=//p' "$(jq -r .nats_credentials "$tmp/up")")" NATTER_GATEWAY_LISTEN="127.0.0.1:$extra_port" NATTER_GATEWAY_ID="gw-drained" \
  NATTER_JWKS_URL="$api/.well-known/jwks.json" NATTER_DRAIN_JITTER=2s target/release/natter-gateway \
  2>"$tmp/gateway-drained.log" &
extra_pid=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$extra_port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

mkdir -p benchmarks
loadtest=target/release/natter-loadtest
fanout=(run --scenario fanout --api "$api" "${gateway_flags[@]}" --users "$users" --rooms "$rooms" --senders 1
        --rate "$rate" --duration "$duration" --ramp-up 0 --workers "$workers" --verify-history
        --max-loss 0 --min-connected 1 --history-readers "$history_readers"
        --report "benchmarks/fanout-$label.json" --plot "benchmarks/fanout-$label")
echo "bench: natter-loadtest ${fanout[*]}" >&2
fanout_status=0
"$loadtest" "${fanout[@]}" | tee "$tmp/fanout.txt" || fanout_status=$?

reconnect_rooms=$(((reconnect_users + room_size - 1) / room_size))
reconnect=(run --scenario reconnect --api "$api" "${gateway_flags[@]}" --gateway "ws://127.0.0.1:$extra_port/ws"
           --metrics "http://127.0.0.1:$extra_port/metrics" --users "$reconnect_users"
           --rooms "$reconnect_rooms" --senders 1 --rate "$rate" --duration 30s --ramp-up 5s
           --workers "$(((reconnect_users + 14999) / 15000))" --drain-gateway-pid "$extra_pid" --verify-history
           --max-loss 0 --report "benchmarks/reconnect-$label.json" --plot "benchmarks/reconnect-$label")
echo "bench: natter-loadtest ${reconnect[*]}" >&2
reconnect_status=0
"$loadtest" "${reconnect[@]}" | tee "$tmp/reconnect.txt" || reconnect_status=$?

# A failed run keeps the fleet's logs (their last lines) beside its report, for the post-mortem.
if [ "$fanout_status" != 0 ] || [ "$reconnect_status" != 0 ]; then
  mkdir -p "benchmarks/logs-$label"
  for log in "$tmp"/data/*.log "$tmp"/gateway-drained.log; do
    [ -f "$log" ] && tail -n 2000 "$log" >"benchmarks/logs-$label/$(basename "$log")"
  done
  echo "bench: a run failed; the fleet's logs are in benchmarks/logs-$label" >&2
fi

if [ "$docs" = 1 ]; then
  python3 "$ROOT/scripts/bench-fleet-docs.py" --label "$label" --gateways "$gateways" \
    --fanout "benchmarks/fanout-$label.json" --reconnect "benchmarks/reconnect-$label.json" \
    --fanout-status "$fanout_status" --reconnect-status "$reconnect_status" \
    --command "./natter bench --users $users --gateways $gateways --room-size $room_size --duration $duration --rate $rate --reconnect-users $reconnect_users${threads:+ --gateway-threads $threads}${history_flag}${label:+ --label $label}" \
    --nats "$(/usr/sbin/nats-server --version 2>/dev/null || nats-server --version)" --rustc "$(rustc --version)"
  echo "bench: figures written to docs/benchmarks.md" >&2
fi
[ "$fanout_status" = 0 ] && [ "$reconnect_status" = 0 ]
