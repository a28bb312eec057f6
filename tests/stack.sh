# Sourced by the tests that run './natter up' on free ports and a temporary data directory: set TEST to the
# test's name first. Gives ROOT, tmp, the ports (api_port, nats_port, pg_port, persister_port, gateway_port with
# the next one free too, admin_port with the next two free too), fail, wait_endpoints, stack_up (starts './natter up --json --no-web' with those ports and the given
# flags, and waits for its endpoints in $tmp/out) and stack_down (Ctrl-C, then nothing it started may be left).
# Whatever happens, everything under $tmp is killed and removed at exit.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d "/tmp/natter-$TEST-test.XXXXXX")"
chmod 755 "$tmp"
up_pid=""
fail() {
  echo "$TEST test: $*" >&2
  if [ -f "$tmp/err" ]; then
    echo "--- natter up stderr:" >&2; tail -n 30 "$tmp/err" >&2
    # The log of a service that 'natter up' says exited, before cleanup removes it.
    local log
    for log in $(grep -oE 'see [^ ]+\.log' "$tmp/err" | cut -d' ' -f2 | sort -u); do
      [ -f "$log" ] && { echo "--- $log:" >&2; tail -n 20 "$log" >&2; }
    done
  fi
  exit 1
}
cleanup() {
  [ -n "$up_pid" ] && pkill -KILL -g "$up_pid" 2>/dev/null || true
  pkill -KILL -f "$tmp" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
api_port="$(free_port)"; nats_port="$(free_port)"; pg_port="$(free_port)"; persister_port="$(free_port)"
gateway_port="$(free_port)"
while busy $((gateway_port + 1)); do gateway_port="$(free_port)"; done
# The auth API's admin port, and the two gateways' after it.
admin_port="$(free_port)"
while busy $((admin_port + 1)) || busy $((admin_port + 2)); do admin_port="$(free_port)"; done

stack_up() { # extra './natter up' flags...
  # Job control: the stack leads its own process group, so cleanup can kill all of it.
  set -m
  "$ROOT/natter" up --json --no-web --gateways 2 --api-port "$api_port" --nats-port "$nats_port" \
    --pg-port "$pg_port" --gateway-port "$gateway_port" --persister-port "$persister_port" \
    --admin-port "$admin_port" --data-dir "$tmp/data" "$@" >"$tmp/out" 2>"$tmp/err" &
  up_pid=$!
  set +m
  wait_endpoints "$*"
}

# Waits for the endpoints line (in $tmp/out) of the 'natter up' running as up_pid, which may build first:
# `wait_endpoints FLAGS` (for messages).
wait_endpoints() {
  for _ in $(seq 1 1800); do
    [ -s "$tmp/out" ] && return 0
    kill -0 "$up_pid" 2>/dev/null || fail "'natter up $1' exited before it was ready"
    sleep 0.2
  done
  fail "'natter up $1' printed no endpoints"
}

stack_down() {
  kill -INT "$up_pid"
  for _ in $(seq 1 300); do kill -0 "$up_pid" 2>/dev/null || break; sleep 0.1; done
  wait "$up_pid" 2>/dev/null || true
  up_pid=""
  sleep 0.5
  local left
  left="$(pgrep -af "$tmp" || true)"
  [ -z "$left" ] || fail "still running after Ctrl-C: $left"
}
