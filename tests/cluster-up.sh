#!/usr/bin/env bash
# './natter up --cluster': docker-compose.yml's topology on this machine. The cluster comes up (3 NATS nodes, 2
# auth APIs, 3 gateways, 2 persisters, HAProxy, PostgreSQL), every URL it prints answers and every service is
# ready, the web client and API answer through HAProxy and so does each gateway's public URL; a short load-test
# run through HAProxy loses nothing and the history holds every acknowledged message; the chat stream and the
# revoked-sessions bucket have 3 replicas and the three NATS nodes route to each other; then SIGTERM (or Ctrl-C) leaves no process, namespace,
# bridge, veth, nftables table or listening socket behind.
#
# As root it runs twice: with network namespaces (after a first run killed outright, whose leftovers the start
# must clear), then on loopback addresses (the fallback without root). With NATTER_CLUSTER_NETNS=0 set it runs the
# loopback fallback only.
set -euo pipefail

TEST=cluster-up
# shellcheck source=tests/stack.sh
. "$(dirname "${BASH_SOURCE[0]}")/stack.sh"
say() { echo "$TEST test: $*" >&2; }
die() { fail "$*"; }
# shellcheck source=scripts/cluster.sh
. "$ROOT/scripts/cluster.sh"
trap 'cleanup; [ -z "${CLUSTER_TAG:-}" ] || cluster_teardown' EXIT

cargo build -q -p natter-loadtest -p natter-auth-api -p natter-gateway -p natter-persister
export NATTER_LOAD_TEST_KEY="cluster-test-key-0123456789abcdef"

# A /24 that nothing of this machine uses: no namespace of ours, no address on an interface, nothing listening
# on its loopback twin.
pick_network() {
  local c
  for _ in $(seq 1 50); do
    c=$((1 + RANDOM % 254))
    export NATTER_CLUSTER_NET="10.77.$c"
    cluster_names
    ip netns list 2>/dev/null | grep -q "^natter-$CLUSTER_TAG-" && continue
    ip -o addr show 2>/dev/null | grep -q " 10\.77\.$c\." && continue
    ss -Hltn 2>/dev/null | grep -q " 127\.77\.$c\." && continue
    return 0
  done
  fail "found no free network 10.77.x.0/24"
}

run_cluster() { # mode: netns or loopback
  local mode="$1"
  pick_network
  api_port="$(free_port)"; pg_port="$(free_port)"
  start() {
    : >"$tmp/out"
    set -m
    NATTER_CLUSTER_NETNS="$([ "$mode" = netns ] && echo 1 || echo 0)" "$ROOT/natter" up --cluster --json --no-build \
      --api-port "$api_port" --pg-port "$pg_port" --data-dir "$tmp/data-$mode" >"$tmp/out" 2>"$tmp/err" &
    up_pid=$!
    set +m
    wait_endpoints "--cluster ($mode)"
  }
  start
  if [ "$mode" = netns ]; then
    # A run killed outright (no teardown) leaves its namespaces, HAProxy and PostgreSQL; the next start on the
    # same network and data directory removes them and comes up.
    kill -KILL "$up_pid"
    wait "$up_pid" 2>/dev/null || true
    start
    grep -q "processes a previous run left" "$tmp/err" || fail "the killed run's processes were not stopped: $(cat "$tmp/err")"
    # A second start on the network of a live run is refused, and takes nothing from it.
    local status=0
    "$ROOT/natter" up --cluster --no-build --api-port "$(free_port)" --pg-port "$(free_port)" \
      --data-dir "$tmp/data-second" >/dev/null 2>"$tmp/second.err" || status=$?
    [ "$status" = 64 ] && grep -q "runs on the network" "$tmp/second.err" \
      || fail "a second start on a live run's network was not refused ($status): $(cat "$tmp/second.err")"
  fi
  local endpoints
  endpoints="$(head -n 1 "$tmp/out")"
  if [ "$mode" = netns ]; then
    grep -q "instead" "$tmp/err" && fail "fell back to loopback although root: $(cat "$tmp/err")"
    ip netns list | grep -q "^natter-$CLUSTER_TAG-gateway-3" || fail "no namespace natter-$CLUSTER_TAG-gateway-3"
  else
    grep -q "address on loopback" "$tmp/err" || fail "the loopback fallback was not announced"
  fi

  # Every URL it prints answers.
  local api web lb url host
  api="$(jq -er .api <<<"$endpoints")" && web="$(jq -er .web <<<"$endpoints")" && lb="$(jq -er .lb <<<"$endpoints")" \
    || fail "endpoints lack api, web or lb: $endpoints"
  [ "$api" = "http://127.0.0.1:$api_port" ] || fail "the API is $api, not HAProxy's 127.0.0.1:$api_port"
  grep -q '<title>Natter</title>' <<<"$(curl -fsS "$web")" || fail "$web does not serve the web client"
  curl -fsS "$api/api/openapi.json" >/dev/null || fail "the API does not answer through HAProxy"
  curl -fsS "$api/.well-known/jwks.json" | jq -e '.keys | length > 0' >/dev/null || fail "no JWKS through HAProxy"
  [ "$(jq '.metrics | length' <<<"$endpoints")" = 7 ] || fail "not 7 services' metrics: $endpoints"
  for url in $(jq -r '.metrics[]' <<<"$endpoints"); do
    curl -fsS "$url" >/dev/null || fail "$url does not answer"
    curl -fsS "${url%/metrics}/readyz" >/dev/null || fail "${url%/metrics}/readyz is not ready"
  done
  # A request without a token reaches a gateway, which refuses it (401): through /ws, at each gateway's own address
  # and through each public URL.
  [ "$(jq '.gateways | length' <<<"$endpoints")" = 3 ] || fail "not 3 gateways: $endpoints"
  local public=() n
  for n in 1 2 3; do public+=("ws://127.0.0.1:$api_port/gateway-$n/ws"); done
  for url in "$lb" $(jq -r '.gateways[]' <<<"$endpoints") "${public[@]}"; do
    url="http://${url#ws://}"
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" = 401 ] || fail "$url does not reach a gateway"
  done
  # A browser's WebSocket upgrade from the page's origin (HAProxy's) is let through to the token check; one from
  # another origin is refused.
  upgrade() { # origin -> the status a gateway answers
    curl -s -o /dev/null -w '%{http_code}' -H "Origin: $1" -H 'Connection: Upgrade' -H 'Upgrade: websocket' \
      -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' \
      "http://127.0.0.1:$api_port/gateway-2/ws"
  }
  [ "$(upgrade "$api")" = 401 ] || fail "an upgrade from the page's origin $api is refused: $(upgrade "$api")"
  [ "$(upgrade http://elsewhere.example)" = 403 ] || fail "an upgrade from another origin is not refused"
  local assigned
  for _ in $(seq 1 50); do
    assigned="$(curl -fsS "$api/api/gateway" 2>/dev/null | jq -r .url || true)"
    [[ " ${public[*]} " == *" $assigned "* ]] && break
    sleep 0.2
  done
  [[ " ${public[*]} " == *" $assigned "* ]] \
    || fail "GET /api/gateway hands out '$assigned', not a URL through HAProxy"

  # Users get their gateways from the API, as browsers do, and connect through HAProxy.
  "$ROOT/target/debug/natter-loadtest" run --api "$api" --users 30 --rooms 3 --senders 2 --rate 2 --duration 4s \
    --ramp-up 0 --workers 1 --verify-history --max-loss 0 --report "$tmp/report-$mode.json" >"$tmp/loadtest" 2>&1 \
    || { cat "$tmp/loadtest" >&2; fail "the load-test run through HAProxy ($mode) failed"; }
  [ "$(jq .messages.acked "$tmp/report-$mode.json")" -gt 0 ] || fail "no message acknowledged"
  echo "ok ($mode): $(jq -r '"\(.messages.acked) acked, \(.faults.lost) lost, history \(.history.missing) missing"' "$tmp/report-$mode.json")"

  # The chat stream and the revoked-sessions bucket have 3 replicas, and the three nodes form one cluster.
  [ "$(jq '.nats_urls | length' <<<"$endpoints")" = 3 ] || fail "not 3 NATS nodes: $endpoints"
  local monitor others
  for url in $(jq -r '.nats_urls[]' <<<"$endpoints"); do
    host="${url#nats://}" host="${host%:*}" monitor="http://$host:8222"
    for stream in CHAT KV_natter_revoked_sessions; do
      # Three peers: the leader and two replicas, or, while a leader is being elected again (nats-server 2.9 after
      # a restart), three replicas; asked again for up to 30 s.
      local kept=0
      for _ in $(seq 1 60); do
        jq -e --arg s "$stream" '[.account_details[].stream_detail[] | select(.name == $s)]
          | length == 1 and .[0].config.num_replicas == 3
            and ((.[0].cluster.replicas | length) + (if .[0].cluster.leader then 1 else 0 end)) == 3' \
          >/dev/null 2>&1 <<<"$(curl -fsS "$monitor/jsz?streams=true&config=true")" && { kept=1; break; }
        sleep 0.5
      done
      [ "$kept" = 1 ] || fail "the $stream stream is not kept in 3 replicas: $(curl -s "$monitor/jsz?streams=true&config=true")"
    done
    others="$(curl -fsS "$monitor/routez" | jq -r '[.routes[].remote_id] | unique | length')"
    [ "$others" = 2 ] || fail "$host routes to $others other nodes: $(curl -s "$monitor/routez")"
  done

  # What the persisters report of the broker (every 5 s, from the stream's info and their server's INFO), as the
  # monitoring endpoints above see it: a leader, 3 copies current of 3, 3 servers in the cluster.
  local persisters=0 page health
  for url in $(jq -r '.metrics[]' <<<"$endpoints"); do
    grep -q '^natter_stream_leader' <<<"$(curl -fsS "$url")" || continue
    persisters=$((persisters + 1))
    for _ in $(seq 1 30); do
      page="$(curl -fsS "$url")"
      health="$(grep -E '^(natter_stream_leader|natter_stream_replicas\{state="current"\}|natter_stream_replicas_configured|natter_nats_cluster_servers) ' <<<"$page" | sort | tr '\n' ' ')"
      [ "$health" = 'natter_nats_cluster_servers 3 natter_stream_leader 1 natter_stream_replicas_configured 3 natter_stream_replicas{state="current"} 3 ' ] && break
      sleep 1
    done
    [ "$health" = 'natter_nats_cluster_servers 3 natter_stream_leader 1 natter_stream_replicas_configured 3 natter_stream_replicas{state="current"} 3 ' ] ||
      fail "$url reports the broker as: $health"
  done
  [ "$persisters" = 2 ] || fail "$persisters persisters report the stream's health, not 2"

  # With namespaces SIGTERM to natter alone (a service manager's stop: natter must stop every service itself and
  # remove the network); on loopback Ctrl-C, SIGINT to the whole process group as a terminal sends it.
  local stop="Ctrl-C"
  if [ "$mode" = netns ]; then stop=SIGTERM; kill -TERM "$up_pid"; else kill -INT -- "-$up_pid"; fi
  for _ in $(seq 1 300); do kill -0 "$up_pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$up_pid" 2>/dev/null && fail "'natter up --cluster' still running 30 s after $stop"
  local status=0
  wait "$up_pid" || status=$?
  [ "$status" = 0 ] || fail "'natter up --cluster' exited with $status after $stop"
  local left
  left="$( (pgrep -a -g "$up_pid"; pgrep -af "$tmp") || true)"
  up_pid=""
  [ -z "$left" ] || fail "processes left after $stop: $left"
  left="$(ip netns list 2>/dev/null | grep "^natter-$CLUSTER_TAG-" || true)"
  [ -z "$left" ] || fail "namespaces left after $stop: $left"
  left="$(ip -o link show 2>/dev/null | grep -E "natter-($CLUSTER_TAG-|br$CLUSTER_TAG)" || true)"
  [ -z "$left" ] || fail "links left after $stop: $left"
  if command -v nft >/dev/null; then
    left="$(nft list tables 2>/dev/null | grep "natter-up-$CLUSTER_TAG" || true)"
    [ -z "$left" ] || fail "nftables tables left after $stop: $left"
  fi
  left="$(ss -Hltn | grep -E " (127\.0\.0\.1:$api_port|(10|127)\.77\.${NATTER_CLUSTER_NET##*.}\.[0-9]+:[0-9]+) " || true)"
  [ -z "$left" ] || fail "still listening after $stop: $left"
}

if [ "${NATTER_CLUSTER_NETNS:-1}" != 0 ] && [ "$(id -u)" = 0 ]; then run_cluster netns; fi
run_cluster loopback
echo "cluster-up test: passed"
