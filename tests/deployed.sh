#!/usr/bin/env bash
# Each Natter service started with exactly the environment docker-compose.yml and deploy/k8s's example overlay
# give it (as tests/compose.py and tests/k8s.sh wrote them to target/deployed-envs/), only its hosts and ports
# pointed at what runs here: a NATS server with deploy/nats/auth.conf and the deployments' passwords, PostgreSQL
# with the schema migrated by the owner (compose's one-shot `migrate`) and the roles of deploy/postgres/roles.sql.
# Every binary must reach ready on its admin port: its NATS user, its PostgreSQL role, its sealed keys and its
# settings all work together, not only parse.
set -euo pipefail
TEST=deployed
# shellcheck source=tests/stack.sh
. "$(dirname "${BASH_SOURCE[0]}")/stack.sh"
envs="$ROOT/target/deployed-envs"
[ -s "$envs/compose.json" ] && [ -s "$envs/k8s.json" ] || fail "run tests/compose.py and tests/k8s.sh first"
cargo build -q -p natter-auth-api -p natter-gateway -p natter-persister -p natter-loadtest

# NATS and PostgreSQL from './natter up' (no gateway, no persister), with the deployments' NATS passwords and
# key-encryption secret in its data directory, which it then uses.
mkdir -p "$tmp/data"
(
  umask 077
  jq -r '.secrets | to_entries[] | select(.key | startswith("NATTER_NATS_")) | "\(.key)=\(.value)"' \
    "$envs/compose.json" >"$tmp/data/nats.env"
  jq -j '.secrets.NATTER_KEY_ENCRYPTION_KEY' "$envs/compose.json" >"$tmp/data/key-encryption.key"
)
cp "$tmp/data/nats.env" "$tmp/nats.env.given"
set -m
"$ROOT/natter" up --json --no-web --no-build --gateways 0 --persisters 0 --api-port "$api_port" \
  --nats-port "$nats_port" --pg-port "$pg_port" --admin-port "$admin_port" --data-dir "$tmp/data" \
  >"$tmp/out" 2>"$tmp/err" &
up_pid=$!
set +m
wait_endpoints "--gateways 0 --persisters 0"
database_url="$(jq -r .database_url "$tmp/out")"
cmp -s "$tmp/data/nats.env" "$tmp/nats.env.given" || fail "'natter up' did not take the deployments' NATS passwords"

# The roles compose's one-shot `db-roles` gives out, with its passwords.
jq -r '.secrets | to_entries[] | select(.key | startswith("NATTER_PG_")) | "\(.key)=\(.value)"' "$envs/compose.json" \
  >"$tmp/pg.env"
# shellcheck disable=SC1091
. "$tmp/pg.env"
PGOPTIONS="-c natter.api_password=$NATTER_PG_API_PASSWORD -c natter.persister_password=$NATTER_PG_PERSISTER_PASSWORD -c natter.exporter_password=$NATTER_PG_EXPORTER_PASSWORD" \
  psql -q "$database_url" -v ON_ERROR_STOP=1 -f "$ROOT/deploy/postgres/roles.sql" >"$tmp/roles.log" 2>&1 \
  || fail "deploy/postgres/roles.sql failed: $(cat "$tmp/roles.log")"

python3 - "$envs" "$ROOT/target/debug" "$nats_port" "$database_url" "$tmp" <<'PY'
import json, pathlib, re, socket, subprocess, sys, time, urllib.parse, urllib.request

envs, bin_dir, nats_port, database_url, tmp = sys.argv[1:]
here = urllib.parse.urlsplit(database_url)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LOAD_TEST_KEY = "deployed-test-key-0123456789abcdef"

# The secrets this stack was given (compose's); deploy/k8s's are stand-ins, replaced by these.
secrets = json.load(open(f"{envs}/compose.json"))["secrets"]


def local(name, env, jwks):
    """The deployment's environment with its hosts and ports pointed here."""
    env = dict(env)
    env["NATS_URL"] = f"nats://127.0.0.1:{nats_port}"
    if "NATS_USER" in env:
        role = env["NATS_USER"].removeprefix("natter-").replace("-", "_").upper()
        env["NATS_PASSWORD"] = secrets[f"NATTER_NATS_{role}_PASSWORD"]
    if "NATTER_KEY_ENCRYPTION_KEY" in env:
        env["NATTER_KEY_ENCRYPTION_KEY"] = secrets["NATTER_KEY_ENCRYPTION_KEY"]
    if "DATABASE_URL" in env:
        theirs = urllib.parse.urlsplit(env["DATABASE_URL"])
        # The owner's URL (compose's `natter`, or k8s's app secret) is this PostgreSQL's superuser here.
        user = theirs.username if theirs.username and theirs.username.startswith("natter_") else here.username
        password = f":{theirs.password}" if user != here.username and theirs.password else ""
        env["DATABASE_URL"] = f"postgres://{user}{password}@127.0.0.1:{here.port}{here.path}"
    for var, value in list(env.items()):
        if var.endswith("_LISTEN"):
            env[var] = f"127.0.0.1:{free_port()}"
    if "NATTER_JWKS_URL" in env:
        env["NATTER_JWKS_URL"] = jwks
    if name.startswith("compose auth-api"):
        # The one setting added: a load-test key, so that a run can make its users.
        env["NATTER_LOAD_TEST_KEY"] = LOAD_TEST_KEY
    if "NATTER_PERSISTER_ID" in env:
        env["NATTER_PERSISTER_ID"] = f"deployed-{name.replace(' ', '-')}"
    # One NATS server here: the stream and buckets exist already, in one copy.
    env["NATTER_STREAM_REPLICAS"] = "1"
    env["RUST_LOG"] = "info"
    return env


def admin(env):
    return next(v for k, v in env.items() if k.endswith("ADMIN_LISTEN"))


def start(name, spec, jwks):
    env = local(name, spec["env"], jwks)
    log = open(f"{tmp}/{name.replace(' ', '-')}.log", "w")
    process = subprocess.Popen([f"{bin_dir}/{spec['binary']}", *spec["args"]], env={"PATH": "/usr/bin:/bin", **env},
                               stdout=log, stderr=subprocess.STDOUT)
    return process, env, log.name


def ready(name, process, env, log, within=60):
    url = f"http://{admin(env)}/readyz"
    deadline = time.time() + within
    while time.time() < deadline:
        if process.poll() is not None:
            sys.exit(f"deployed test: {name} exited ({process.returncode}):\n{pathlib.Path(log).read_text()[-3000:]}")
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return
        except Exception:
            pass
        time.sleep(0.2)
    sys.exit(f"deployed test: {name} not ready within {within} s:\n{pathlib.Path(log).read_text()[-3000:]}")


started = []
listening = {}
try:
    for source in ("compose", "k8s"):
        services = json.load(open(f"{envs}/{source}.json"))["services"]
        # The one-shot migration first (compose's `migrate`, as the owner): it must succeed on a current schema.
        for name, spec in services.items():
            if "--migrate-only" in spec["args"]:
                process, env, log = start(name, spec, "")
                if process.wait(timeout=60) != 0:
                    sys.exit(f"deployed test: {name} failed:\n{pathlib.Path(log).read_text()[-3000:]}")
                print(f"ok: {name} (the schema is current)")
        apis = [n for n, s in services.items() if s["binary"] == "natter-auth-api" and not s["args"]]
        others = [n for n, s in services.items() if s["binary"] != "natter-auth-api"]
        jwks = ""
        for name in apis + others:
            process, env, log = start(name, services[name], jwks)
            started.append(process)
            ready(name, process, env, log)
            listening[name] = env
            if name in apis and not jwks:
                public = env.get("NATTER_API_LISTEN") or next(v for k, v in env.items() if k.endswith("API_LISTEN"))
                jwks = f"http://{public}/.well-known/jwks.json"
            print(f"ok: {name} ready")
        if source == "compose":
            # Messages through compose's gateway (its NATS user), stored by its persisters (their PostgreSQL role)
            # and read back from its API's history (the API's role): nothing lost.
            api = listening["compose auth-api-1"]["NATTER_API_LISTEN"]
            gateway = listening["compose gateway-1"]["NATTER_GATEWAY_LISTEN"]
            run = subprocess.run([f"{bin_dir}/natter-loadtest", "run", "--api", f"http://{api}", "--gateway",
                                  f"ws://{gateway}/ws", "--load-test-key", LOAD_TEST_KEY, "--users", "6", "--rooms", "2",
                                  "--senders", "1", "--rate", "2", "--duration", "4s", "--ramp-up", "0", "--workers", "1",
                                  "--verify-history", "--max-loss", "0", "--quiet"], capture_output=True, text=True,
                                 timeout=180)
            if run.returncode != 0:
                sys.exit(f"deployed test: a run through compose's services failed:\n{run.stdout}\n{run.stderr}")
            print("ok: a load-test run through compose's gateway, persisters and API lost nothing")
finally:
    for process in started:
        process.terminate()
    for process in started:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
PY
stack_down
echo "deployed test: passed"
