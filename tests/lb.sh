#!/usr/bin/env bash
# './natter up --lb': HAProxy in front of the gateways. A load-test run connects all its users through the one
# URL at once (the gateways' per-address cap seeing the clients HAProxy names in its PROXY headers), one gateway is drained (SIGTERM) half-way, its clients come back through the load balancer to the other,
# nothing is lost and the history holds every acknowledged message (--verify-history --max-loss 0); the stack
# carries on without the drained gateway, and Ctrl-C stops HAProxy with the rest.
set -euo pipefail

TEST=lb
# shellcheck source=tests/stack.sh
. "$(dirname "${BASH_SOURCE[0]}")/stack.sh"
lb_port="$(free_port)"

cargo build -q -p natter-loadtest
# A cap of 40 connections still in HTTP per client address: the 200 users connecting at once through HAProxy come
# from 8 addresses (127.0.0.2-9, 25 each), which the gateways see in HAProxy's PROXY headers; were HAProxy's own
# address counted, the storm would be refused past 40.
export NATTER_LOAD_TEST_KEY="lb-test-key-0123456789abcdef" NATTER_DRAIN_JITTER=2s NATTER_MAX_PENDING_PER_ADDRESS=40
stack_up --lb --lb-port "$lb_port"
lb="$(jq -r .lb "$tmp/out")"
[ "$lb" = "ws://127.0.0.1:$lb_port/ws" ] || fail "the endpoints name the load balancer as '$lb'"
# A request without a token reaches a gateway through the balancer and is refused by it (401).
reaches() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$lb_port/ws")" = 401 ]; }
reaches || fail "the load balancer does not reach a gateway"

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

# Every connection through HAProxy carried a PROXY header the gateway accepted, and no client was refused for
# its address: the caps saw clients, not the balancer (the first gateway's counters; the second was drained).
metrics="$(curl -fsS "http://127.0.0.1:$((admin_port + 1))/metrics")"
refused="$(grep -E '^natter_gateway_(proxy_header_refused_total|pending_refused_total\{scope="address"\})' <<<"$metrics" \
  | awk '{s += $2} END {print s + 0}')"
[ "$refused" = 0 ] || fail "connections through HAProxy were refused: $(grep -E 'refused_total' <<<"$metrics")"
kill -0 "$up_pid" 2>/dev/null || fail "'natter up' stopped when a gateway was drained"
kill -0 "$drained" 2>/dev/null && fail "the drained gateway is still running"
reaches || fail "the load balancer lost the remaining gateway"

stack_down
echo "lb test: passed"
