# shellcheck shell=bash
# `./natter up --cluster`: docker-compose.yml's topology on this machine. Sourced by natter's cmd_up, which has
# parsed the flags, installed what is missing and built the binaries; this file uses its variables (data, bin_dir,
# web_dir, api_port, pg_port, json, observe, prometheus_port, exporter_port) and its helpers (start_pg,
# supervised, wait_ready, start_observers, print_endpoints, supervise, stop_all).
#
# Each compose service that is a container of its own is a "host" here: a network namespace with one address on
# a private /24 (NATTER_CLUSTER_NET, default 10.77.0: 10.77.0.0/24), joined by a veth pair to a bridge in the root
# namespace that holds .1, so the root namespace reaches every host and the hosts reach each other:
#
#   nats-1..3      .11-.13  nats-server -js, clustered (routes on 6222), clients on 4222, monitoring on 8222
#   api-1..2       .21-.22  the auth API on 8080, admin on 9180 (compose's ports)
#   gateway-1..3   .31-.33  the gateways on 9001, admin on 9190
#   persister-1..2 .41-.42  the persisters, admin on 9100
#
# PostgreSQL listens on the bridge's address (.1, --pg-port) in the root namespace; HAProxy listens on
# 127.0.0.1:--api-port in the root namespace, so a browser reaches it: the web client and API balanced over both
# APIs, /ws over the three gateways, /gateway-N/ws to gateway N alone (the public URL each gateway registers, so
# what GET /api/gateway hands out goes through HAProxy too). Prometheus and the PostgreSQL exporter (--observe)
# run in the root namespace. Every service is given every NATS node's URL and 3 replicas (the chat stream's and the
# revoked-sessions bucket's).
#
# Namespaces need root and a kernel that allows them. Without them (or with NATTER_CLUSTER_NETNS=0) each host is
# instead an address of its own on loopback, 127.<b>.<c>.<host> for NATTER_CLUSTER_NET a.b.c (127.0.0.0/8 is all
# loopback, no setup): the same topology, ports and addresses' last octets, without the isolation.
#
# Everything made here is named after the network, natter-<tag>-... with <tag> its 2nd and 3rd octets in hex
# (natter-4d00-nats-1, bridge natter-br4d00); a start first removes what a crashed run of the same network and
# data directory left (cmd_up calls cluster_clear_leftovers before it checks its ports), and refuses a network
# that a live run holds (/tmp/natter-cluster-<tag>.pid).
# No nftables table is made; the teardown removes one named natter-up-<tag> should a later version add it.

CLUSTER_HOSTS=(nats-1:11 nats-2:12 nats-3:13 api-1:21 api-2:22 gateway-1:31 gateway-2:32 gateway-3:33
  persister-1:41 persister-2:42)

# Sets CLUSTER_NET (a.b.c), CLUSTER_TAG and the names derived from them; exits 64 on a malformed network.
cluster_names() {
  CLUSTER_NET="${NATTER_CLUSTER_NET:-10.77.0}"
  local octets
  IFS=. read -ra octets <<<"$CLUSTER_NET"
  if ! [[ "$CLUSTER_NET" =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || [ "${octets[1]}" -gt 255 ] \
    || [ "${octets[2]}" -gt 255 ] || [ "${octets[0]}" -gt 255 ]; then
    say "NATTER_CLUSTER_NET takes the first three octets of a /24, such as 10.77.0 (got '$CLUSTER_NET')"
    exit 64
  fi
  CLUSTER_TAG="$(printf '%02x%02x' "${octets[1]}" "${octets[2]}")"
  CLUSTER_LOOPBACK_NET="127.${octets[1]}.${octets[2]}"
  CLUSTER_BRIDGE="natter-br$CLUSTER_TAG"
  CLUSTER_NFT_TABLE="natter-up-$CLUSTER_TAG"
}

# The namespace of HOST.
cluster_ns() { printf 'natter-%s-%s' "$CLUSTER_TAG" "$1"; }

# The address of HOST (or "root", the bridge's .1).
cluster_addr() {
  local entry
  [ "$1" = root ] && { printf '%s.1' "$CLUSTER_ADDR_NET"; return; }
  for entry in "${CLUSTER_HOSTS[@]}"; do
    [ "${entry%%:*}" = "$1" ] && { printf '%s.%s' "$CLUSTER_ADDR_NET" "${entry#*:}"; return; }
  done
  die "no cluster host $1"
}

# Runs a command on HOST, in its namespace or as it is on loopback: `cluster_run HOST COMMAND... &`. Only as a
# background job: it execs (and so does `ip netns exec`), so that $! is the service's own pid, the one stop_all
# signals.
cluster_run() {
  local host="$1"; shift
  if [ "$CLUSTER_NETNS" = 1 ]; then exec ip netns exec "$(cluster_ns "$host")" "$@"; else exec "$@"; fi
}

# Removes every namespace, veth, bridge and nftables table of this network, and kills what still runs in its
# namespaces. Idempotent: it runs at start (a crashed run's leftovers) and at every exit.
cluster_teardown() {
  command -v ip >/dev/null || return 0
  local ns pid link namespaces pids=()
  namespaces="$(ip netns list 2>/dev/null | awk '{print $1}' | grep "^natter-$CLUSTER_TAG-" || true)"
  # What still runs in them (a run killed outright left it) is stopped as a service manager would: SIGTERM, 10 s,
  # then SIGKILL. NATS nodes killed all at once can take minutes (nats-server 2.9) to elect their streams'
  # leaders again when the next run starts on their stores; stopped, they shut JetStream down cleanly.
  for ns in $namespaces; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null && pids+=("$pid"); done
  done
  if [ "${#pids[@]}" -gt 0 ]; then
    for _ in $(seq 1 100); do kill -0 "${pids[@]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
  for ns in $namespaces; do ip netns del "$ns" 2>/dev/null || true; done
  # A veth goes with its namespace; one made before its namespace was (a crash in between) is deleted by name.
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^natter-$CLUSTER_TAG-" || true); do
    ip link del "$link" 2>/dev/null || true
  done
  ip link del "$CLUSTER_BRIDGE" 2>/dev/null || true
  if command -v nft >/dev/null && nft list table inet "$CLUSTER_NFT_TABLE" >/dev/null 2>&1; then
    nft delete table inet "$CLUSTER_NFT_TABLE" 2>/dev/null || true
  fi
}

# A process's start time (clock ticks since boot), which tells it apart from a later process given the same pid.
cluster_start_time() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }

# Records every process started so far as PID:START-TIME in $data/cluster.pids, for cluster_clear_leftovers.
cluster_record_pids() {
  local pid
  for pid in "${PIDS[@]}"; do printf '%s:%s\n' "$pid" "$(cluster_start_time "$pid")"; done >"$data/cluster.pids"
}

# What a run that was killed outright (SIGKILL, a crash: no teardown) left: its namespaces with everything in them,
# its bridge, and its processes in the root namespace (HAProxy and PostgreSQL hold their ports, which the next start
# needs), those found by pid and start time in DATA_DIR/cluster.pids. `cluster_clear_leftovers DATA_DIR`.
cluster_clear_leftovers() {
  cluster_names
  # One run per network: another start on it would take its namespaces and addresses from under it.
  CLUSTER_OWNER="/tmp/natter-cluster-$CLUSTER_TAG.pid"
  local owner
  owner="$(cat "$CLUSTER_OWNER" 2>/dev/null || true)"
  if [ -n "$owner" ] && [ "${owner%%:*}" != "$$" ] && [ "$(cluster_start_time "${owner%%:*}")" = "${owner#*:}" ]; then
    say "a './natter up --cluster' (pid ${owner%%:*}) runs on the network $CLUSTER_NET; pick another with NATTER_CLUSTER_NET"
    exit 64
  fi
  printf '%s:%s\n' "$$" "$(cluster_start_time "$$")" >"$CLUSTER_OWNER"
  cluster_teardown
  [ -f "$1/cluster.pids" ] || return 0
  local entry pid left=()
  while IFS= read -r entry; do
    pid="${entry%%:*}"
    [ -n "$pid" ] && [ "$(cluster_start_time "$pid")" = "${entry#*:}" ] || continue
    # Killed with its namespace just now, not yet reaped.
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || continue
    kill -TERM "$pid" 2>/dev/null && left+=("$pid")
  done <"$1/cluster.pids"
  [ "${#left[@]}" -eq 0 ] && { rm -f "$1/cluster.pids"; return 0; }
  say "stopped ${#left[@]} processes a previous run left (pids ${left[*]})"
  for _ in $(seq 1 100); do kill -0 "${left[@]}" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "${left[@]}" 2>/dev/null || true
  rm -f "$1/cluster.pids"
}

# Makes the bridge and one namespace per host; returns non-zero (having removed what it made) if the kernel
# refuses any of it.
cluster_netns_setup() {
  ip link add "$CLUSTER_BRIDGE" type bridge || return 1
  ip addr add "$CLUSTER_NET.1/24" dev "$CLUSTER_BRIDGE" && ip link set "$CLUSTER_BRIDGE" up || return 1
  # HAProxy's own source address towards the gateways (cluster_lb_source), apart from other tools on the host.
  ip addr add "$CLUSTER_NET.2/24" dev "$CLUSTER_BRIDGE" || return 1
  local entry host ns veth
  for entry in "${CLUSTER_HOSTS[@]}"; do
    host="${entry%%:*}" ns="$(cluster_ns "${entry%%:*}")" veth="natter-$CLUSTER_TAG-${entry#*:}"
    ip netns add "$ns" || return 1
    ip link add "$veth" type veth peer name "${veth}p" || return 1
    ip link set "${veth}p" netns "$ns" || return 1
    ip -n "$ns" link set "${veth}p" name eth0 || return 1
    ip -n "$ns" addr add "$CLUSTER_NET.${entry#*:}/24" dev eth0 || return 1
    ip -n "$ns" link set eth0 up && ip -n "$ns" link set lo up || return 1
    ip link set "$veth" master "$CLUSTER_BRIDGE" && ip link set "$veth" up || return 1
  done
}

# Polls URL until jq FILTER holds on its JSON, up to 120 s (three nodes started again on the stores of a run that
# was killed recover every stream's raft group first: over a minute was seen on a loaded machine):
# `cluster_wait_json URL FILTER WHAT LOG`.
cluster_wait_json() {
  local i last="" deadline=$((SECONDS + 120))
  while [ "$SECONDS" -lt "$deadline" ]; do
    last="$(curl -fsS --max-time 2 "$1" 2>&1)" && jq -e "$2" >/dev/null 2>&1 <<<"$last" && return 0
    sleep 0.1
  done
  die "$3 within 120 s (its last answer: $(head -c 600 <<<"$last")); see $4"
}

# cluster_nats_group_whole SECONDS: whether, within SECONDS, every NATS node reports a JetStream meta leader of a
# group of 3.
cluster_nats_group_whole() {
  local deadline=$((SECONDS + $1)) n whole
  while [ "$SECONDS" -lt "$deadline" ]; do
    whole=0
    for n in 1 2 3; do
      curl -fsS --max-time 2 "http://$(cluster_addr "nats-$n"):8222/jsz" 2>/dev/null |
        jq -e '.meta_cluster.leader != null and .meta_cluster.leader != "" and .meta_cluster.cluster_size == 3' \
          >/dev/null 2>&1 && whole=$((whole + 1))
    done
    [ "$whole" = 3 ] && return 0
    sleep 0.2
  done
  return 1
}

# The numbers of the NATS nodes outside the JetStream meta leader's group (the leader is the node that lists the
# group's other members), or all three when no node leads one.
cluster_nats_outside_group() {
  local n members="" group
  for n in 1 2 3; do
    group="$(curl -fsS --max-time 2 "http://$(cluster_addr "nats-$n"):8222/jsz" 2>/dev/null |
      jq -r '.meta_cluster | select(.replicas != null) | .leader, .replicas[].name' 2>/dev/null)" || true
    [ -n "$group" ] && members="$group"
  done
  for n in 1 2 3; do
    grep -qx "nats-$n" <<<"$members" || echo "$n"
  done
}

# HAProxy's open-file limit: each proxied connection holds two files. Compose's (200,100, for deploy/haproxy's
# maxconn of 100,000: every browser connection goes through it here) where the limit may be raised that far (root
# with CAP_SYS_RESOURCE), else the hard limit as it is.
cluster_lb_files() {
  local hard
  hard="$(ulimit -Hn)"
  if [ "$hard" = unlimited ] || [ "$hard" -ge 200100 ] || prlimit --nofile=200100:200100 true 2>/dev/null; then
    echo 200100
  else
    echo "$hard"
  fi
}

# HAProxy's configuration for the cluster: deploy/haproxy/haproxy.cfg's global and default settings (maxconn to
# fit cluster_lb_files), one frontend on 127.0.0.1, health checks on each service's admin port /readyz.
cluster_haproxy_cfg() {
  local n
  sed -n '/^global/,/^frontend/p' "$ROOT/deploy/haproxy/haproxy.cfg" | sed '$d' \
    | sed "s/^  maxconn .*/  maxconn $((($(cluster_lb_files) - 100) / 2))/"
  printf 'frontend natter\n  bind 127.0.0.1:%s\n  option forwardfor\n' "$api_port"
  printf '  use_backend gateways if { path /ws }\n'
  for n in 1 2 3; do printf '  use_backend gateway-%s if { path /gateway-%s/ws }\n' "$n" "$n"; done
  printf '  default_backend apis\n\n'
  # The checks' settings are the gateways backend's in deploy/haproxy/haproxy.cfg, for every backend here.
  local checks
  checks="$(sed -n '/^backend gateways/,/default-server/p' "$ROOT/deploy/haproxy/haproxy.cfg" | grep -E 'httpchk|http-check|default-server')"
  # The APIs take no PROXY header (they read X-Forwarded-For from HAProxy); the gateways do, from HAProxy's own
  # source address.
  printf 'backend apis\n  balance roundrobin\n%s\n' "${checks/ send-proxy-v2/}"
  checks="$checks
  source $(cluster_lb_source)"
  for n in 1 2; do printf '  server api-%s %s:8080 check port 9180\n' "$n" "$(cluster_addr "api-$n")"; done
  printf '\nbackend gateways\n  balance leastconn\n%s\n' "$checks"
  for n in 1 2 3; do printf '  server gateway-%s %s:9001 check port 9190\n' "$n" "$(cluster_addr "gateway-$n")"; done
  for n in 1 2 3; do
    printf '\nbackend gateway-%s\n  http-request set-path /ws\n%s\n' "$n" "$checks"
    printf '  server gateway-%s %s:9001 check port 9190\n' "$n" "$(cluster_addr "gateway-$n")"
  done
}

# The address HAProxy connects to the gateways from, which they take PROXY headers from (--proxy-protocol-from):
# the bridge's second address, or its loopback twin.
cluster_lb_source() {
  printf '%s.2' "$CLUSTER_ADDR_NET"
}

# Starts hosts KIND-1..COUNT with START (a function taking the number), each supervised and ready on its admin
# port before the next: `cluster_service KIND COUNT START ADMIN_PORT PROMETHEUS_TARGETS` (in cluster_up).
cluster_service() {
  local n addr
  for ((n = 1; n <= $2; n++)); do
    "$3" "$n"
    PIDS+=($!) STOP_SIGNALS+=(TERM)
    # A gateway that exits 0 was drained: the supervisor lets it go.
    [ "$1" = gateway ] && GATEWAY_PIDS+=($!)
    supervised "$1-$n" "$data/$1-$n.log" "$3" "$n"
    addr="$(cluster_addr "$1-$n")"
    wait_ready "http://$addr:$4/readyz" "${PIDS[-1]}" "$1-$n" "$data/$1-$n.log"
    metrics_urls+=("http://$addr:$4/metrics") targets+=("$5:$1-$n=$addr:$4")
    cluster_record_pids
  done
}

cluster_up() {
  # What print_endpoints and supervise read (cmd_up declares them after the point that calls this).
  local api web_url database_url nats_url gateway_urls=() metrics_urls=() lb_url prometheus_url
  cluster_names
  CLUSTER_NETNS=1
  if [ "${NATTER_CLUSTER_NETNS:-1}" = 0 ]; then
    CLUSTER_NETNS=0
    say "NATTER_CLUSTER_NETNS=0: each host is an address on loopback ($CLUSTER_LOOPBACK_NET.x) instead of a network namespace"
  elif [ "$(id -u)" != 0 ]; then
    CLUSTER_NETNS=0
    say "network namespaces need root: each host is an address on loopback ($CLUSTER_LOOPBACK_NET.x) instead"
  fi
  trap 'stop_all; cluster_teardown; rm -f "$data/cluster.pids" "$CLUSTER_OWNER"; exit 0' INT TERM
  trap 'stop_all; cluster_teardown; rm -f "$data/cluster.pids" "$CLUSTER_OWNER"' EXIT
  if [ "$CLUSTER_NETNS" = 1 ]; then
    if ! cluster_netns_setup 2>"$data/netns.log"; then
      cluster_teardown
      CLUSTER_NETNS=0
      say "cannot make network namespaces ($(head -n 1 "$data/netns.log")): each host is an address on loopback ($CLUSTER_LOOPBACK_NET.x) instead"
    fi
  fi
  CLUSTER_ADDR_NET="$CLUSTER_NET"
  [ "$CLUSTER_NETNS" = 1 ] || CLUSTER_ADDR_NET="$CLUSTER_LOOPBACK_NET"
  local n i addr
  for n in 1 2 3; do
    addr="$(cluster_addr "nats-$n")"
    nats_urls+=("nats://$addr:4222")
    # On loopback, another process may hold one of these: nothing else can be told apart from a leftover.
    [ "$CLUSTER_NETNS" = 1 ] || ! (exec 3<>"/dev/tcp/$addr/4222") 2>/dev/null \
      || die "$addr:4222 is already in use; pick another network with NATTER_CLUSTER_NET"
  done
  local nats_list
  nats_list="$(IFS=,; echo "${nats_urls[*]}")"
  nats_url="$nats_list"

  # NATS: three JetStream servers, each routing to the other two, of a build whose replicas agree after a partition
  # heals (cluster_nats_bin).
  CLUSTER_NATS_BIN="$(cluster_nats_bin)"
  start_cluster_nats() { # n
    local self routes=() m
    self="$(cluster_addr "nats-$1")"
    for m in 1 2 3; do [ "$m" = "$1" ] || routes+=("nats://$(cluster_addr "nats-$m"):6222"); done
    mkdir -p "$data/nats-$1"
    # shellcheck disable=SC2046
    cluster_run "nats-$1" env $(nats_server_env) "$CLUSTER_NATS_BIN" -c "$data/nats-auth.conf" --name "nats-$1" -a "$self" -p 4222 -m 8222 -js -sd "$data/nats-$1" \
      --cluster_name natter --cluster "nats://$self:6222" --routes "$(IFS=,; echo "${routes[*]}")" \
      -l "$data/nats-$1.log" &
  }
  nats_auth_setup "$data"
  local nats_slot=()
  for n in 1 2 3; do
    start_cluster_nats "$n"
    nats_slot[$n]=${#PIDS[@]}
    PIDS+=($!) STOP_SIGNALS+=(TERM) && supervised "nats-$n" "$data/nats-$n.log" start_cluster_nats "$n"
  done
  # A cold start of three nats-server 2.10.26 nodes at once now and then leaves one out of the JetStream meta group
  # for good: the leader never adds it, and every node reports a group of 2 (8 of 78 starts here), or no
  # leader at all. Restarted, a node left out joins within a second. The group gets 15 s, then each node outside
  # the leader's group (all three when there is no leader) is restarted on its store, up to three times.
  local attempt missing
  for attempt in 1 2 3 4; do
    cluster_nats_group_whole 15 && break
    [ "$attempt" = 4 ] && break
    missing="$(cluster_nats_outside_group)"
    for n in $missing; do
      say "nats-$n is not in the JetStream meta group 15 s after starting: restarting it"
      kill -TERM "${PIDS[${nats_slot[$n]}]}" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "${PIDS[${nats_slot[$n]}]}" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "${PIDS[${nats_slot[$n]}]}" 2>/dev/null || true
      wait "${PIDS[${nats_slot[$n]}]}" 2>/dev/null || true
      start_cluster_nats "$n"
      PIDS[${nats_slot[$n]}]=$!
    done
  done
  # JetStream serves once the three have elected a meta leader; an R3 stream needs all of them up.
  for n in 1 2 3; do
    addr="$(cluster_addr "nats-$n")"
    cluster_wait_json "http://$addr:8222/jsz" '.meta_cluster.leader != null and .meta_cluster.leader != "" and .meta_cluster.cluster_size == 3' \
      "nats-$n did not join a 3-node JetStream cluster" "$data/nats-$n.log"
  done

  cluster_record_pids
  start_pg "$(cluster_addr root)" "$CLUSTER_ADDR_NET.0/24"
  cluster_record_pids
  database_url="postgres://postgres@$(cluster_addr root):$pg_port/natter"
  api="http://127.0.0.1:$api_port"
  web_url=""
  local web_env=()
  [ -n "$web_dir" ] && web_env=("NATTER_WEB_DIR=$web_dir") && web_url="$api/"
  # Browsers load the page from HAProxy's address, so that is the origin the gateways accept.
  local origins="${NATTER_ALLOWED_ORIGINS:-$api,http://localhost:$api_port}"
  local jwks="http://$(cluster_addr api-1):8080/.well-known/jwks.json" targets=()

  start_cluster_api() { # n
    local self
    self="$(cluster_addr "api-$1")"
    cluster_run "api-$1" env "${web_env[@]}" DATABASE_URL="$database_url" NATS_URL="$nats_list" NATTER_STREAM_REPLICAS=3 \
      NATS_USER=natter-auth-api NATS_PASSWORD="$NATTER_NATS_AUTH_API_PASSWORD" \
      NATTER_GATEWAY_URL_PATTERNS="ws://127.0.0.1:$api_port/gateway-*/ws" NATTER_KEY_ENCRYPTION_KEY="$NATTER_KEY_ENCRYPTION_KEY" \
      NATTER_API_LISTEN="$self:8080" NATTER_API_ADMIN_LISTEN="$self:9180" NATTER_CLIENT_IP_HEADER=x-forwarded-for \
      NATTER_TRUSTED_PROXIES="$(cluster_addr root),127.0.0.1" \
      RUST_LOG="${RUST_LOG:-info,sqlx=warn}" "$bin_dir/natter-auth-api" 2>>"$data/api-$1.log" &
  }
  cluster_service api 2 start_cluster_api 9180 auth-api

  start_cluster_persister() { # n
    local self
    self="$(cluster_addr "persister-$1")"
    cluster_run "persister-$1" env DATABASE_URL="$database_url" NATS_URL="$nats_list" NATTER_STREAM_REPLICAS=3 \
      NATS_USER=natter-persister NATS_PASSWORD="$NATTER_NATS_PERSISTER_PASSWORD" NATTER_PERSISTER_ID="persister-$1" NATTER_PERSISTER_ADMIN_LISTEN="$self:9100" RUST_LOG="${RUST_LOG:-info,sqlx=warn}" \
      "$bin_dir/natter-persister" 2>>"$data/persister-$1.log" &
  }
  cluster_service persister 2 start_cluster_persister 9100 persister

  start_cluster_gateway() { # n
    local self
    self="$(cluster_addr "gateway-$1")"
    cluster_run "gateway-$1" env NATS_URL="$nats_list" NATTER_STREAM_REPLICAS=3 NATTER_GATEWAY_ID="gateway-$1" \
      NATS_USER=natter-gateway NATS_PASSWORD="$NATTER_NATS_GATEWAY_PASSWORD" \
      NATTER_PROXY_PROTOCOL_FROM="$(cluster_lb_source)" \
      NATTER_GATEWAY_LISTEN="$self:9001" NATTER_GATEWAY_ADMIN_LISTEN="$self:9190" \
      NATTER_GATEWAY_PUBLIC_URL="ws://127.0.0.1:$api_port/gateway-$1/ws" NATTER_JWKS_URL="$jwks" \
      NATTER_ALLOWED_ORIGINS="$origins" RUST_LOG="${RUST_LOG:-info}" \
      "$bin_dir/natter-gateway" 2>>"$data/gateway-$1.log" &
  }
  cluster_service gateway 3 start_cluster_gateway 9190 gateway
  # The endpoints name each gateway's own address, for tools in the root namespace (the load test, as './natter
  # bench --cluster' runs it, not through HAProxy's open-file limit); browsers get the URL through HAProxy that
  # each gateway registers.
  for n in 1 2 3; do gateway_urls+=("ws://$(cluster_addr "gateway-$n"):9001/ws"); done

  cluster_haproxy_cfg >"$data/haproxy.cfg"
  haproxy -c -q -f "$data/haproxy.cfg" || die "the load balancer's configuration ($data/haproxy.cfg) is invalid"
  local lb_files
  lb_files="$(cluster_lb_files)"
  # prlimit execs HAProxy with that limit.
  start_cluster_lb() { prlimit --nofile="$lb_files:$lb_files" haproxy -db -f "$data/haproxy.cfg" >>"$data/haproxy.log" 2>&1 & }
  start_cluster_lb
  PIDS+=($!) STOP_SIGNALS+=(TERM) && supervised HAProxy "$data/haproxy.log" start_cluster_lb
  wait_ready "$api/api/openapi.json" "${PIDS[-1]}" HAProxy "$data/haproxy.log"
  lb_url="ws://127.0.0.1:$api_port/ws"

  prometheus_url=""
  if [ "$observe" = 1 ]; then
    start_observers "$data/prometheus" "$prometheus_port" "$exporter_port" "$database_url" "${targets[@]}"
    prometheus_url="http://127.0.0.1:$prometheus_port"
  fi

  cluster_record_pids
  print_endpoints
  supervise
}
