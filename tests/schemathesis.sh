#!/usr/bin/env bash
# The OpenAPI document tells the truth. schemathesis (tests/schemathesis-requirements.txt, installed from PyPI into
# target/schemathesis-venv when missing or older than that file) reads GET /api/openapi.json of a './natter up'
# (NATS, PostgreSQL, the auth API in its load-test mode, one gateway for GET /api/gateway to hand out), makes
# requests to every operation from it, valid and invalid ones, and runs every check it has on the answers
# (--checks all): no 5xx; every status, header and body documented; every request the document calls valid
# accepted and every one it calls invalid refused; a missing token refused with 401; undocumented methods 405; and
# in its stateful phase, sequences of calls along the links it finds (made rooms can be read, deleted ones no more).
# Before it, tests/openapi_edges.py sends the values where a pattern and a parser could part (every kind of white
# space and of hidden character around and inside a name, lengths at their limits) and checks that the API accepts
# exactly those the document's schemas take.
#
# Nothing is left out. Authenticated operations get a user's access token from POST /api/login
# (tests/schemathesis.toml); when a request ends the session (DELETE /api/sessions, DELETE /api/sessions/{id}), the
# next 401 signs in again and the request is sent once more. The load-test route gets the load-test key. The
# per-user and per-address budgets are raised so the requests reach the handlers (429 stays documented). The one
# rule the document cannot state, that `before` and `after` of the history exclude each other, is kept out of the
# generated requests by tests/schemathesis_hooks.py.
#
#   tests/schemathesis.sh [--no-build] [--max-examples N]
#
# --no-build: use the binaries built already (./natter test builds them first). At most N requests per operation
# and phase (default 8, env NATTER_SCHEMATHESIS_EXAMPLES); the run's seed is printed, and NATTER_SCHEMATHESIS_SEED
# repeats one.
set -euo pipefail
TEST=schemathesis
# shellcheck source=tests/stack.sh
. "$(dirname "${BASH_SOURCE[0]}")/stack.sh"
# Ports of a range of their own, 16000-19999 (below every default of './natter up' is 15432): ./natter test runs
# this beside tests that take theirs from 20000-32767 (scripts/lib.sh), so the two never pick the same one at once.
# Each pick is also kept from the earlier ones: two services once drew the same free port (NATS and the auth
# API's admin port) and the second could not listen.
taken=" "
# Sets the variable named $1 to a port of this range that is free, with the SPAN ($2, default 0) ports after it,
# and that no earlier pick took.
pick_port() {
  local p i ok span="${2:-0}"
  while :; do
    p=$((16000 + RANDOM % 3990)) ok=1
    for ((i = 0; i <= span; i++)); do
      case "$taken" in *" $((p + i)) "*) ok=0 ;; esac
      [ "$ok" = 1 ] && busy $((p + i)) && ok=0
    done
    [ "$ok" = 1 ] && break
  done
  for ((i = 0; i <= span; i++)); do taken+="$((p + i)) "; done
  printf -v "$1" '%s' "$p"
}
pick_port api_port; pick_port nats_port; pick_port pg_port; pick_port persister_port
pick_port gateway_port 1
pick_port admin_port 2

up_flags=() examples="${NATTER_SCHEMATHESIS_EXAMPLES:-8}"
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) up_flags+=(--no-build) ;;
    --max-examples) examples="${2:?--max-examples needs a value}"; shift ;;
    *) echo "usage: tests/schemathesis.sh [--no-build] [--max-examples N]" >&2; exit 64 ;;
  esac
  shift
done

venv="$ROOT/target/schemathesis-venv"
requirements="$ROOT/tests/schemathesis-requirements.txt"
if [ ! -x "$venv/bin/schemathesis" ] || [ "$requirements" -nt "$venv/.installed" ]; then
  echo "installing schemathesis into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" || fail "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements" || fail "pip could not install $requirements"
  touch "$venv/.installed"
fi

user="fuzzer" password="fuzzer-password-$RANDOM$RANDOM"
export NATTER_LOAD_TEST_KEY="schemathesis-load-test-key-$RANDOM$RANDOM"
# Budgets far above what the run spends, so that requests reach the handlers rather than the limiters.
export NATTER_USER_REQUESTS_PER_MINUTE=1000000 NATTER_USER_ROOM_LISTINGS_PER_MINUTE=1000000 \
  NATTER_USER_ROOM_CREATIONS_PER_HOUR=1000000 NATTER_USER_MEMBERSHIP_CHANGES_PER_MINUTE=1000000 \
  NATTER_USER_SEARCHES_PER_MINUTE=1000000 NATTER_USER_CONVERSATIONS_PER_HOUR=1000000 \
  NATTER_AUTH_ATTEMPTS_PER_ADDRESS=1000000 NATTER_LOGIN_FAILURES_PER_USER_ADDRESS=1000000 \
  NATTER_LOGIN_FAILURES_PER_USER=1000000
stack_up --gateways 1 --persisters 0 "${up_flags[@]}"
api="$(jq -r .api "$tmp/out")"

status="$(curl -sS -o "$tmp/register" -w '%{http_code}' -H 'Content-Type: application/json' \
  -d "{\"username\":\"$user\",\"password\":\"$password\"}" "$api/api/register")"
[ "$status" = 201 ] || fail "registering the user answered $status: $(cat "$tmp/register")"
# Other people, for the fuzzed requests to block, ban, remove, appoint and talk to (tests/schemathesis.toml).
cp "$ROOT/tests/schemathesis.toml" "$tmp/schemathesis.toml"
: >"$tmp/people.dict"; : >"$tmp/names.dict"
for n in 1 2 3; do
  curl -sS -o "$tmp/peer" -H 'Content-Type: application/json' -d "{\"username\":\"fuzzpeer$n\"}" "$api/api/guest"
  jq -r '"\"\(.user.id)\""' "$tmp/peer" >>"$tmp/people.dict"
  jq -r '"\"\(.user.name)\""' "$tmp/peer" >>"$tmp/names.dict"
done
grep -q null "$tmp/people.dict" && fail "could not make the other people: $(cat "$tmp/peer")"
# The patterns against the parsers where they could part (see the script).
"$venv/bin/python" "$ROOT/tests/openapi_edges.py" "$api" "$(jq -r .access_token "$tmp/register")" ||
  fail "the document's patterns and the API's parsers disagree"
# A gateway to hand out: registered once it has sent its first heartbeat.
for _ in $(seq 1 100); do
  [ "$(curl -sS -o /dev/null -w '%{http_code}' "$api/api/gateway")" = 200 ] && break
  sleep 0.2
done

seed=(); [ -n "${NATTER_SCHEMATHESIS_SEED:-}" ] && seed=(--seed "$NATTER_SCHEMATHESIS_SEED")
run_status=0
(
  cd "$tmp"
  NATTER_FUZZ_USER="$user" NATTER_FUZZ_PASSWORD="$password" PYTHONPATH="$ROOT/tests" \
    SCHEMATHESIS_HOOKS=schemathesis_hooks "$venv/bin/schemathesis" --config-file "$tmp/schemathesis.toml" \
    run "$api/api/openapi.json" --checks all --max-examples "$examples" --workers 2 "${seed[@]}" \
    --no-color --output-truncate false
) >"$tmp/report" 2>&1 || run_status=$?
if [ "$run_status" != 0 ]; then
  cat "$tmp/report" >&2
  fail "schemathesis found the document and the API apart (exit $run_status)"
fi
# The summary: operations tested, the phases, how many requests, the seed.
sed -n '/^=* SUMMARY =*$/,$p' "$tmp/report"
grep -qE '^ +Tested: [1-9]' "$tmp/report" || fail "schemathesis tested no operation"
stack_down
echo "schemathesis test: passed"
