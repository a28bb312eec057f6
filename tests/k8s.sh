#!/usr/bin/env bash
# deploy/k8s renders with kustomize (base and the example overlay), validates offline against the Kubernetes
# schemas (kubernetes-validate, from PyPI, in a virtualenv under target/), and each container's environment is
# accepted by its binary's --check-config (secrets and pod fields replaced by stand-ins of the same shape); the NATS
# Helm values pin a 2.10+ server that fsyncs every JetStream write (sync_interval: always).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

venv="$ROOT/target/k8s-validate"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate==1.31.0
fi
cargo build -q -p natter-auth-api -p natter-gateway -p natter-persister

for dir in deploy/k8s/base deploy/k8s/overlays/example; do
  kubectl kustomize "$dir" >"$tmp/rendered.yaml"
  # --strict: unknown fields are errors too.
  "$venv/bin/kubernetes-validate" --strict --kubernetes-version 1.31.0 "$tmp/rendered.yaml"
  # The example deployment's environments, for tests/deployed.sh to start the binaries with.
  envs_out=""
  [ "$dir" = deploy/k8s/overlays/example ] && mkdir -p "$ROOT/target/deployed-envs" \
    && envs_out="$ROOT/target/deployed-envs/k8s.json"
  NATTER_ENVS_OUT="$envs_out" "$venv/bin/python" - "$tmp/rendered.yaml" "$ROOT/target/debug" <<'PY'
import subprocess, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
# Stand-ins for what the cluster fills in.
secrets = {("natter-db-app", "uri"): "postgresql://natter:secret@natter-db-rw:5432/natter",
           ("natter-keys", "key-encryption-key"): "stand-in-key-encryption-secret-of-32-bytes",
           ("natter-db-roles", "api-uri"): "postgresql://natter_api:secret@natter-db-rw:5432/natter",
           ("natter-db-roles", "persister-uri"): "postgresql://natter_persister:secret@natter-db-rw:5432/natter",
           **{("natter-db-roles", f"{r}-password"): "secret" for r in ("api", "persister", "exporter")},
           **{("natter-nats", f"{role}-password"): f"stand-in-{role}" for role in ("gateway", "auth-api", "persister")}}
fields = {"metadata.name": "natter-gateway-7d4f9-abcde", "status.podIP": "10.0.0.7"}
binaries = {"auth-api": "natter-auth-api", "gateway": "natter-gateway", "persister": "natter-persister",
            "migrate": "natter-auth-api"}
problems = 0
envs = {}
for d in docs:
    if d["kind"] not in ("Deployment", "Job"):
        continue
    for c in d["spec"]["template"]["spec"]["containers"]:
        if c["name"] not in binaries:
            continue  # not a Natter binary (the roles Job's psql)
        env = {}
        for source in c.get("envFrom", []):
            env.update(configmaps[source["configMapRef"]["name"]])
        for e in c.get("env", []):
            if "value" in e:
                value = e["value"]
                for k, v in env.items():
                    value = value.replace(f"$({k})", v)
                env[e["name"]] = value
            elif "configMapKeyRef" in e["valueFrom"]:
                ref = e["valueFrom"]["configMapKeyRef"]
                env[e["name"]] = configmaps[ref["name"]][ref["key"]]
            elif "secretKeyRef" in e["valueFrom"]:
                ref = e["valueFrom"]["secretKeyRef"]
                env[e["name"]] = secrets[(ref["name"], ref["key"])]
            else:
                env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
        binary = binaries[c["name"]]
        out = subprocess.run([f"{sys.argv[2]}/{binary}", *c.get("args", []), "--check-config"],
                             env={"PATH": "/usr/bin:/bin", **env},
                             capture_output=True, text=True)
        if out.returncode != 0:
            problems += 1
            print(f"k8s: {d['metadata']['name']}: {out.stderr.strip()}", file=sys.stderr)
        envs[c["name"]] = env

# A browser can reach the gateways: the URL they register (and the API hands out) is wss:// on the Ingress's
# host, whose path is routed to the gateway Service; the API hands out only that URL; the page's origin is allowed.
from urllib.parse import urlsplit
public = urlsplit(envs["gateway"].get("NATTER_GATEWAY_PUBLIC_URL", ""))
ingresses = [d for d in docs if d["kind"] == "Ingress"]
routes = {(r["host"], p["path"]): p["backend"]["service"]["name"]
          for i in ingresses for r in i["spec"]["rules"] for p in r["http"]["paths"]}
tls_hosts = {h for i in ingresses for t in i["spec"].get("tls", []) for h in t["hosts"]}
checks = [
    (public.scheme == "wss", f"gateways register {public.geturl()!r}: an https page may open only wss://"),
    (routes.get((public.hostname, public.path)) == "natter-gateway",
     f"no Ingress route from {public.hostname}{public.path} to the gateways: {routes}"),
    (public.hostname in tls_hosts, f"the Ingress serves {public.hostname} without TLS"),
    (envs["auth-api"].get("NATTER_GATEWAY_URL_PATTERNS") == public.geturl(),
     "the auth API hands out other URLs than the gateways' public one"),
    (f"https://{public.hostname}" in envs["gateway"].get("NATTER_ALLOWED_ORIGINS", "").split(","),
     f"the gateways do not allow the page's origin https://{public.hostname}"),
    (urlsplit(envs["auth-api"]["DATABASE_URL"]).username == "natter_api"
     and urlsplit(envs["persister"]["DATABASE_URL"]).username == "natter_persister"
     and urlsplit(envs["migrate"]["DATABASE_URL"]).username == "natter",
     "the services do not connect as their PostgreSQL roles (database.yaml), or the migration not as the owner"),
    (envs["gateway"].get("NATTER_MAX_PENDING_PER_ADDRESS") == "0",
     "behind the Ingress every client has its address: the per-address pending cap must be off"),
]
for ok, problem in checks:
    if not ok:
        problems += 1
        print(f"k8s: {problem}", file=sys.stderr)
# What each container is started with, for tests/deployed.sh (NATTER_ENVS_OUT, for the example deployment).
import json, os
if os.environ.get("NATTER_ENVS_OUT"):
    runs = {f"k8s {name}": {"binary": binaries[name], "args": ["--migrate-only"] if name == "migrate" else [],
                            "env": env} for name, env in envs.items()}
    json.dump({"secrets": {f"{k[0]}/{k[1]}": v for k, v in secrets.items()}, "services": runs},
              open(os.environ["NATTER_ENVS_OUT"], "w"))
sys.exit(1 if problems else 0)
PY
  echo "k8s: $dir renders, validates and its environments pass --check-config"
done

# Alertmanager (deploy/k8s/monitoring, which the example overlay includes): rendered on its own and validated as
# above; in the example deployment, the pinned image runs alertmanager/alertmanager.yml from the secret
# natter-alertmanager with its storage on a volume, non-root, probed on /-/ready, within limits, behind the Service
# that prometheus.yml (the snippet for the cluster's Prometheus) sends alerts to; prometheus-rules.sh gives
# prometheus-operator exactly prometheus/rules. (Debian's promtool is built without Kubernetes discovery, so the
# snippet's scrape job is only parsed here.)
kubectl kustomize deploy/k8s/monitoring >"$tmp/monitoring.yaml"
"$venv/bin/kubernetes-validate" --strict --kubernetes-version 1.31.0 "$tmp/monitoring.yaml"
kubectl kustomize deploy/k8s/overlays/example >"$tmp/example.yaml"
deploy/k8s/monitoring/prometheus-rules.sh --label release=check >"$tmp/prometheus-rules.yaml"
"$venv/bin/python" - "$tmp/example.yaml" deploy/k8s/monitoring/prometheus.yml "$tmp/prometheus-rules.yaml" <<'PY'
import pathlib, posixpath, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
problems = []
def find(kind, name):
    return next((d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name), None)
deployment, service = find("Deployment", "natter-alertmanager"), find("Service", "alertmanager")
if deployment is None or service is None:
    problems.append("the example deployment has no Deployment natter-alertmanager and Service alertmanager")
else:
    pod = deployment["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    if c["image"] != "prom/alertmanager:v0.27.0":
        problems.append(f"alertmanager image {c['image']}, not the pinned prom/alertmanager:v0.27.0")
    args = dict(a[2:].split("=", 1) for a in c.get("args", []) if a.startswith("--") and "=" in a)
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    mounts = {m["mountPath"]: volumes.get(m["name"], {}) for m in c.get("volumeMounts", [])}
    config = args.get("config.file", "")
    secret = mounts.get(posixpath.dirname(config), {}).get("secret", {})
    if secret.get("secretName") != "natter-alertmanager" or "items" in secret \
            or posixpath.basename(config) != "alertmanager.yml":
        problems.append(f"--config.file={config} is not alertmanager.yml of the secret natter-alertmanager")
    if "persistentVolumeClaim" not in mounts.get(args.get("storage.path"), {}):
        problems.append(f"--storage.path={args.get('storage.path')} is not on a volume: a restart forgets silences")
    if deployment["spec"].get("strategy", {}).get("type") != "Recreate":
        problems.append("natter-alertmanager's ReadWriteOnce volume needs the Recreate strategy")
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    probe = c.get("readinessProbe", {}).get("httpGet", {})
    if probe.get("path") != "/-/ready" or ports.get(probe.get("port"), probe.get("port")) != 9093:
        problems.append(f"alertmanager's readiness probe is {probe}, not /-/ready on 9093")
    if not c.get("resources", {}).get("requests") or "memory" not in c.get("resources", {}).get("limits", {}):
        problems.append("alertmanager has no resource requests or memory limit")
    if pod["spec"].get("securityContext", {}).get("runAsNonRoot") is not True:
        problems.append("alertmanager may run as root")
    labels = pod["metadata"]["labels"]
    if any(labels.get(k) != v for k, v in service["spec"]["selector"].items()):
        problems.append("the Service alertmanager does not select the Alertmanager pods")
    if not any(p["port"] == 9093 and ports.get(p.get("targetPort"), p.get("targetPort")) == 9093
               for p in service["spec"]["ports"]):
        problems.append("the Service alertmanager does not serve Alertmanager's 9093 on 9093")
    namespace = service["metadata"].get("namespace", "default")
    prometheus = yaml.safe_load(open(sys.argv[2]))
    targets = [t for am in prometheus.get("alerting", {}).get("alertmanagers", [])
               for s in am.get("static_configs", []) for t in s.get("targets", [])]
    if targets != [f"alertmanager.{namespace}.svc:9093"]:
        problems.append(f"{sys.argv[2]} alerts to {targets}, not the Service alertmanager.{namespace}.svc:9093")
    if not prometheus.get("rule_files"):
        problems.append(f"{sys.argv[2]} loads no rules")
rules = {d["metadata"]["name"]: d["spec"] for d in yaml.safe_load_all(open(sys.argv[3])) if d}
files = {f"natter-{f.stem}": yaml.safe_load(f.read_text()) for f in sorted(pathlib.Path("prometheus/rules").glob("*.yml"))}
if rules != files:
    problems.append("prometheus-rules.sh's PrometheusRules are not prometheus/rules/*.yml")
for p in problems:
    print(f"k8s: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
PY
echo "k8s: deploy/k8s/monitoring validates; Alertmanager runs alertmanager/alertmanager.yml behind the Service prometheus.yml alerts to; prometheus-rules.sh gives prometheus/rules"

# The NATS Helm values: a pinned server of 2.10 or later, with JetStream fsyncing every write before acknowledging.
"$venv/bin/python" - "$ROOT/deploy/k8s/nats/values.yaml" "$ROOT/deploy/nats/auth.conf" <<'PY'
import re, sys, yaml
values = yaml.safe_load(open(sys.argv[1]))
tag = str(values.get("container", {}).get("image", {}).get("tag", ""))
version = re.match(r"(\d+)\.(\d+)\.(\d+)", tag)
problems = []
if not version or tuple(map(int, version.groups())) < (2, 10, 0):
    problems.append(f"container.image.tag '{tag}' is not a pinned release of 2.10 or later")
if values.get("config", {}).get("jetstream", {}).get("merge", {}).get("sync_interval") != "always":
    problems.append("config.jetstream.merge.sync_interval is not 'always'")
config = values.get("config", {})
if "auth.conf" not in str(config.get("merge", {}).get("$include", "")):
    problems.append("config.merge does not $include deploy/nats/auth.conf: anything could connect")
env = values.get("container", {}).get("env", {})
for var in sorted(set(re.findall(r"password: \$(\w+)", open(sys.argv[2]).read()))):
    if "secretKeyRef" not in str(env.get(var, {})):
        problems.append(f"container.env.{var} (read by auth.conf) is not taken from a secret")
for p in problems:
    print(f"k8s: deploy/k8s/nats/values.yaml: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
PY
echo "k8s: deploy/k8s/nats/values.yaml pins a 2.10 server with sync_interval always and deploy/nats/auth.conf's users"
