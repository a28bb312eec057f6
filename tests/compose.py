#!/usr/bin/python3
"""Checks docker-compose.yml without a Docker engine (run with Debian's python3, which docker-compose brings
PyYAML to; the binaries must be built in target/debug):

- `docker-compose config` parses it;
- every environment variable a Natter service is given is one its binary reads (the `[env: …]` names of its
  `--help`), so a misspelt setting cannot be silently ignored, and the binary's own `--check-config` accepts
  that environment;
- the addresses line up: the hosts in NATS, PostgreSQL and JWKS URLs are compose services; every Prometheus
  target and HAProxy server is a service listening on that port; every image that is built names its stage;
- the secrets (NATS and PostgreSQL role passwords, the key-encryption secret, Grafana's admin password) must be
  set, the schema is migrated by a one-shot `--migrate-only` as the owner and each service connects to
  PostgreSQL as its role of least privilege, each service connects to NATS as its own
  user of deploy/nats/auth.conf, and Prometheus, Alertmanager and Grafana are published on loopback only, Grafana
  without anonymous access;
- Prometheus keeps at least 40 days (the SLOs are reckoned over 30) and sends its alerts to the alertmanager
  service's port, which runs with this repository's alertmanager/alertmanager.yml mounted as its --config.file
  and its storage on a volume;
- every NATS server is pinned to a release of 2.10 or later and loads a configuration file, mounted from this
  repository, that sets JetStream's `sync_interval: always` (fsync before acknowledging; 2.9.x cannot).
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import urllib.parse

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
BINARIES = {"auth-api": "natter-auth-api", "gateway": "natter-gateway", "persister": "natter-persister"}
LISTEN = {"auth-api": "NATTER_API_LISTEN", "gateway": "NATTER_GATEWAY_LISTEN", "persister": "NATTER_PERSISTER_ADMIN_LISTEN"}
ADMIN_LISTEN = {"auth-api": "NATTER_API_ADMIN_LISTEN", "gateway": "NATTER_GATEWAY_ADMIN_LISTEN",
                "persister": "NATTER_PERSISTER_ADMIN_LISTEN"}
DEFAULT_PORTS = {"auth-api": 8080, "gateway": 9001, "persister": 9100}


def fail(errors, message):
    errors.append(message)


def check_nats(errors, name, service):
    """A NATS server: a pinned release >= 2.10 that reads a mounted file with `sync_interval: always`."""
    tag = service["image"].partition(":")[2]
    version = re.match(r"(\d+)\.(\d+)\.(\d+)", tag)
    if not version:
        fail(errors, f"{name}: image {service['image']} is not pinned to a release (x.y.z)")
    elif tuple(map(int, version.groups())) < (2, 10, 0):
        fail(errors, f"{name}: nats-server {tag} cannot set sync_interval (2.10 or later needed)")
    command = service.get("command", [])
    config = command[command.index("-c") + 1] if "-c" in command[:-1] else None
    if config is None:
        fail(errors, f"{name}: no -c configuration file, so JetStream keeps its 2-minute fsync interval")
        return
    # Compose renders a bind mount as HOST:CONTAINER[:MODE] with HOST absolute.
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", []) if isinstance(v, str)}
    source = mounts.get(config)
    if source is None or not pathlib.Path(source).is_file():
        fail(errors, f"{name}: its configuration {config} is not a file mounted from this repository")
        return
    text = "\n".join(line.split("#", 1)[0] for line in pathlib.Path(source).read_text().splitlines())
    if not re.search(r"^\s*jetstream\s*\{[^}]*\bsync_interval\s*:\s*always\b", text, re.M):
        fail(errors, f"{name}: {source} does not set JetStream's sync_interval: always")


def flag(command, name):
    """The value of --name=VALUE in a command, or None."""
    return next((arg.partition("=")[2] for arg in command if arg.startswith(f"--{name}=")), None)


def check_alerting(errors, services, prometheus_config):
    """Prometheus keeps 40 days and alerts to the alertmanager service, which runs alertmanager/alertmanager.yml."""
    command = services.get("prometheus", {}).get("command", [])
    retention = flag(command, "storage.tsdb.retention.time") or "15d"
    days = re.fullmatch(r"(\d+)([dwy])", retention)
    if not days or int(days.group(1)) * {"d": 1, "w": 7, "y": 365}[days.group(2)] < 40:
        fail(errors, f"prometheus: keeps {retention}, not at least 40d: the SLOs are reckoned over 30 days")
    alertmanager = services.get("alertmanager")
    if alertmanager is None:
        fail(errors, "no alertmanager service: Prometheus's alerts go nowhere")
        return
    if "alertmanager" not in services["prometheus"].get("depends_on", {}):
        fail(errors, "prometheus: does not depend on alertmanager")
    command = alertmanager.get("command", [])
    config = flag(command, "config.file") or "/etc/alertmanager/alertmanager.yml"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in alertmanager.get("volumes", []) if isinstance(v, str)}
    if mounts.get(config) != str(ROOT / "alertmanager/alertmanager.yml"):
        fail(errors, f"alertmanager: its --config.file {config} is not alertmanager/alertmanager.yml, mounted from "
                     f"this repository ({mounts.get(config)})")
    storage = flag(command, "storage.path") or "/alertmanager"
    named = {v["target"] for v in alertmanager.get("volumes", []) if isinstance(v, dict) and v.get("type") == "volume"}
    named |= {v.split(":")[1] for v in alertmanager.get("volumes", []) if isinstance(v, str)
              and not v.startswith("/")}
    if storage not in named:
        fail(errors, f"alertmanager: its --storage.path {storage} is not a volume: silences lost on restart")
    listen = flag(command, "web.listen-address") or ":9093"
    port = int(listen.rsplit(":", 1)[1])
    targets = [t for am in prometheus_config.get("alerting", {}).get("alertmanagers", [])
               for static in am.get("static_configs", []) for t in static.get("targets", [])]
    if targets != [f"alertmanager:{port}"]:
        fail(errors, f"prometheus.compose.yml alerts to {targets}, not the alertmanager service's alertmanager:{port}")


def main():
    errors = []
    # What each Natter service is started with, for tests/deployed.sh to start them (target/deployed-envs/).
    runs = {}
    # A .env of the developer's own would hide what a new user meets: an empty one is read instead.
    empty_env = tempfile.NamedTemporaryFile("w", suffix=".env")
    compose = ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "--env-file", empty_env.name, "config"]
    # The secrets a user must set: without them compose refuses, naming what is missing.
    # (NATS passwords: letters and digits, beginning with a letter, as deploy/nats/auth.conf needs them.)
    secrets = {f"NATTER_NATS_{role}_PASSWORD": f"composecheck{role.lower().replace('_', '')}"
               for role in ("GATEWAY", "AUTH_API", "PERSISTER", "ADMIN")}
    secrets["GRAFANA_ADMIN_PASSWORD"] = "compose-check-grafana"
    secrets["NATTER_KEY_ENCRYPTION_KEY"] = "compose-check-key-encryption-secret-32"
    for role in ("API", "PERSISTER", "EXPORTER"):
        secrets[f"NATTER_PG_{role}_PASSWORD"] = f"compose-check-pg-{role.lower()}"
    bare = {k: v for k, v in os.environ.items() if k not in secrets}
    refused = subprocess.run(compose, capture_output=True, text=True, env=bare)
    if refused.returncode == 0 or "set the NATS passwords" not in refused.stderr:
        fail(errors, f"compose starts without the NATS passwords set ({refused.returncode}): {refused.stderr}")
    rendered = subprocess.run(compose, capture_output=True, text=True, env={**bare, **secrets})
    if rendered.returncode != 0:
        print(f"compose: docker-compose config failed:\n{rendered.stderr}", file=sys.stderr)
        return 1
    services = yaml.safe_load(rendered.stdout)["services"]
    dockerfile_stages = set(re.findall(r"^FROM \S+ AS (\S+)", (ROOT / "Dockerfile").read_text(), re.M))

    env_names = {}
    for kind, binary in BINARIES.items():
        help_text = subprocess.run([str(ROOT / "target/debug" / binary), "--help"], capture_output=True,
                                   text=True, check=True).stdout
        env_names[kind] = set(re.findall(r"\[env: ([A-Z0-9_]+)", help_text))

    nats_users = dict(re.findall(r"\{user: (\S+), password: \$(\w+),",
                                 (ROOT / "deploy/nats/auth.conf").read_text()))
    for name in ("prometheus", "alertmanager", "grafana"):
        for published in services.get(name, {}).get("ports", []):
            host_ip = published.get("host_ip") if isinstance(published, dict) else str(published).split(":")[0]
            if host_ip != "127.0.0.1":
                fail(errors, f"{name}: published on {host_ip or 'every interface'}, not this host's loopback only")
    grafana = services.get("grafana", {}).get("environment", {})
    if str(grafana.get("GF_AUTH_ANONYMOUS_ENABLED", "false")).lower() != "false" \
            or grafana.get("GF_SECURITY_ADMIN_PASSWORD") != secrets["GRAFANA_ADMIN_PASSWORD"]:
        fail(errors, "grafana: anonymous access, or an admin password not the one the user sets")

    ports = {}  # service -> the port it listens on inside its container
    admin_ports = {}  # service -> its admin port (/healthz, /readyz, /metrics)
    for name, service in services.items():
        kind = service.get("build", {}).get("target")
        if "build" in service and kind not in dockerfile_stages:
            fail(errors, f"{name}: builds stage '{kind}', which the Dockerfile does not have")
        if kind not in BINARIES:
            continue
        env = service.get("environment", {})
        if "--migrate-only" in service.get("command", []):
            # The one-shot schema migration: the owner's URL, the binary's own check of it, nothing served.
            checked = subprocess.run([str(ROOT / "target/debug" / BINARIES[kind]), "--migrate-only", "--check-config"],
                                     env={"PATH": "/usr/bin:/bin", **{k: str(v) for k, v in env.items()}},
                                     capture_output=True, text=True)
            if checked.returncode != 0:
                fail(errors, f"{name}: --migrate-only --check-config refuses its environment: {checked.stderr.strip()}")
            runs[f"compose {name}"] = {"binary": BINARIES[kind], "args": ["--migrate-only"],
                                       "env": {k: str(v) for k, v in env.items()}}
            continue
        for var in env:
            if var not in env_names[kind]:
                fail(errors, f"{name}: {var} is not a setting {BINARIES[kind]} reads")
        # The binary's own validation of exactly this environment (nothing connected or bound).
        checked = subprocess.run([str(ROOT / "target/debug" / BINARIES[kind]), "--check-config"],
                                 env={"PATH": "/usr/bin:/bin", **{k: str(v) for k, v in env.items()}},
                                 capture_output=True, text=True)
        if checked.returncode != 0:
            fail(errors, f"{name}: {BINARIES[kind]} --check-config refuses its environment: {checked.stderr.strip()}")
        # Its own PostgreSQL role of least privilege (deploy/postgres/roles.sql), never the owner.
        role = {"auth-api": "natter_api", "persister": "natter_persister"}.get(kind)
        if role and urllib.parse.urlsplit(str(env.get("DATABASE_URL", ""))).username != role:
            fail(errors, f"{name}: connects to PostgreSQL as another role than {role}")
        if kind == "auth-api" and env.get("NATTER_KEY_ENCRYPTION_KEY") != secrets["NATTER_KEY_ENCRYPTION_KEY"]:
            fail(errors, f"{name}: its signing keys are not sealed under the secret the user sets")
        # Its own NATS user (deploy/nats/auth.conf), with that user's password.
        user = env.get("NATS_USER")
        if user not in nats_users:
            fail(errors, f"{name}: NATS_USER {user!r} is not a user of deploy/nats/auth.conf {sorted(nats_users)}")
        elif user != f"natter-{kind}" or env.get("NATS_PASSWORD") != secrets.get(nats_users[user]):
            fail(errors, f"{name}: connects to NATS as {user} with another role's or no password")
        runs[f"compose {name}"] = {"binary": BINARIES[kind], "args": [], "env": {k: str(v) for k, v in env.items()}}
        listen = env.get(LISTEN[kind], f"0.0.0.0:{DEFAULT_PORTS[kind]}")
        ports[name] = int(listen.rsplit(":", 1)[1])
        admin = env.get(ADMIN_LISTEN[kind])
        if admin is None:
            fail(errors, f"{name}: no {ADMIN_LISTEN[kind]}: health checks and metrics would share the public port")
        else:
            admin_ports[name] = int(admin.rsplit(":", 1)[1])
        for var in ("NATS_URL", "DATABASE_URL", "NATTER_JWKS_URL"):
            for url in filter(None, str(env.get(var, "")).split(",")):
                host = urllib.parse.urlsplit(url).hostname
                if host not in services:
                    fail(errors, f"{name}: {var} names host '{host}', which is not a compose service")
                if var == "NATTER_JWKS_URL" and host in ports and urllib.parse.urlsplit(url).port != ports[host]:
                    fail(errors, f"{name}: {var} uses port {urllib.parse.urlsplit(url).port}, {host} listens on "
                                 f"{ports[host]}")
    ports["postgres-exporter"] = admin_ports["postgres-exporter"] = 9187
    for name, service in services.items():
        if str(service.get("image", "")).startswith("nats:"):
            check_nats(errors, name, service)

    def check_target(where, target, listening=ports):
        host, _, port = target.partition(":")
        if host not in services:
            fail(errors, f"{where}: '{host}' is not a compose service")
        elif host in listening and int(port) != listening[host]:
            fail(errors, f"{where}: {host} listens on {listening[host]}, not {port}")

    prometheus = yaml.safe_load((ROOT / "prometheus/prometheus.compose.yml").read_text())
    for job in prometheus["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                check_target(f"prometheus job {job['job_name']} (admin ports)", target, admin_ports)
    check_alerting(errors, services, prometheus)
    haproxy = (ROOT / "deploy/haproxy/haproxy.cfg").read_text()
    servers = re.findall(r"^\s*server \S+ (\S+)", haproxy, re.M)
    if not servers:
        fail(errors, "deploy/haproxy/haproxy.cfg names no server")
    for target in servers:
        check_target("haproxy", target)
    for check_port in re.findall(r"^\s*server \S+ (\S+):\d+ check port (\d+)", haproxy, re.M):
        check_target("haproxy health check (admin ports)", ":".join(check_port), admin_ports)
    if len(re.findall(r"^\s*server .* check port \d+", haproxy, re.M)) != len(servers):
        fail(errors, "haproxy: every server's health check must go to its admin port (check port N)")
    # The gateways take PROXY headers from the balancer's fixed address, which sends them.
    lb_address = services.get("lb", {}).get("networks", {}).get("default", {}).get("ipv4_address")
    if "send-proxy-v2" not in re.sub(r"#.*", "", haproxy):
        fail(errors, "haproxy: the gateways' servers do not send-proxy-v2: every client would have its address")
    gateways = {name for name, s in services.items() if s.get("build", {}).get("target") == "gateway"}
    for name in gateways:
        if services[name].get("environment", {}).get("NATTER_PROXY_PROTOCOL_FROM") != lb_address:
            fail(errors, f"{name}: NATTER_PROXY_PROTOCOL_FROM is not the balancer's address {lb_address}")
    if {t.partition(":")[0] for t in servers} != gateways:
        fail(errors, f"haproxy balances {sorted(t.partition(':')[0] for t in servers)}, compose runs {sorted(gateways)}")

    out = pathlib.Path(os.environ.get("NATTER_ENVS_OUT", ROOT / "target/deployed-envs/compose.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"secrets": secrets, "services": runs}))
    for error in errors:
        print(f"compose: {error}", file=sys.stderr)
    print(f"compose: {len(services)} services checked; {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
