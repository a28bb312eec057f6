#!/usr/bin/env bash
# Follows the README as a newcomer would: './natter up' brings the stack up and prints its endpoints, the README's
# curl examples work as written, and Ctrl-C (SIGINT) stops everything, leaving no process behind.
#
# Runs on free ports and a temporary data directory so it never disturbs a stack already running.
set -euo pipefail

TEST=natter-up
# shellcheck source=tests/stack.sh
. "$(dirname "${BASH_SOURCE[0]}")/stack.sh"
# The process group of the stack, kept after it exits to look for anything it left behind.
group=""

# Starts './natter up' in the background and waits for its endpoints line; sets up_pid and group.
start_stack() {
  : >"$tmp/out"
  # Job control, so the background job keeps SIGINT (a non-interactive shell starts '&' jobs with SIGINT ignored,
  # which a trap then cannot undo) and leads its own process group, as a job started from a terminal does.
  set -m
  "$ROOT/natter" up --json --api-port "$api_port" --nats-port "$nats_port" --pg-port "$pg_port" \
    --gateway-port "$gateway_port" --gateways 2 --persister-port "$persister_port" --admin-port "$admin_port" \
    --data-dir "$tmp/data" "$@" >"$tmp/out" 2>"$tmp/err" &
  up_pid=$!
  group="$up_pid"
  set +m
  # The JSON line appears once everything is ready (the first run may build).
  wait_endpoints "$*"
}

# Waits for './natter up' to exit 0 after a signal, then checks nothing it started is left.
check_stopped() {
  # Running means alive and not a zombie waiting to be reaped.
  running() { kill -0 "$up_pid" 2>/dev/null && [[ "$(ps -o stat= -p "$up_pid" 2>/dev/null)" != Z* ]]; }
  for _ in $(seq 1 300); do running || break; sleep 0.1; done
  if running; then fail "'natter up' still running 30s after $1: $(pgrep -a -g "$group")"; fi
  local status=0
  wait "$up_pid" || status=$?
  up_pid=""
  [ "$status" = 0 ] || fail "'natter up' exited with $status after $1"
  sleep 0.5
  local leftover
  leftover="$( (pgrep -a -g "$group"; pgrep -af "$tmp") || true)"
  [ -z "$leftover" ] || fail "processes left behind after $1: $leftover"
  local p
  for p in "$api_port" "$nats_port" "$pg_port" "$persister_port" "$gateway_port" $((gateway_port + 1)) \
    "$admin_port" $((admin_port + 1)) $((admin_port + 2)); do
    if busy "$p"; then fail "port $p still open after $1"; fi
  done
}

start_stack
endpoints="$(head -n 1 "$tmp/out")"
api="$(jq -er .api <<<"$endpoints")" || fail "no api in: $endpoints"
[ "$api" = "http://127.0.0.1:$api_port" ] || fail "api is $api"
jq -e '(.gateways | type == "array") and (.nats_url | startswith("nats://")) and
       (.database_url | startswith("postgres://")) and (.metrics | length >= 1)' <<<"$endpoints" >/dev/null \
  || fail "endpoints lack keys: $endpoints"
curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null || fail "readyz is not OK on the admin port"
# The public port serves only clients.
# (The web client's pages answer every other path there, /metrics included: what must not be there is the metrics.)
# (Read whole before grep: `grep -q` leaving early would fail curl's write, and the pipe with it.)
if grep -q '^natter_api_' <<<"$(curl -fsS "$api/metrics")"; then fail "the metrics are served on the API's public port"; fi
grep -q '^natter_api_' <<<"$(curl -fsS "http://127.0.0.1:$admin_port/metrics")" || fail "no metrics on the API's admin port"
# The address a person opens serves the web client.
web="$(jq -er .web <<<"$endpoints")" || fail "no web client URL in: $endpoints"
[ "$web" = "http://127.0.0.1:$api_port/" ] || fail "web is $web"
page="$(curl -fsS "$web")" || fail "$web does not answer"
grep -q '<title>Natter</title>' <<<"$page" || fail "$web does not serve the web client"
script="$(grep -o '/assets/[^"]*\.js' <<<"$page" | head -n 1 || true)"
[ -n "$script" ] && curl -fsS "$api$script" >/dev/null || fail "the web client's script $script is not served"
[ "$(jq -r '.gateways | join(" ")' <<<"$endpoints")" = "ws://127.0.0.1:$gateway_port/ws ws://127.0.0.1:$((gateway_port + 1))/ws" ] \
  || fail "gateways are not listed: $endpoints"
[ "$(jq '.metrics | length' <<<"$endpoints")" = 4 ] || fail "metrics endpoints missing: $endpoints"
for url in $(jq -r '.metrics[]' <<<"$endpoints"); do curl -fsS "$url" >/dev/null || fail "$url does not answer"; done
# The API hands out a registered gateway.
for _ in $(seq 1 50); do
  assigned="$(curl -fsS "$api/api/gateway" 2>/dev/null | jq -r .url || true)"
  [[ "$assigned" == ws://127.0.0.1:* ]] && break
  sleep 0.2
done
[[ "$assigned" == ws://127.0.0.1:* ]] || fail "no gateway assigned by $api/api/gateway"

# The README's API examples, exactly as written but for the port.
sed -n '/<!-- api-examples:start -->/,/<!-- api-examples:end -->/p' "$ROOT/README.md" \
  | sed -n '/^```sh$/,/^```$/p' | grep -v '^```' \
  | sed "s#127.0.0.1:8080#127.0.0.1:$api_port#g" >"$tmp/examples.sh"
[ "$(grep -c curl "$tmp/examples.sh")" -ge 5 ] || fail "found too few curl examples in README.md"
(cd "$tmp" && bash -euo pipefail "$tmp/examples.sh") >"$tmp/examples.out" 2>&1 \
  || { cat "$tmp/examples.out" >&2; fail "the README examples failed"; }
grep -Eq '"token_type": ?"Bearer"' "$tmp/examples.out" || { cat "$tmp/examples.out" >&2; fail "no token in the examples' output"; }

# Ctrl-C: a terminal sends SIGINT to the whole foreground process group; so does this.
kill -INT -- "-$group"
check_stopped "Ctrl-C"

# SIGTERM to the script alone (a service manager, or 'kill'): it must stop what it started by itself. The second
# start reuses the data directory, as a developer's next 'natter up' would.
start_stack --no-build
curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null || fail "readyz is not OK after a restart"
# A service that dies is reported and started again; the others keep serving meanwhile.
gw_pid="$(ss -ltnpH "sport = :$gateway_port" | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2)"
[ -n "$gw_pid" ] || fail "no process listens on the first gateway's port $gateway_port"
kill -KILL "$gw_pid"
curl -fsS "http://127.0.0.1:$((admin_port + 2))/readyz" >/dev/null || fail "the second gateway stopped serving"
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$((admin_port + 1))/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$((admin_port + 1))/readyz" >/dev/null || fail "the killed gateway was not started again"
grep -q "gateway 1 exited with status 137; restarting it" "$tmp/err" || fail "the restart was not reported: $(cat "$tmp/err")"
kill -TERM "$up_pid"
check_stopped "SIGTERM"
echo "natter up: started, served the README examples, restarted a killed gateway, stopped cleanly on Ctrl-C and on SIGTERM"
