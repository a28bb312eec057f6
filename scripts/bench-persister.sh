#!/usr/bin/env bash
# Measures the persister on this machine: rows per second from a backlog of MESSAGES messages, and the time from
# publishing a message to its row. Brings up NATS and PostgreSQL with './natter up --release --gateways 0
# --persisters 0' on free ports, runs persister/examples/persister_bench.rs, stops the stack, and prints a Markdown
# block for docs/benchmarks.md.
#
#   MESSAGES=1000000 BATCH=1000 WRITERS=2 PERSISTERS=1 [CHANGES=20] [PG_SOCKET=1] [PG_SETTINGS="wal_compression=on"] \
#     scripts/bench-persister.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MESSAGES="${MESSAGES:-1000000}" BATCH="${BATCH:-1000}" WRITERS="${WRITERS:-2}" PERSISTERS="${PERSISTERS:-1}"
CHANGES="${CHANGES:-0}"
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

export RUST_LOG=warn
# A target directory of its own: the example's dev-dependencies unify features differently from the services'
# build in './natter up', and sharing one directory rebuilt half the workspace on every run.
cargo build --release -q -p natter-persister --example persister_bench --target-dir target/bench
set -m
"$ROOT/natter" up --json --release --gateways 0 --persisters 0 --api-port "$(free_port)" \
  --nats-port "$(free_port)" --pg-port "$(free_port)" --data-dir "$tmp/data" >"$tmp/up" 2>"$tmp/up.err" &
group=$!
set +m
for _ in $(seq 1 900); do [ -s "$tmp/up" ] && break; sleep 0.2; done
[ -s "$tmp/up" ] || { cat "$tmp/up.err" >&2; echo "the stack did not come up" >&2; exit 1; }
nats_url="$(jq -r .nats_url "$tmp/up")"
# The bench makes and reads the stream as the operator's NATS user (deploy/nats/auth.conf).
admin_password="$(sed -n 's/^NATTER_NATS_ADMIN_PASSWORD=//p' "$(jq -r .nats_credentials "$tmp/up")")"
database_url="$(jq -r .database_url "$tmp/up")"
# PG_SETTINGS="name=value ...": PostgreSQL settings to try (ALTER SYSTEM and a reload: only those a reload applies).
for setting in ${PG_SETTINGS:-}; do
  psql "$database_url" -qc "ALTER SYSTEM SET ${setting%%=*} = '${setting#*=}'" || exit 1
done
[ -z "${PG_SETTINGS:-}" ] || psql "$database_url" -qtAc "SELECT pg_reload_conf()" >/dev/null
# PG_SOCKET=1: reach PostgreSQL over its Unix socket (in the data directory) instead of TCP.
if [ "${PG_SOCKET:-0}" = 1 ]; then
  pg_port="${database_url##*:}" pg_port="${pg_port%%/*}"
  database_url="postgres://postgres@localhost:$pg_port/natter?host=$tmp/data/pg"
fi

cmd=(target/bench/release/examples/persister_bench --nats-url "$nats_url" --nats-user natter-admin
     --nats-password "$admin_password" --database-url "$database_url"
     --messages "$MESSAGES" --batch "$BATCH" --writers "$WRITERS" --persisters "$PERSISTERS" --changes "$CHANGES")
"${cmd[@]}" | tee "$tmp/result"

cat <<MD

### Persister, $(date -u +%Y-%m-%d)

Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB,
$(. /etc/os-release && echo "$PRETTY_NAME"), $(rustc --version), PostgreSQL $(psql --version | awk '{print $3}'),
$(/usr/sbin/nats-server --version 2>/dev/null || nats-server --version). Command: \`MESSAGES=$MESSAGES BATCH=$BATCH WRITERS=$WRITERS PERSISTERS=$PERSISTERS${PG_SETTINGS:+ PG_SETTINGS=\"$PG_SETTINGS\"} scripts/bench-persister.sh\`
(release build; NATS, PostgreSQL (default settings, fsync on) and the persister share the machine).

\`\`\`
$(cat "$tmp/result")
\`\`\`
MD
