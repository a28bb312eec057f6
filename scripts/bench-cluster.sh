#!/usr/bin/env bash
# What the NATS cluster costs: the fan-out benchmark run twice in one session, first on `./natter up` (one NATS
# server, the chat stream in 1 replica) and then on `./natter up --cluster` (three clustered NATS nodes, the chat
# stream and buckets in 3 replicas, two persisters, two auth APIs, three gateways), each with the
# same users, rooms and rate, and prints side by side: deliveries per second, delivery and ack p99, and CPU time
# (user + system, from /proc) per delivery by role, NATS counting every node. Figures go into docs/benchmarks.md
# (unless --no-docs) with the machine and the command.
#
#   ./natter bench --cluster [--users 20000] [--room-size 100] [--rate 1] [--duration 30s] [--no-docs]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

users=20000 room_size=100 rate=1 duration=30s docs=1
while [ $# -gt 0 ]; do
  case "$1" in
    --cluster) ;;
    --users) users="${2:?}"; shift ;;
    --room-size) room_size="${2:?}"; shift ;;
    --rate) rate="${2:?}"; shift ;;
    --duration) duration="${2:?}"; shift ;;
    --no-docs) docs=0 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown flag $1" >&2; exit 64 ;;
  esac
  shift
done
for n in "$users" "$room_size"; do
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] || { echo "bench: counts must be positive integers" >&2; exit 64; }
done
rooms=$(((users + room_size - 1) / room_size))
workers=$(((users + 14999) / 15000))

tmp="$(mktemp -d /tmp/natter-bench-cluster.XXXXXX)"
chmod 755 "$tmp"
group=""
cleanup() {
  stop_group "$group"
  rm -rf "$tmp"
}
trap cleanup EXIT

NATTER_LOAD_TEST_KEY="bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
# Tokens must outlive the run; each of the three gateways may hold 19,000 sockets.
export NATTER_LOAD_TEST_KEY NATTER_MAX_CONNECTIONS=19000 NATTER_ACCESS_TOKEN_TTL=2h RUST_LOG="${NATTER_BENCH_LOG:-warn}"

echo "bench: building (release)" >&2
cargo build --release -q -p natter-auth-api -p natter-gateway -p natter-persister -p natter-loadtest

# CPU seconds (utime + stime) of every process in process group $1, one "pid comm seconds" line each.
cpu_by_process() {
  # shellcheck disable=SC2046
  python3 - $(pgrep -g "$1" || true) <<'PY'
import os, sys
tick = os.sysconf("SC_CLK_TCK")
for pid in sys.argv[1:]:
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        continue
    # The command name is in parentheses and may hold spaces; utime and stime are fields 14 and 15.
    comm = stat[stat.index("(") + 1:stat.rindex(")")].replace(" ", "_")
    fields = stat[stat.rindex(")") + 2:].split()
    print(pid, comm, (int(fields[11]) + int(fields[12])) / tick)
PY
}

# run_one MODE (single|cluster): brings the stack up, runs the fan-out, writes $tmp/MODE.json (the report) and
# $tmp/MODE.cpu (per-process CPU seconds before and after the run).
run_one() {
  local mode="$1" flags=() data="$tmp/data-$1"
  [ "$mode" = cluster ] && flags=(--cluster)
  set -m
  "$ROOT/natter" up --json --release --no-build --no-web "${flags[@]}" --gateways 3 --persisters 2 \
    --api-port "$(free_port)" --gateway-port "$(free_port)" --admin-port "$(free_port)" \
    --persister-port "$(free_port)" --nats-port "$(free_port)" --pg-port "$(free_port)" --data-dir "$data" \
    >"$tmp/up-$mode" 2>"$tmp/up-$mode.err" &
  group=$!
  set +m
  for _ in $(seq 1 1500); do [ -s "$tmp/up-$mode" ] && break; sleep 0.2; done
  [ -s "$tmp/up-$mode" ] || { tail -30 "$tmp/up-$mode.err" >&2; echo "bench: the $mode stack did not come up" >&2; exit 1; }
  local api gateway_flags=() g
  api="$(jq -r .api "$tmp/up-$mode")"
  for g in $(jq -r '.gateways[]' "$tmp/up-$mode"); do gateway_flags+=(--gateway "$g"); done
  cpu_by_process "$group" >"$tmp/$mode.cpu.before"
  local args=(run --scenario fanout --api "$api" "${gateway_flags[@]}" --users "$users" --rooms "$rooms" --senders 1
              --rate "$rate" --duration "$duration" --ramp-up 0 --workers "$workers" --max-loss 0
              --report "$tmp/$mode.json")
  echo "bench: [$mode] natter-loadtest ${args[*]}" >&2
  target/release/natter-loadtest "${args[@]}" >"$tmp/$mode.txt" 2>&1 || echo "bench: [$mode] the run missed an SLO" >&2
  cpu_by_process "$group" >"$tmp/$mode.cpu.after"
  stop_group "$group"
  group=""
}

run_one single
run_one cluster

python3 - "$tmp" "$users" "$room_size" "$rate" "$duration" "$docs" <<'PY'
import json, os, platform, subprocess, sys
tmp, users, room_size, rate, duration, docs = sys.argv[1:7]
roles = {"nats-server": "NATS", "natter-gateway": "gateways", "natter-persiste": "persisters",
         "natter-auth-api": "auth APIs", "postgres": "PostgreSQL", "haproxy": "HAProxy"}
def cpu(mode):
    def read(name):
        out = {}
        for line in open(os.path.join(tmp, f"{mode}.cpu.{name}")):
            pid, comm, secs = line.split()
            out[pid] = (comm, float(secs))
        return out
    before, after = read("before"), read("after")
    by_role = {}
    for pid, (comm, secs) in after.items():
        role = roles.get(comm)
        if role:
            by_role[role] = by_role.get(role, 0.0) + secs - before.get(pid, (comm, 0.0))[1]
    return by_role
rows = {}
for mode in ("single", "cluster"):
    r = json.load(open(os.path.join(tmp, f"{mode}.json")))
    m = r["messages"]
    rows[mode] = dict(delivered=m["delivered"], rate=m["deliveries_per_sec"], p99=m["latency"]["p99_ms"],
                      ack_p99=m["ack_latency"]["p99_ms"], lost=r["faults"]["lost"], cpu=cpu(mode))
def us(mode, role):
    d = rows[mode]["delivered"]
    return rows[mode]["cpu"].get(role, 0.0) / d * 1e6 if d else float("nan")
lines = []
lines.append("| | one NATS server, R1 | three-node cluster, R3 | cluster / single |")
lines.append("|---|---|---|---|")
s, c = rows["single"], rows["cluster"]
lines.append(f"| deliveries | {s['delivered']:,} | {c['delivered']:,} | |")
lines.append(f"| deliveries per second | {s['rate']:,.0f} | {c['rate']:,.0f} | {c['rate']/s['rate']:.2f} |")
lines.append(f"| delivery p99 | {s['p99']:.1f} ms | {c['p99']:.1f} ms | {c['p99']/s['p99']:.2f} |")
lines.append(f"| ack p99 | {s['ack_p99']:.1f} ms | {c['ack_p99']:.1f} ms | {c['ack_p99']/s['ack_p99']:.2f} |")
lines.append(f"| lost | {s['lost']} | {c['lost']} | |")
total = {}
for role in ["NATS", "gateways", "persisters", "auth APIs", "PostgreSQL", "HAProxy"]:
    a, b = us("single", role), us("cluster", role)
    total["single"] = total.get("single", 0) + a
    total["cluster"] = total.get("cluster", 0) + b
    ratio = f"{b/a:.2f}" if a > 0 else "n/a"
    lines.append(f"| CPU per delivery, {role} | {a:.2f} µs | {b:.2f} µs | {ratio} |")
lines.append(f"| CPU per delivery, all | {total['single']:.2f} µs | {total['cluster']:.2f} µs | {total['cluster']/total['single']:.2f} |")
table = "\n".join(lines)
print(table)
if docs == "1":
    nats = subprocess.run(["bash", "-c", "/usr/sbin/nats-server --version 2>/dev/null || nats-server --version"],
                          capture_output=True, text=True).stdout.strip()
    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    section = f"""
## What the NATS cluster costs (`./natter bench --cluster`)

Command: `./natter bench --cluster --users {users} --room-size {room_size} --rate {rate} --duration {duration}`.
Machine: {os.cpu_count()} cores ({cpu_model}), {platform.system()} {platform.release()}, {nats}. The same fan-out (one
sender a room, {room_size} members a room) on `./natter up` (one NATS server, the chat stream in 1 replica) and then
on `./natter up --cluster` (three NATS nodes, the stream in 3 replicas), both with three gateways and two
persisters, in one session; the harness connects to the gateways directly (HAProxy here may hold only about
9,950 connections, its share of the 20,000 open files a process may have). CPU is user + system time from /proc over each harness run (its connects and its send phase), summed
over every process of a role (NATS counts all three nodes). Every process of both stacks and the harness share
the same two cores, so the rates are what the box gives; the CPU per delivery is what carries to a bigger one.

{table}
"""
    path = "docs/benchmarks.md"
    text = open(path).read()
    marker = "\n## What the NATS cluster costs"
    if marker in text:
        start = text.index(marker)
        nxt = text.find("\n## ", start + len(marker))
        text = text[:start] + section.rstrip("\n") + "\n" + (text[nxt:] if nxt != -1 else "")
    else:
        text = text.rstrip("\n") + "\n" + section
    open(path, "w").write(text)
    print("bench: figures written to docs/benchmarks.md", file=sys.stderr)
PY
