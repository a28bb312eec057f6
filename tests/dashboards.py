#!/usr/bin/env python3
"""Checks the Grafana dashboards in grafana/dashboards/.

    python3 tests/dashboards.py                      # mechanical checks
    python3 tests/dashboards.py --prometheus URL     # also every panel's every query against that Prometheus

Mechanical: each file is what grafana/dashboards.py writes, valid JSON, unique dashboard uids and panel ids,
the provisioned datasource on every panel and query, every panel titled, described and with a unit, and every
natter_*/process_* metric a query or an alert or recording rule names defined by a service; an `instance`
variable (multi, All) on each dashboard and no other variable in a query, thresholds as absolute steps, and every
"Runbook" link an alert's runbook_url. Against Prometheus (which must have scraped a
stack under load): every query, its template variables substituted, returns data over the last minutes, and
every metric the dashboards and the alert rules name is one Prometheus has seen. A panel with "No data" fails.
"""

import argparse
import json
import math
import pathlib
import re
import sys
import time
import urllib.parse
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "grafana"))
import dashboards as source  # noqa: E402

METRIC = re.compile(r"\b((?:natter|process|pg)_[a-z_]+)")
SUFFIXES = ("_bucket", "_count", "_sum")


def metric_names(expr):
    names = set()
    for name in METRIC.findall(expr):
        for suffix in SUFFIXES:
            if name.endswith(suffix):
                name = name[: -len(suffix)]
        names.add(name)
    return names


def defined_metrics():
    text = "".join(p.read_text() for p in ROOT.glob("*/src/metrics.rs")) + (ROOT / "service/src/lib.rs").read_text()
    return set(re.findall(r'"((?:natter|process)_[a-z_]+)"', text))


def load():
    boards = {}
    for path in sorted((ROOT / "grafana/dashboards").glob("*.json")):
        boards[path.name] = (path.read_text(), json.loads(path.read_text()))
    return boards


def mechanical(boards, errors):
    expected = source.rendered()
    if set(expected) != set(boards):
        errors.append(f"grafana/dashboards/ holds {sorted(boards)}, grafana/dashboards.py writes {sorted(expected)}")
    for name, (text, _) in boards.items():
        if expected.get(name) != text:
            errors.append(f"{name} differs from what grafana/dashboards.py writes (run it)")
    provisioned = (ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text()
    uid = re.search(r"uid:\s*(\S+)", provisioned).group(1)
    uids = [board["uid"] for _, board in boards.values()]
    if len(set(uids)) != len(uids):
        errors.append(f"dashboard uids repeat: {uids}")
    defined = defined_metrics()
    for name, (_, board) in boards.items():
        ids = [p["id"] for p in board["panels"]]
        if len(set(ids)) != len(ids):
            errors.append(f"{name}: panel ids repeat")
        for p in board["panels"]:
            where = f"{name} panel {p.get('id')} '{p.get('title')}'"
            for field in ("title", "description"):
                if not p.get(field):
                    errors.append(f"{where}: no {field}")
            if not p.get("fieldConfig", {}).get("defaults", {}).get("unit"):
                errors.append(f"{where}: no unit")
            if p.get("datasource", {}).get("uid") != uid:
                errors.append(f"{where}: datasource is not the provisioned '{uid}'")
            if not p.get("targets"):
                errors.append(f"{where}: no query")
            for t in p.get("targets", []):
                if t.get("datasource", {}).get("uid") != uid or not t.get("expr"):
                    errors.append(f"{where} query {t.get('refId')}: no expr or not the provisioned datasource")
                for metric in metric_names(t.get("expr", "")):
                    if not metric.startswith("pg_") and metric not in defined:
                        errors.append(f"{where}: '{metric}' is not a metric any service defines")
    runbooks = set(re.findall(r'runbook_url:\s*"([^"]+)"', (ROOT / "prometheus/rules/alerts.yml").read_text()))
    for name, (_, board) in boards.items():
        variables = {v["name"]: v for v in board.get("templating", {}).get("list", [])}
        instance = variables.get("instance")
        if not instance or not (instance.get("multi") and instance.get("includeAll")):
            errors.append(f"{name}: no multi-select `instance` variable with All")
        for p in board["panels"]:
            where = f"{name} panel {p.get('id')} '{p.get('title')}'"
            for t in p.get("targets", []):
                # Only the variables substitute() fills: the live check must run what Grafana runs.
                for var in set(re.findall(r"\$\{?(\w+)", t.get("expr", ""))) - {"instance", "__rate_interval"}:
                    errors.append(f"{where} query {t.get('refId')}: variable ${var} the live check cannot fill")
            thresholds = p.get("fieldConfig", {}).get("defaults", {}).get("thresholds")
            if thresholds:
                values = [s.get("value") for s in thresholds.get("steps", [])]
                if thresholds.get("mode") != "absolute" or not values or values[0] is not None \
                        or values[1:] != sorted(values[1:]) or None in values[1:]:
                    errors.append(f"{where}: thresholds not absolute steps from null upwards: {thresholds}")
            for link in p.get("links", []):
                if not link.get("title") or not link.get("url"):
                    errors.append(f"{where}: a link without title or url")
                elif link["title"].startswith("Runbook") and link["url"] not in runbooks:
                    errors.append(f"{where}: runbook link {link['url']} is no alert's runbook_url")
    for rules in sorted((ROOT / "prometheus/rules").glob("*.yml")):
        for metric in sorted(metric_names(rules.read_text())):
            if not metric.startswith("pg_") and metric not in defined:
                errors.append(f"prometheus/rules/{rules.name}: '{metric}' is not a metric any service defines")


def substitute(expr):
    """Template variables as Grafana would fill them with "All" selected and a short range."""
    return expr.replace("$__rate_interval", "1m").replace("$instance", ".*")


def get(prometheus, path, **params):
    url = f"{prometheus}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as reply:
        body = json.load(reply)
    if body.get("status") != "success":
        raise RuntimeError(f"{path} {params}: {body}")
    return body["data"]


def live(boards, prometheus, errors):
    end = time.time()
    start = end - 240
    checked = 0
    for name, (_, board) in boards.items():
        for p in board["panels"]:
            for t in p["targets"]:
                expr = substitute(t["expr"])
                try:
                    result = get(prometheus, "/api/v1/query_range", query=expr, start=start, end=end, step=5)["result"]
                except Exception as err:  # noqa: BLE001 (any failure is the test's finding)
                    errors.append(f"{name} '{p['title']}' {t['refId']}: {err}")
                    continue
                values = [float(v) for series in result for _, v in series["values"]]
                if not any(math.isfinite(v) for v in values):
                    errors.append(f"{name} '{p['title']}' {t['refId']}: no data for {expr}")
                checked += 1
    seen = set(get(prometheus, "/api/v1/label/__name__/values"))
    named = set()
    for _, board in boards.values():
        for p in board["panels"]:
            for t in p["targets"]:
                named |= metric_names(t["expr"])
    for rules in (ROOT / "prometheus/rules").glob("*.yml"):
        named |= metric_names(rules.read_text())
    for metric in sorted(named):
        if not ({metric} | {metric + s for s in SUFFIXES}) & seen:
            errors.append(f"'{metric}' is named by a dashboard or rule but Prometheus has never seen it")
    return checked


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", help="base URL of a Prometheus that scraped a stack under load")
    args = parser.parse_args()
    boards = load()
    errors = []
    mechanical(boards, errors)
    panels = sum(len(board["panels"]) for _, board in boards.values())
    summary = f"{len(boards)} dashboards, {panels} panels"
    if args.prometheus:
        summary += f", {live(boards, args.prometheus.rstrip('/'), errors)} queries answered with data"
    for error in errors:
        print(f"dashboards: {error}", file=sys.stderr)
    print(f"dashboards: {summary}; {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
