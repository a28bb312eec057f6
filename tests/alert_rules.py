#!/usr/bin/env python3
"""Checks the alert rules against their tests and their runbooks, beside promtool's own checks.

Every alert in prometheus/rules/alerts.yml is tested firing (an expected alert) and quiet (an empty expectation)
by prometheus/tests/*.test.yml (Watchdog only firing: it never stops); every alert has a severity of page, ticket
or none and a runbook_url naming a heading of docs/operations.md; every panel a runbook names ("quoted") is a
panel of the dashboards; every alert and SLO name an inhibition rule of alertmanager/alertmanager.yml matches is
one the rules define.
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def slug(heading):
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def main():
    failures = []
    rules = (ROOT / "prometheus/rules/alerts.yml").read_text()
    alerts = re.findall(r"^ +- alert: (\w+)$", rules, re.M)
    blocks = re.split(r"^ +- alert: ", rules, flags=re.M)[1:]
    docs = (ROOT / "docs/operations.md").read_text()
    anchors = {slug(h) for h in re.findall(r"^#+ (.+)$", docs, re.M)}
    for block in blocks:
        name = block.split("\n", 1)[0].strip()
        severity = re.search(r"severity: (\w+)", block)
        if not severity or severity.group(1) not in ("page", "ticket", "none"):
            failures.append(f"{name}: severity must be page, ticket or none")
        runbook = re.search(r'runbook_url: "docs/operations\.md#([\w-]+)"', block)
        if not runbook:
            failures.append(f"{name}: no runbook_url into docs/operations.md")
        elif runbook.group(1) not in anchors:
            failures.append(f"{name}: runbook_url #{runbook.group(1)} is no heading of docs/operations.md")

    sys.path.insert(0, str(ROOT / "grafana"))
    import dashboards  # noqa: E402

    titles = {panel["title"] for board in dashboards.DASHBOARDS.values() for panel in board["panels"]}
    runbooks = docs[docs.index("### Runbooks"):]
    runbooks = runbooks[: runbooks.index("\n## ")]
    for named in re.findall(r'"([^"]+)"', runbooks.replace("\n  ", " ").replace("\n", " ")):
        if named not in titles:
            failures.append(f"a runbook names the panel \"{named}\", which no dashboard has")

    tests = "\n".join(p.read_text() for p in sorted((ROOT / "prometheus/tests").glob("*.test.yml")))
    fired = set(re.findall(r"alertname: (\w+)\n +exp_alerts:\n", tests))
    quiet = set(re.findall(r"alertname: (\w+)\n +exp_alerts: \[\]", tests))
    for name in alerts:
        if name not in fired:
            failures.append(f"{name}: no promtool test expects it to fire")
        if name not in quiet and name != "Watchdog":
            failures.append(f"{name}: no promtool test expects it quiet")

    routing = (ROOT / "alertmanager/alertmanager.yml").read_text()
    for pattern in re.findall(r'alertname =~? "?([\w|()]+)"?', routing):
        for name in re.findall(r"\w+", pattern):
            known = [a for a in alerts if re.fullmatch(pattern, a)]
            if not known:
                failures.append(f"alertmanager.yml names {pattern}, which matches no alert")
                break
    slos = set(re.findall(r"slo: (\w+)\}", (ROOT / "prometheus/rules/slo.yml").read_text()))
    for slo in re.findall(r"slo = (\w+)", routing):
        if slo not in slos:
            failures.append(f"alertmanager.yml names SLO {slo}, which slo.yml does not record")

    for failure in failures:
        print(f"FAIL: {failure}")
    print(f"{len(alerts)} alerts: each tested firing and quiet, with a severity and a runbook" if not failures else "")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
