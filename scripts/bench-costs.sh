#!/usr/bin/env bash
# What a connection and a delivery cost, in CPU time, for builds side by side: for each round and each build, a
# fleet of that build (./natter up --release --no-build from the build's directory: NATS, PostgreSQL, the auth API
# in its load-test mode, GATEWAYS gateway processes, one persister) on free ports, then
#
#   connect  --scenario connect-storm: USERS connect and join rooms of 100 as fast as they are accepted
#   fanout   the same users again, one sender per room at RATE messages/s for DURATION
#
# with the harness watching nats-server's, the persister's, the auth API's and PostgreSQL's CPU (--watch-cpu) beside its own and
# the gateways' (their metrics): CPU per connection of the connect storm, CPU per delivery of the fan-out, and
# deliveries per CPU second of the relay (gateways + nats-server), per role and build, and the ratio of each build
# to the first. CPU is user + system time from /proc over each phase, all processes of a role summed.
#
#   ./natter bench --costs [--users 30000] [--gateways 2] [--rate 2] [--duration 20s] [--rounds 2]
#                          [--fanout-users N] [--history-readers N] [--perf SECONDS] [--skip-fanout] [--no-connect]
#                          [--harness BINARY] NAME=BIN_DIR...
#   ./natter bench --costs --storm [--users 48000] [--gateways 4] [--rate 1] [--duration 40s] NAME=BIN_DIR...
#
# --no-connect leaves the connect storm out: the fan-out runs on a fresh fleet, so its memory per connection (once
# connected, and after the traffic) is the fleet's own. --fanout-users runs the fan-out with fewer users than the connect storm (the saturation shape: 10,000 users over
# 2 gateways); --history-readers adds readers of history pages to it (their p99 and the auth API's CPU per page).
# --storm measures a reconnect storm instead: the fan-out runs, and a third of the way into it the first gateway is
# killed (SIGKILL); its clients (12,000 by default: a gateway process holds at most 18,000, so the survivors must
# have room for them) come back spread over the others, rejoin and recover (./natter up starts the killed one again,
# and a client refused elsewhere may land on it: its CPU counts with the survivors'). The survivors' CPU (from /proc) from the
# kill until every client is connected again, less what they spent in as long a time just before (scaled to the
# clients they then held), divided by the clients that came back, is the CPU per reconnect; it is printed beside
# the same run's CPU per first connection, with the replays the survivors read from the stream and shared.
#
# BIN_DIR holds natter-gateway, natter-auth-api, natter-persister and natter-loadtest (a release build's
# target/release, or a copy of it); with no build named, target/release (built first). Every build is measured
# with one harness: --harness, else the first build's natter-loadtest. --perf records the first
# gateway's stacks for SECONDS of the first round's connect storm (perf record -g) into the work directory. The
# JSON reports stay in the work directory it names.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

users="" gateways="" rate="" duration="" rounds=2 perf_secs="" fanout=1 harness="" fanout_users="" history_readers=0
storm=0 connect=1
builds=()
while [ $# -gt 0 ]; do
  case "$1" in
    --users) users="${2:?}"; shift ;;
    --gateways) gateways="${2:?}"; shift ;;
    --rate) rate="${2:?}"; shift ;;
    --duration) duration="${2:?}"; shift ;;
    --rounds) rounds="${2:?}"; shift ;;
    --perf) perf_secs="${2:?}"; shift ;;
    --skip-fanout) fanout=0 ;;
    --no-connect) connect=0 ;;
    --harness) harness="${2:?}"; shift ;;
    --fanout-users) fanout_users="${2:?}"; shift ;;
    --history-readers) history_readers="${2:?}"; shift ;;
    --storm) storm=1 ;;
    --costs) ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *=*) builds+=("$1") ;;
    *) echo "bench-costs: unknown argument $1" >&2; exit 64 ;;
  esac
  shift
done
if [ "$storm" = 1 ]; then
  users="${users:-48000}" gateways="${gateways:-4}" rate="${rate:-1}" duration="${duration:-40s}"
else
  users="${users:-30000}" gateways="${gateways:-2}" rate="${rate:-2}" duration="${duration:-20s}"
fi
fanout_users="${fanout_users:-$users}"
for n in "$users" "$gateways" "$rounds" "$fanout_users"; do
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] || { echo "bench-costs: counts must be positive integers" >&2; exit 64; }
done
if [ $((users / gateways)) -ge 18000 ]; then
  echo "bench-costs: $users users over $gateways gateways is over 18,000 per gateway; add --gateways" >&2; exit 64
fi
if [ "${#builds[@]}" = 0 ]; then
  echo "bench-costs: building (release)" >&2
  cargo build --release -q -p natter-auth-api -p natter-gateway -p natter-persister -p natter-loadtest
  builds=("current=$ROOT/target/release")
fi
harness="${harness:-${builds[0]#*=}/natter-loadtest}"
[ -x "$harness" ] || { echo "bench-costs: $harness is not an executable" >&2; exit 64; }
for build in "${builds[@]}"; do
  for bin in natter-gateway natter-auth-api natter-persister natter-loadtest; do
    [ -x "${build#*=}/$bin" ] || { echo "bench-costs: no $bin in ${build#*=}" >&2; exit 64; }
  done
done

work="$(mktemp -d /tmp/natter-bench-costs.XXXXXX)"
chmod 755 "$work"
fleet=""
trap 'stop_group "$fleet"' EXIT
rooms=$(((users + 99) / 100))
workers=$(((users + 14999) / 15000))
fanout_rooms=$(((fanout_users + 99) / 100))
fanout_workers=$(((fanout_users + 14999) / 15000))
NATTER_LOAD_TEST_KEY="bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export NATTER_LOAD_TEST_KEY NATTER_MAX_CONNECTIONS=19000 NATTER_ACCESS_TOKEN_TTL=2h RUST_LOG="${NATTER_BENCH_LOG:-warn}"
echo "bench-costs: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); work in $work" >&2

# Brings up a fleet of the binaries in $1; sets fleet, targets and watch.
up() {
  local bin_dir="$1" data="$2"
  local api_port gw_port
  api_port="$(free_port)"
  gw_port=$((30000 + RANDOM % 20000))
  set -m
  NATTER_BIN_DIR="$bin_dir" "$ROOT/natter" up --json --no-build --no-web --release --gateways "$gateways" \
    --api-port "$api_port" --gateway-port "$gw_port" --persister-port "$(free_port)" --nats-port "$(free_port)" \
    --pg-port "$(free_port)" --data-dir "$data" >"$data.up" 2>"$data.err" &
  fleet=$!
  set +m
  for _ in $(seq 1 900); do [ -s "$data.up" ] && break; sleep 0.2; done
  [ -s "$data.up" ] || { cat "$data.err" >&2; echo "bench-costs: the fleet did not come up" >&2; exit 1; }
  targets=(--api "http://127.0.0.1:$api_port")
  local url
  for url in $(jq -r '.gateways[]' "$data.up"); do targets+=(--gateway "$url"); done
  # The metrics pages are the auth API's, the persister's, then the gateways': the last GATEWAYS are theirs.
  for url in $(jq -r ".metrics[-$gateways:][]" "$data.up"); do targets+=(--metrics "$url"); done
  watch=()
  local pid
  for pid in $(pgrep -g "$fleet" -x nats-server); do watch+=(--watch-cpu "nats=$pid"); done
  for pid in $(pgrep -g "$fleet" -f '/natter-persister$'); do watch+=(--watch-cpu "persister=$pid"); done
  for pid in $(pgrep -g "$fleet" -f '/natter-auth-api$'); do watch+=(--watch-cpu "auth-api=$pid"); done
  # PostgreSQL: the postmaster and the backend it forks per connection.
  pid="$(head -n 1 "$data"/*/postmaster.pid 2>/dev/null || true)"
  [ -n "$pid" ] && watch+=(--watch-cpu "postgres=$pid+")
}

# The first gateway's pid in the running fleet.
first_gateway() { pgrep -g "$fleet" -x natter-gateway | head -1; }

# Prints "ROLE PER_CONNECTION_US PER_DELIVERY_US" per role of a report, and "relay RATE".
costs_of() {
  jq -r '(.cpu | to_entries[] | "\(.key) \(.value.per_connection_us // 0) \(.value.per_delivery_us // 0)"),
         "relay \(.relay_deliveries_per_cpu_second // 0) 0"' "$1"
}

# User + system CPU seconds of the given processes, from /proc.
cpu_of() { local t=0 pid; for pid in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0))); done; echo "$t"; }
# The sum of a metric over the given metrics pages.
metric_sum() {
  local name="$1" url; shift
  for url in "$@"; do curl -fsS "$url" 2>/dev/null || true; done | awk -v n="$name" '$1 == n { s += $2 } END { printf "%d", s }'
}

if [ "$storm" = 1 ]; then
  [ "$gateways" -ge 2 ] || { echo "bench-costs: --storm needs at least 2 gateways" >&2; exit 64; }
  for build in "${builds[@]}"; do
    name="${build%%=*}" bin_dir="${build#*=}"
    up "$bin_dir" "$work/data-$name-storm"
    mapfile -t gw_pids < <(for url in $(jq -r '.gateways[]' "$work/data-$name-storm.up"); do
      port="${url##*:}" port="${port%%/*}"; ss -Hltnp "sport = :$port" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2; done)
    mapfile -t pages < <(jq -r ".metrics[-$gateways:][]" "$work/data-$name-storm.up")
    victim="${gw_pids[0]}" survivors=("${gw_pids[@]:1}") survivor_pages=("${pages[@]:1}")
    report="$work/storm-$name.json"
    "$harness" run "${targets[@]}" "${watch[@]}" --users "$users" --rooms "$rooms" --workers "$workers" \
      --scenario fanout --senders 1 --rate "$rate" --duration "$duration" --ramp-up 0 --max-loss 0 \
      --drain-timeout 60s --quiet --report "$report" >"$report.out" 2>&1 &
    harness_pid=$!
    until grep -q "all connected" "$report.out" 2>/dev/null; do sleep 0.2; done
    secs="${duration%s}"
    sleep $((secs / 3 - 5))
    # Five seconds of the survivors' steady work, then the kill.
    before_steady="$(cpu_of "${survivors[@]}")"; sleep 5; at_kill="$(cpu_of "${survivors[@]}")"
    held="$(metric_sum natter_gateway_connections "${survivor_pages[@]}")"
    replays_stream0="$(metric_sum 'natter_gateway_replays_total{source="stream"}' "${survivor_pages[@]}")"
    replays_shared0="$(metric_sum 'natter_gateway_replays_total{source="shared"}' "${survivor_pages[@]}")"
    kill -KILL "$victim"
    killed_at=$(date +%s.%N)
    # Until the gateways hold every client again (each poll logged): ./natter up restarts the killed gateway on its
    # port, and clients refused elsewhere may come back to it, so every gateway's page counts.
    while :; do
      held_now="$(metric_sum natter_gateway_connections "${pages[@]}")"
      echo "$(date +%s.%N) $held_now" >>"$work/storm-$name.polls"
      [ "$held_now" -ge "$users" ] && break
      (( $(date +%s) - ${killed_at%.*} > 120 )) && break
      sleep 0.2
    done
    back_at=$(date +%s.%N)
    # The killed gateway started again by the supervisor: all its CPU is since the kill.
    port="$(jq -r '.gateways[0]' "$work/data-$name-storm.up")" port="${port##*:}" port="${port%%/*}"
    restarted="$(ss -Hltnp "sport = :$port" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)"
    at_back="$(cpu_of "${survivors[@]}" ${restarted:+"$restarted"})"
    connected="$(metric_sum natter_gateway_connections "${survivor_pages[@]}")"
    replays_stream="$(( $(metric_sum 'natter_gateway_replays_total{source="stream"}' "${survivor_pages[@]}") - replays_stream0 ))"
    replays_shared="$(( $(metric_sum 'natter_gateway_replays_total{source="shared"}' "${survivor_pages[@]}") - replays_shared0 ))"
    wait "$harness_pid" || true
    grep -E "connected|faults|cpu per|reconnects|history" "$report.out" | sed "s/^/storm $name: /" >&2 || true
    python3 - "$name" "$before_steady" "$at_kill" "$at_back" "$killed_at" "$back_at" "$held" "$connected" "$users" \
      "$replays_stream" "$replays_shared" "$rooms" "$((gateways - 1))" "$report" <<'PY'
import json, sys
(name, steady0, kill, back, t_kill, t_back, held, connected, users, stream, shared, rooms, survivors, report) = sys.argv[1:]
ticks = 100.0
steady = (int(kill) - int(steady0)) / ticks / 5.0            # CPU-s per s before the kill
window = float(t_back) - float(t_kill)
spent = (int(back) - int(kill)) / ticks
# Clients that came back: the harness counts each reconnection (the killed gateway's clients, once each).
came_back = json.load(open(report)).get("reconnects") or (int(connected) - int(held))
# The survivors' steady work scaled to every client they hold after the kill.
baseline = steady * window * int(users) / max(int(held), 1)
per_reconnect = (spent - baseline) * 1e6 / max(came_back, 1)
first = json.load(open(report)).get("cpu", {}).get("gateways", {}).get("per_connection_us")
print(f"| {name} | {came_back} | {window:.1f} s | {spent:.2f} s | {baseline:.2f} s | {per_reconnect:.0f} µs | "
      f"{first:.0f} µs | {per_reconnect / first:.2f} | {stream} for {rooms} rooms on {survivors} gateways | {shared} |"
      if first else f"| {name} | {came_back} | {window:.1f} s | {spent:.2f} s | {baseline:.2f} s | {per_reconnect:.0f} µs | — | — | {stream} | {shared} |")
PY
    stop_group "$fleet"
    fleet=""
  done | { echo; echo "| build | clients back | kill to all back | survivors' CPU | of it steady work | CPU per reconnect | CPU per first connection (same run) | ratio | replays read from the stream | replays shared |"; echo "|---|---|---|---|---|---|---|---|---|---|"; cat; }
  echo
  echo "reports: $work"
  exit 0
fi

results="$work/results"
: >"$results"
for ((round = 1; round <= rounds; round++)); do
  for build in "${builds[@]}"; do
    name="${build%%=*}" bin_dir="${build#*=}"
    up "$bin_dir" "$work/data-$name-$round"
    perf_pid=""
    if [ -n "$perf_secs" ] && [ "$round" = 1 ]; then
      perf record -g -F 499 -p "$(first_gateway)" -o "$work/perf-$name.data" -- sleep "$perf_secs" \
        >"$work/perf-$name.log" 2>&1 &
      perf_pid=$!
    fi
    report="$work/connect-$name-$round.json"
    [ "$connect" = 1 ] && "$harness" run "${targets[@]}" "${watch[@]}" --users "$users" --rooms "$rooms" \
      --workers "$workers" --scenario connect-storm --quiet --report "$report" >"$report.out" 2>&1 || true
    [ -n "$perf_pid" ] && wait "$perf_pid" || true
    if [ "$connect" = 1 ]; then
      grep -E "connected|cpu per|gateway memory" "$report.out" | sed "s/^/round $round $name connect: /" >&2 || true
      costs_of "$report" | sed "s/^/$name connect /" >>"$results"
    fi
    if [ "$fanout" = 1 ]; then
      report="$work/fanout-$name-$round.json"
      "$harness" run "${targets[@]}" "${watch[@]}" --users "$fanout_users" --rooms "$fanout_rooms" \
        --workers "$fanout_workers" --scenario fanout --senders 1 --rate "$rate" --duration "$duration" --ramp-up 0 \
        --history-readers "$history_readers" --max-loss 0 --quiet --report "$report" >"$report.out" 2>&1 || true
      grep -E "deliveries|end-to-end|faults|cpu per|relay|history page|gateway RSS|gateway memory" "$report.out" \
        | sed "s/^/round $round $name fanout: /" >&2 || true
      costs_of "$report" | sed "s/^/$name fanout /" >>"$results"
    fi
    stop_group "$fleet"
    fleet=""
  done
done

# Means over the rounds: per connection from the connect storms, per delivery and the relay from the fan-outs.
echo
echo "$users users in rooms of 100 over $gateways gateways; fan-out at $rate messages/s per room for $duration; $rounds rounds"
echo
first="${builds[0]%%=*}"
awk -v first="$first" '
  { build = $1; phase = $2; role = $3 }
  phase == "connect" && role != "relay" { sum[role "|µs per connection|" build] += $4; n[role "|µs per connection|" build]++ }
  phase == "fanout" && role != "relay" { sum[role "|µs per delivery|" build] += $5; n[role "|µs per delivery|" build]++ }
  phase == "fanout" && role == "relay" { sum["relay (gateways + nats)|deliveries per CPU second|" build] += $4; n["relay (gateways + nats)|deliveries per CPU second|" build]++ }
  { builds[build] = 1 }
  END {
    printf "| role | figure |"; for (b in builds) printf " %s |", b; printf " ratio to %s |\n", first
    printf "|---|---|"; for (b in builds) printf "---|"; printf "---|\n"
    for (k in n) { split(k, p, "|"); rows[p[1] "|" p[2]] = 1 }
    for (r in rows) {
      split(r, p, "|"); printf "| %s | %s |", p[1], p[2]
      base = n[r "|" first] ? sum[r "|" first] / n[r "|" first] : 0
      ratios = ""
      for (b in builds) {
        v = n[r "|" b] ? sum[r "|" b] / n[r "|" b] : 0
        printf (v >= 100 ? " %.0f |" : " %.2f |"), v
        if (b != first && base > 0) ratios = ratios sprintf("%s %.2f ", b, v / base)
      }
      printf " %s|\n", ratios
    }
  }' "$results" | { read -r head; read -r rule; echo "$head"; echo "$rule"; sort; }
echo
echo "reports: $work"
