#!/usr/bin/env bash
# Measures message search (GET /api/search) on a million messages: starts its own PostgreSQL (a throwaway cluster
# on a free port) and the auth API, registers a user who owns ROOMS rooms and a second user who owns ROOMS private
# rooms the first is not in, loads MESSAGES messages into `messages` with COPY (Zipf word frequencies, spread over
# today's and the next three days' partitions), VACUUM ANALYZE, then times a common word, a medium word, a rare
# word, two words, a phrase, and the common and rare words in one room: p50/p99/max over HTTP, matches, 422
# `query_too_broad` answers, and PostgreSQL's and the auth API's CPU per search (from /proc). Prints EXPLAIN
# (ANALYZE, BUFFERS) for the common and rare words and a Markdown table, and writes them into the section "Search
# on a million messages" of docs/benchmarks.md (unless --no-docs), with the machine and the command.
#
#   [MESSAGES=1000000] [ROOMS=100] [REQUESTS=200] [BUDGET=90] [NATTER_BIN_DIR=target/release] \
#     scripts/bench-search.sh [--no-docs]
#
# BUDGET: the most seconds spent timing one query (at least 20 requests are made whatever it says). The binaries
# come from NATTER_BIN_DIR, else target/release, else target/debug (build them first: cargo build --release -p
# natter-auth-api).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

MESSAGES="${MESSAGES:-1000000}" ROOMS="${ROOMS:-100}" REQUESTS="${REQUESTS:-200}" BUDGET="${BUDGET:-90}"
docs=1
while [ $# -gt 0 ]; do
  case "$1" in
    --no-docs) docs=0 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown flag $1" >&2; exit 64 ;;
  esac
  shift
done

if [ -n "${NATTER_BIN_DIR:-}" ]; then bindir="$NATTER_BIN_DIR"
elif [ -x target/release/natter-auth-api ]; then bindir=target/release
else bindir=target/debug; fi
api_bin="$bindir/natter-auth-api"
[ -x "$api_bin" ] || { echo "bench: no $api_bin; build it (cargo build --release -p natter-auth-api) or set NATTER_BIN_DIR" >&2; exit 1; }
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
[ -x "$pg_bin/postgres" ] || { echo "bench: PostgreSQL's server is not installed (/usr/lib/postgresql/*/bin)" >&2; exit 1; }
# PostgreSQL refuses to run as root: as root, run its programs as the postgres user.
as_pg=()
[ "$(id -u)" = 0 ] && as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --)

tmp="$(mktemp -d /tmp/natter-bench-search.XXXXXX)"
chmod 755 "$tmp"
pg_group="" api_group=""
cleanup() {
  stop_group "$api_group"
  stop_group "$pg_group" # SIGINT: PostgreSQL's fast shutdown
  rm -rf "$tmp"
}
trap cleanup EXIT

# PostgreSQL: its own cluster in $tmp, on a free port, default settings.
pg_port="$(free_port)"
mkdir "$tmp/pg"
[ "$(id -u)" = 0 ] && chown postgres: "$tmp/pg"
chmod 700 "$tmp/pg"
"${as_pg[@]}" "$pg_bin/initdb" -D "$tmp/pg" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$tmp/initdb.log" 2>&1 \
  || { cat "$tmp/initdb.log" >&2; exit 1; }
set -m
"${as_pg[@]}" "$pg_bin/postgres" -D "$tmp/pg" -p "$pg_port" -k "$tmp/pg" -c listen_addresses=127.0.0.1 \
  >"$tmp/postgres.log" 2>&1 &
pg_group=$!
set +m
for _ in $(seq 1 300); do "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" -U postgres && break; sleep 0.1; done
"$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" -U postgres || { cat "$tmp/postgres.log" >&2; exit 1; }
psql -X -h 127.0.0.1 -p "$pg_port" -U postgres -qc "CREATE DATABASE natter"
db="postgres://postgres@127.0.0.1:$pg_port/natter"
postmaster="$(head -n 1 "$tmp/pg/postmaster.pid")"

# The auth API (it applies the migrations at start), with budgets no benchmark reaches.
api_port="$(free_port)"
api="http://127.0.0.1:$api_port"
set -m
RUST_LOG=warn "$api_bin" --listen "127.0.0.1:$api_port" --database-url "$db" --access-token-ttl 2h \
  --user-requests-per-minute 1000000 --user-searches-per-minute 1000000 --user-room-creations-per-hour 100000 \
  >"$tmp/api.log" 2>&1 &
api_group=$!
set +m
for _ in $(seq 1 300); do curl -fsS -o /dev/null "$api/healthz" 2>/dev/null && break; sleep 0.2; done
curl -fsS -o /dev/null "$api/healthz" || { cat "$tmp/api.log" >&2; echo "bench: the auth API did not come up" >&2; exit 1; }
api_pid="$api_group"

register() {
  curl -fsS -X POST "$api/api/register" -H 'content-type: application/json' \
    -d "{\"username\":\"$1\",\"password\":\"bench-password-$1\"}"
}
# make_rooms TOKEN PRIVATE COUNT PREFIX: creates COUNT rooms, prints their ids.
make_rooms() {
  local i
  for i in $(seq 1 "$3"); do
    curl -fsS -X POST "$api/api/rooms" -H "authorization: Bearer $1" -H 'content-type: application/json' \
      -d "{\"name\":\"$4 $i\",\"private\":$2}" | jq -r .id
  done
}
me="$(register searcher)"
other="$(register stranger)"
token="$(jq -r .access_token <<<"$me")"
me_id="$(jq -r .user.id <<<"$me")" other_id="$(jq -r .user.id <<<"$other")"
echo "bench: creating $ROOMS rooms for the searcher and $ROOMS private rooms it is not in" >&2
make_rooms "$token" false "$ROOMS" team >"$tmp/rooms.mine"
make_rooms "$(jq -r .access_token <<<"$other")" true "$ROOMS" private >"$tmp/rooms.other"
cat "$tmp/rooms.mine" "$tmp/rooms.other" >"$tmp/rooms.all"
[ "$(wc -l <"$tmp/rooms.all")" = $((2 * ROOMS)) ] || { echo "bench: rooms missing" >&2; exit 1; }

# The day partitions the migrations made: today (UTC) and the next three days.
start="$(psql -X "$db" -qAtc "SELECT extract(epoch FROM (now() AT TIME ZONE 'UTC')::date::timestamp AT TIME ZONE 'UTC')")"
echo "bench: loading $MESSAGES messages with COPY" >&2
load_started="$(date +%s.%N)"
python3 "$ROOT/scripts/bench-search.py" generate --messages "$MESSAGES" --rooms "$tmp/rooms.all" \
  --authors "$me_id:searcher,$other_id:stranger" --start "$start" --days 4 --picks "$tmp/picks.json" \
  | psql -X "$db" -v ON_ERROR_STOP=1 -qc \
    "COPY messages (epoch, seq, room_id, client_id, user_id, user_name, body, sent_at) FROM STDIN"
load_secs="$(awk -v a="$load_started" -v b="$(date +%s.%N)" 'BEGIN {printf "%.0f", b - a}')"
echo "bench: loaded in ${load_secs} s; VACUUM ANALYZE" >&2
psql -X "$db" -qc "VACUUM ANALYZE messages"
psql -X "$db" -qAtc "SELECT tableoid::regclass, count(*) FROM messages GROUP BY 1 ORDER BY 1" >&2

cmd="scripts/bench-search.sh"
[ "$MESSAGES" = 1000000 ] || cmd="MESSAGES=$MESSAGES $cmd"
[ "$ROOMS" = 100 ] || cmd="ROOMS=$ROOMS $cmd"
[ "$REQUESTS" = 200 ] || cmd="REQUESTS=$REQUESTS $cmd"
[ "$BUDGET" = 90 ] || cmd="BUDGET=$BUDGET $cmd"
[ -z "${NATTER_BIN_DIR:-}" ] || cmd="NATTER_BIN_DIR=$NATTER_BIN_DIR $cmd"
# Overflow checks (their panic message in the binary) mark a debug build.
build="$("$api_bin" --version), $(grep -qa 'attempt to add with overflow' "$api_bin" && echo 'a debug build' || echo 'a release build')"
flags=()
[ "$docs" = 1 ] && flags+=(--docs)
python3 "$ROOT/scripts/bench-search.py" run --api "$api" --token "$token" --db-url "$db" --rooms "$tmp/rooms.mine" \
  --picks "$tmp/picks.json" --pg-pid "$postmaster" --api-pid "$api_pid" --requests "$REQUESTS" --budget "$BUDGET" \
  --out "$tmp/result.json" --command "$cmd" --api-build "$build" "${flags[@]}"
echo "bench: loading took ${load_secs} s" >&2
