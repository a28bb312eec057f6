#!/usr/bin/env bash
# './natter up --observe' with a real Prometheus and Alertmanager: every target of the shipped configuration is
# scraped and healthy, the rules load, and after a short load-test run (with one gateway drained half-way and four
# slow readers the gateways close with 4008) the recording rules, the series behind the alerts and every query of
# every dashboard hold data from every service (PostgreSQL through its exporter); no alert but the Watchdog fires,
# and the drain sent nothing to the test's own webhook but the Watchdog. Then the alerting path end to end: under
# load NATS is stopped; NatterNatsDown reaches the webhook's page receiver within its for: plus the evaluation
# interval and the page's group wait, while the alerts it inhibits fire in Prometheus and reach nobody. Ctrl-C stops
# Prometheus, Alertmanager and the exporter with the rest.
set -euo pipefail

TEST=observe
# Ports of a range of their own: ./natter test runs this beside other stages, which pick from 20000 up.
FREE_PORT_FROM=10000 FREE_PORT_SPAN=4000
# shellcheck source=tests/stack.sh
. "$(dirname "${BASH_SOURCE[0]}")/stack.sh"
prometheus_port="$(free_port)"; exporter_port="$(free_port)"

cargo build -q -p natter-loadtest
export NATTER_LOAD_TEST_KEY="observe-test-key-0123456789"
# Every gateway with a fixed 16 KiB socket send buffer and a 32-frame queue: a reader that stops is closed as a
# slow consumer within seconds, not after the megabytes a kernel-sized buffer would hold.
export NATTER_SOCKET_SEND_BUFFER=16384 NATTER_OUTBOUND_QUEUE=32
# The test's own receiver: every notification Alertmanager posts, one JSON line each with its path and the time.
hook_port="$(free_port)"
python3 - "$hook_port" "$tmp/hooks.jsonl" <<'PY' &
import http.server, json, sys, time
port, out = int(sys.argv[1]), sys.argv[2]
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with open(out, "a") as f:
            f.write(json.dumps({"path": self.path, "at": time.time(), "body": body}) + "\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Hook).serve_forever()
PY
hook_pid=$!
touch "$tmp/hooks.jsonl"
alertmanager_port="$(free_port)"
# A service that dies stays down: NATS, stopped below, is not started again.
NATTER_MAX_RESTARTS=0 stack_up --observe --prometheus-port "$prometheus_port" --exporter-port "$exporter_port" \
  --alertmanager-port "$alertmanager_port" --alert-webhook "http://127.0.0.1:$hook_port"
prom="$(jq -r .prometheus "$tmp/out")"
am="$(jq -r .alertmanager "$tmp/out")"
[ "$am" = "http://127.0.0.1:$alertmanager_port" ] || fail "the endpoints name Alertmanager as '$am'"
api="$(jq -r .api "$tmp/out")"

# One more gateway outside the stack's supervisor (which would stop everything when a gateway exits), scraped
# with the others, for the run to drain.
extra_port="$(free_port)"
NATS_URL="$(jq -r .nats_url "$tmp/out")" NATS_USER=natter-gateway \
  NATS_PASSWORD="$(sed -n 's/^NATTER_NATS_GATEWAY_PASSWORD=//p' "$(jq -r .nats_credentials "$tmp/out")")" NATTER_GATEWAY_LISTEN="127.0.0.1:$extra_port" NATTER_GATEWAY_ID=gw-drained \
  NATTER_JWKS_URL="$api/.well-known/jwks.json" NATTER_DRAIN_JITTER=8s "$ROOT/target/debug/natter-gateway" \
  2>"$tmp/gateway-drained.log" &
extra_pid=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$extra_port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
targets="$tmp/data/prometheus/targets/gateway.json"
jq --arg address "127.0.0.1:$extra_port" '. + [{targets: [$address], labels: {instance: "gw-drained"}}]' \
  "$targets" >"$targets.new" && mv "$targets.new" "$targets"
[ "$prom" = "http://127.0.0.1:$prometheus_port" ] || fail "the endpoints name Prometheus as '$prom'"

query() { curl -fsS --get "$prom/api/v1/query" --data-urlencode "query=$1" | jq -c '.data.result'; }

# Six targets (three gateways, a persister, the auth API, the PostgreSQL exporter), all healthy.
healthy=""
for _ in $(seq 1 60); do
  healthy="$(curl -fsS "$prom/api/v1/targets" | jq '[.data.activeTargets[] | select(.health == "up")] | length')"
  [ "$healthy" = 6 ] && break
  sleep 1
done
[ "$healthy" = 6 ] || fail "$healthy of 6 targets healthy: $(curl -fsS "$prom/api/v1/targets" | jq -c '[.data.activeTargets[] | {job: .labels.job, health, lastError}]')"
# Loaded, and none failing (the long SLO windows are evaluated once a minute: not yet, maybe).
rules="$(curl -fsS "$prom/api/v1/rules" | jq '[.data.groups[].rules[] | select(.health != "err")] | length')"
want="$(cat "$ROOT"/prometheus/rules/*.yml | grep -cE '^ +- (alert|record):')"
[ "$rules" = "$want" ] || fail "$rules of $want rules loaded and healthy: $(curl -fsS "$prom/api/v1/rules" |
  jq -c '[.data.groups[].rules[] | select(.health == "err") | {name, lastError}]')"

"$ROOT/target/debug/natter-loadtest" run --api "http://127.0.0.1:$api_port" \
  --gateway "ws://127.0.0.1:$gateway_port/ws" --gateway "ws://127.0.0.1:$((gateway_port + 1))/ws" \
  --gateway "ws://127.0.0.1:$extra_port/ws" --drain-gateway-pid "$extra_pid" \
  --users 200 --rooms 4 --senders 2 --rate 10 --size 1000 --duration 12s --ramp-up 0 --workers 1 \
  --slow-readers 4 --verify-history --max-loss 0 >"$tmp/loadtest" 2>&1 ||
  { cat "$tmp/loadtest" >&2; fail "the load-test run failed"; }
grep -q "draining gateway process $extra_pid" "$tmp/loadtest" || fail "the run drained no gateway: $(cat "$tmp/loadtest")"
grep -qE '^ +closes .*4008 [1-9]' "$tmp/loadtest" || fail "no slow reader was closed with 4008: $(cat "$tmp/loadtest")"
# Two scrapes after the run.
sleep 11

check() { # what promql: the query must return at least one sample
  local result
  result="$(query "$2")"
  [ "$(jq length <<<"$result")" -gt 0 ] || fail "$1: '$2' returned no data"
  echo "ok: $1 ($2 = $(jq -r '.[0].value[1]' <<<"$result"))"
}
check "every connection was seen" 'sum(max_over_time(natter_gateway_connections[2m])) >= 200'
check "deliveries counted" 'sum(increase(natter_gateway_messages_out_total[2m])) > 0'
check "deliveries recorded" 'max_over_time(natter:deliveries:rate1m[2m]) > 0'
check "delivery latency recorded" 'max_over_time(natter:delivery_latency_seconds:p99_5m[2m]) >= 0'
check "ack latency recorded" 'max_over_time(natter:ack_latency_seconds:p99_5m[2m]) >= 0'
check "rows written" 'max_over_time(natter:persister_rows:rate1m[2m]) > 0'
check "the stream's size" 'max(natter_stream_last_seq) > 0'
check "the persister's lag" 'max(natter_persister_lag_seconds) >= 0'
check "API requests by route" 'sum(natter:api_requests:rate5m) > 0'
check "tokens minted" 'sum(natter_api_tokens_issued_total) >= 200'
check "the signing key's age" 'max(natter_api_signing_key_age_seconds) >= 0'
check "every service on NATS" 'count(natter_nats_connected == 1) == 4'
check "open files against the limit" 'max(process_open_fds{job="natter-gateway"} / process_max_fds{job="natter-gateway"}) < 0.9'
check "PostgreSQL through its exporter" 'pg_up == 1'
check "slow consumers closed" 'sum(increase(natter_gateway_slow_consumer_disconnects_total[2m])) > 0'
check "the drain, scraped while it ran" 'max_over_time(natter_gateway_draining{instance="gw-drained"}[2m]) == 1'
check "the drained gateway went away" 'min_over_time(up{instance="gw-drained"}[1m]) == 0'
# The drained gateway's target is down, on purpose: no alert but the Watchdog fires, nor waits out its for: (one
# the drain raised is pending once the rules are evaluated after a scrape that found the gateway gone, as the
# check above did: 5 s later at most), and nothing but the Watchdog reached the webhook.
sleep 5
raised="$(query 'ALERTS{alertname!="Watchdog"}')"
[ "$raised" = "[]" ] || fail "alerts fire or are pending after the drain: $raised"
echo "ok: no alert but the Watchdog fires or is pending"
hooked() { # the alert names posted to the webhook at path $1 (all paths when empty)
  # A line being written may be read half: skipped, read whole the next time.
  jq -rR --arg path "$1" 'fromjson? | select($path == "" or .path == $path) | .body.alerts[].labels.alertname' \
    "$tmp/hooks.jsonl" | sort -u
}
for _ in $(seq 1 30); do [ "$(hooked /watchdog)" = Watchdog ] && break; sleep 1; done
[ "$(hooked /watchdog)" = Watchdog ] || fail "the Watchdog did not reach its receiver: $(cat "$tmp/hooks.jsonl")"
[ "$(hooked "")" = Watchdog ] || fail "a drained gateway raised alerts: $(hooked "")"
echo "ok: the Watchdog reached /watchdog; the drain paged nothing and raised nothing"

# The alerting path end to end: load running, NATS stopped.
"$ROOT/target/debug/natter-loadtest" run --api "http://127.0.0.1:$api_port" \
  --gateway "ws://127.0.0.1:$gateway_port/ws" --gateway "ws://127.0.0.1:$((gateway_port + 1))/ws" \
  --users 40 --rooms 2 --senders 2 --rate 5 --size 200 --duration 120s --ramp-up 0 --workers 1 \
  >"$tmp/loadtest-fault" 2>&1 &
fault_load_pid=$!
# Its 40 users connected and sending (ramp-up 0) before the stop.
sleep 5
nats_pid="$(pgrep -f -- "-c $tmp/data/nats-auth.conf" | head -1)"
[ -n "$nats_pid" ] || fail "no nats-server of the stack found"
kill -TERM "$nats_pid"
stopped=$SECONDS stopped_at="$(date +%s.%N)"

# While NatterNatsDown waits out its for:, the first run is read back. The long SLO windows are evaluated once a
# minute: wait for an evaluation that saw the run's sends. Then every rule is healthy and every dashboard query
# holds data over the last 4 minutes, which hold that run.
for _ in $(seq 1 75); do
  [ "$(query 'natter:slo_errors:ratio_rate30d{slo="send_availability"} >= 0' | jq length)" -gt 0 ] && break
  sleep 1
done
rules="$(curl -fsS "$prom/api/v1/rules" | jq '[.data.groups[].rules[] | select(.health == "ok")] | length')"
[ "$rules" = "$want" ] || fail "$rules of $want rules evaluated and healthy after the run: $(curl -fsS "$prom/api/v1/rules" |
  jq -c '[.data.groups[].rules[] | select(.health != "ok") | {name, health, lastError}]')"
python3 "$ROOT/tests/dashboards.py" --prometheus "$prom" || fail "a dashboard query returned no data"

# for: 1m, a 5 s evaluation (and scrape) interval, the page route's 10 s group wait, and 15 s to spare. The page's
# time is the webhook's, when it arrived.
budget=95
page=""
while [ -z "$page" ] && [ $((SECONDS - stopped)) -le "$budget" ]; do
  sleep 1
  page="$(hooked /page)"
done
arrived="$(jq -rR 'fromjson? | select(.path == "/page") | .at' "$tmp/hooks.jsonl" | head -1)"
waited="$(awk -v a="${arrived:-0}" -v s="$stopped_at" 'BEGIN { printf "%d", a - s }')"
[ "$page" = NatterNatsDown ] && [ "$waited" -le "$budget" ] ||
  fail "pages ${waited} s after the stop: '$page', not NatterNatsDown within ${budget} s; Prometheus fires: $(query 'ALERTS{alertstate="firing"}')"
echo "ok: NatterNatsDown paged ${waited} s after NATS stopped (budget ${budget} s)"
# What it stands in for fires in Prometheus, and Alertmanager holds it suppressed, inhibited by it.
for _ in $(seq 1 30); do
  [ "$(query 'ALERTS{alertstate="firing", alertname="NatterNatsDisconnected"}' | jq length)" -gt 0 ] && break
  sleep 1
done
disconnected="$(query 'ALERTS{alertstate="firing", alertname="NatterNatsDisconnected"}' | jq length)"
[ "$disconnected" -gt 0 ] || fail "NatterNatsDisconnected does not fire with NATS stopped"
# Prometheus sends a firing alert to Alertmanager at once and again every 10 s (--rules.alert.resend-delay).
inhibited=""
held_inhibited() { # whether Alertmanager holds every NatterNatsDisconnected suppressed; what it said in $inhibited
  inhibited="$(curl -fsS "$am/api/v2/alerts?inhibited=true" |
    jq -c '[.[] | select(.labels.alertname == "NatterNatsDisconnected") | {state: .status.state, by: .status.inhibitedBy}]')"
  [ "$(jq 'length > 0 and all(.state == "suppressed" and (.by | length) > 0)' <<<"$inhibited")" = true ]
}
for _ in $(seq 1 30); do held_inhibited && break; sleep 1; done
held_inhibited || fail "NatterNatsDisconnected is not held inhibited by Alertmanager: $inhibited"
echo "ok: NatterNatsDisconnected fires for $disconnected services, held inhibited: $inhibited"
burning="$(query 'ALERTS{alertstate="firing", alertname="NatterErrorBudgetBurningFast"}' | jq -c '[.[].metric.slo]')"
[ "$(hooked "" | grep -cvxE 'Watchdog|NatterNatsDown')" = 0 ] ||
  fail "inhibited alerts reached the webhook: $(hooked "")"
echo "ok: nothing but NatterNatsDown and the Watchdog reached the webhook (burning fast in Prometheus: $burning)"

kill "$fault_load_pid" "$hook_pid" 2>/dev/null || true
wait "$fault_load_pid" "$hook_pid" 2>/dev/null || true
stack_down
curl -fsS "$prom/-/ready" >/dev/null 2>&1 && fail "Prometheus still answers after Ctrl-C"
curl -fsS "$am/-/ready" >/dev/null 2>&1 && fail "Alertmanager still answers after Ctrl-C"
echo "observe test: passed"
