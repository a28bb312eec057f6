# Shell helpers shared by the benchmark scripts and tests/natter-up.sh. Source it; it defines functions only.

# Whether something listens on 127.0.0.1:PORT.
busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A port nothing listens on right now, 20000-32767: below the kernel's ephemeral range (32768-60999 here), so no
# outgoing connection can be holding it when the caller binds it (HAProxy once found its port taken so). A test
# run beside others takes a range of its own with FREE_PORT_FROM and FREE_PORT_SPAN.
free_port() {
  local p
  while :; do
    p=$((${FREE_PORT_FROM:-20000} + RANDOM % ${FREE_PORT_SPAN:-12768}))
    busy "$p" || { echo "$p"; return; }
  done
}

# Stops the process group GROUP as Ctrl-C would, waits up to 20 s for it to empty, then kills what is left.
stop_group() {
  local group="$1"
  [ -n "$group" ] || return 0
  kill -INT -- "-$group" 2>/dev/null || true
  for _ in $(seq 1 100); do pgrep -g "$group" >/dev/null || break; sleep 0.2; done
  pkill -KILL -g "$group" 2>/dev/null || true
}
