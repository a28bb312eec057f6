#!/usr/bin/env bash
# './natter up --lb': HAProxy in front of the gateways. A load-test run connects all its users through the one
# URL, one gateway is drained (SIGTERM) half-way, its clients come back through the load balancer to the other,
# nothing is lost and the history holds every acknowledged message (--verify-history --max-loss 0); the stack
# carries on without the drained gateway, and Ctrl-C stops HAProxy with the rest.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d /tmp/natter-lb-test.XXXXXX)"
chmod 755 "$tmp"
up_pid=""
fail() { echo "lb test: $*" >&2; [ -f "$tmp/err" ] && { echo "--- natter up stderr:" >&2; tail -n 30 "$tmp/err" >&2; }; exit 1; }
cleanup() {
  [ -n "$up_pid" ] && pkill -KILL -g "$up_pid" 2>/dev/null || true
  pkill -KILL -f "$tmp" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
api_port="$(free_port)"; nats_port="$(free_port)"; pg_port="$(free_port)"; persister_port="$(free_port)"
lb_port="$(free_port)"; gateway_port="$(free_port)"
while busy $((gateway_port + 1)); do gateway_port="$(free_port)"; done

cargo build -q -p natter-loadtest
export NATTER_LOAD_TEST_KEY="lb-test-key-0123456789abcdef" NATTER_DRAIN_JITTER=2s
set -m
"$ROOT/natter" up --json --no-web --lb --gateways 2 --api-port "$api_port" --nats-port "$nats_port" \
  --pg-port "$pg_port" --gateway-port "$gateway_port" --persister-port "$persister_port" --lb-port "$lb_port" \
  --data-dir "$tmp/data" >"$tmp/out" 2>"$tmp/err" &
up_pid=$!
set +m
for _ in $(seq 1 1800); do
  [ -s "$tmp/out" ] && break
  kill -0 "$up_pid" 2>/dev/null || fail "'natter up --lb' exited before it was ready"
  sleep 0.2
done
[ -s "$tmp/out" ] || fail "'natter up --lb' printed no endpoints"
lb="$(jq -r .lb "$tmp/out")"
[ "$lb" = "ws://127.0.0.1:$lb_port/ws" ] || fail "the endpoints name the load balancer as '$lb'"
curl -fsS "http://127.0.0.1:$lb_port/readyz" >/dev/null || fail "the load balancer does not reach a gateway"

# The second gateway's process, by the port it listens on.
drained="$(ss -Hltnp "sport = :$((gateway_port + 1))" | grep -oE 'pid=[0-9]+' | head -n 1 | cut -d= -f2)"
[ -n "$drained" ] || fail "cannot find the second gateway's process"

"$ROOT/target/debug/natter-loadtest" run --api "http://127.0.0.1:$api_port" --gateway "$lb" \
  --drain-gateway-pid "$drained" --users 200 --rooms 4 --senders 2 --rate 2 --duration 12s --ramp-up 0 \
  --workers 1 --verify-history --max-loss 0 --report "$tmp/report.json" >"$tmp/loadtest" 2>&1 \
  || { cat "$tmp/loadtest" >&2; fail "the load-test run through the load balancer failed"; }
grep -q "draining gateway process $drained" "$tmp/loadtest" || fail "no gateway was drained: $(cat "$tmp/loadtest")"
reconnects="$(jq .reconnects "$tmp/report.json")"
[ "$reconnects" -gt 0 ] || fail "no client came back through the load balancer after the drain"
echo "ok: $(jq -r '"\(.messages.acked) acked, \(.faults.lost) lost, \(.reconnects) reconnects, history \(.history.missing) missing"' "$tmp/report.json")"

kill -0 "$up_pid" 2>/dev/null || fail "'natter up' stopped when a gateway was drained"
kill -0 "$drained" 2>/dev/null && fail "the drained gateway is still running"
curl -fsS "http://127.0.0.1:$lb_port/readyz" >/dev/null || fail "the load balancer lost the remaining gateway"

kill -INT "$up_pid"
for _ in $(seq 1 300); do kill -0 "$up_pid" 2>/dev/null || break; sleep 0.1; done
wait "$up_pid" 2>/dev/null || true
up_pid=""
sleep 0.5
left="$(pgrep -af "$tmp" || true)"
[ -z "$left" ] || fail "still running after Ctrl-C: $left"
echo "lb test: passed"
