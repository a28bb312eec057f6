#!/usr/bin/env bash
# Compares builds of the load-test harness itself on one fleet: the harness's CPU time (user + system of the
# coordinator and its worker processes, which it waits for, as /usr/bin/time reports them) per connection and per
# delivery. Each round runs every build in turn, so the builds see the same fleet and the same machine state:
#
#   connect  --scenario connect-storm: USERS connect and join; nothing is sent        -> CPU per connection
#   fanout   --scenario fanout: the same USERS, one sender per room of 100 at RATE   -> CPU per delivery, counting
#            only what the fanout run spent beyond the connect run of the same build and round
#
#   scripts/bench-harness.sh [--users 4000] [--gateways 2] [--rate 2] [--duration 20s] [--rounds 2] [--release]
#                            NAME=BINARY NAME=BINARY...
#
# The fleet (./natter up: NATS, PostgreSQL, the auth API in its load-test mode, gateways, a persister) runs the
# debug builds in target/debug unless --release; either way what is measured is the harness binaries given. Prints
# one line per run and a table of means; the JSON reports are left in the temporary directory it names.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

users=4000 gateways=2 rate=2 duration=20s rounds=2 release=()
builds=()
while [ $# -gt 0 ]; do
  case "$1" in
    --users) users="${2:?}"; shift ;;
    --gateways) gateways="${2:?}"; shift ;;
    --rate) rate="${2:?}"; shift ;;
    --duration) duration="${2:?}"; shift ;;
    --rounds) rounds="${2:?}"; shift ;;
    --release) release=(--release) ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *=*) builds+=("$1") ;;
    *) echo "bench-harness: unknown argument $1" >&2; exit 64 ;;
  esac
  shift
done
[ "${#builds[@]}" -ge 1 ] || { echo "bench-harness: name at least one build as NAME=BINARY" >&2; exit 64; }
for build in "${builds[@]}"; do
  [ -x "${build#*=}" ] || { echo "bench-harness: ${build#*=} is not an executable" >&2; exit 64; }
done

work="$(mktemp -d /tmp/natter-bench-harness.XXXXXX)"
chmod 755 "$work"
fleet=""
trap 'stop_group "$fleet"' EXIT

api_port="$(free_port)"
gw_port=$((30000 + RANDOM % 20000))
NATTER_LOAD_TEST_KEY="bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export NATTER_LOAD_TEST_KEY NATTER_MAX_CONNECTIONS=19000 NATTER_ACCESS_TOKEN_TTL=2h RUST_LOG="${NATTER_BENCH_LOG:-warn}"
set -m
"$ROOT/natter" up --json --no-build --no-web "${release[@]}" --gateways "$gateways" --api-port "$api_port" \
  --gateway-port "$gw_port" --persister-port "$(free_port)" --nats-port "$(free_port)" --pg-port "$(free_port)" \
  --data-dir "$work/data" >"$work/up" 2>"$work/up.err" &
fleet=$!
set +m
for _ in $(seq 1 900); do [ -s "$work/up" ] && break; sleep 0.2; done
[ -s "$work/up" ] || { cat "$work/up.err" >&2; echo "bench-harness: the fleet did not come up" >&2; exit 1; }

targets=(--api "http://127.0.0.1:$api_port")
for ((i = 0; i < gateways; i++)); do
  targets+=(--gateway "ws://127.0.0.1:$((gw_port + i))/ws" --metrics "http://127.0.0.1:$((gw_port + i))/metrics")
done
rooms=$(((users + 99) / 100))
echo "bench-harness: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); fleet in $work" >&2

# Runs BINARY with the harness flags given; prints "cpu_seconds connected delivered".
measure() {
  local binary="$1" report="$2"; shift 2
  local times="$work/time"
  /usr/bin/time -f "%U %S" -o "$times" "$binary" run "${targets[@]}" --users "$users" --rooms "$rooms" \
    --workers 1 --report "$report" "$@" >"$report.out" 2>&1 || true
  local cpu connected delivered
  cpu="$(awk '{ printf "%.2f", $1 + $2 }' "$times")"
  connected="$(jq -r '.connect.connected // 0' "$report" 2>/dev/null || echo 0)"
  delivered="$(jq -r '.messages.delivered // 0' "$report" 2>/dev/null || echo 0)"
  echo "$cpu $connected $delivered"
}

results="$work/results"
: >"$results"
for ((round = 1; round <= rounds; round++)); do
  for build in "${builds[@]}"; do
    name="${build%%=*}" binary="${build#*=}"
    read -r c_cpu c_conn _ < <(measure "$binary" "$work/connect-$name-$round.json" --scenario connect-storm)
    read -r f_cpu f_conn f_del < <(measure "$binary" "$work/fanout-$name-$round.json" --scenario fanout \
      --senders 1 --rate "$rate" --duration "$duration" --ramp-up 0)
    echo "round $round $name: connect-storm ${c_cpu} s for $c_conn connections; fanout ${f_cpu} s for $f_conn connections and $f_del deliveries" >&2
    echo "$name $c_cpu $c_conn $f_cpu $f_conn $f_del" >>"$results"
  done
done

echo
echo "| build | CPU per connection (connect-storm) | CPU per delivery (fanout beyond connect-storm) | runs |"
echo "|---|---|---|---|"
awk '{
  n[$1]++
  if ($3 > 0) pc[$1] += $2 / $3 * 1e6
  if ($6 > 0) pd[$1] += ($4 - $2) / $6 * 1e6
} END {
  for (b in n) printf "| %s | %.0f µs | %.2f µs | %d |\n", b, pc[b] / n[b], pd[b] / n[b], n[b]
}' "$results" | sort
