#!/usr/bin/env python3
"""Writes the figures of a `./natter bench` run into docs/benchmarks.md.

Reads the harness's JSON reports and replaces (or appends) the section marked with the run's label, so a rerun
updates its own section and leaves the others alone.
"""

import argparse
import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
HEADING = "## Fleet: the load-test harness against several gateway processes"


def q(latency):
    if not latency.get("count"):
        return "no samples"
    return "p50 {:.1f} ms, p99 {:.1f} ms, p99.9 {:.1f} ms, max {:.1f} ms".format(
        latency["p50_ms"], latency["p99_ms"], latency["p999_ms"], latency["max_ms"]
    )


def failures(report):
    f = report["connect"]["failures"]
    return ", ".join(f"{k} {v}" for k, v in sorted(f.items())) or "none"


def history(h):
    if not h:
        return "not run"
    text = f"{h['checked']:,} acked messages looked up, {h['missing']} missing, {h['duplicated']} duplicated"
    if "waited_secs" in h:
        text += (f"; all found {h['waited_secs']:.1f} s after the run" if h["missing"] == 0
                 else f"; gave up after {h['waited_secs']:.0f} s")
    return text


def table(report, status, memory=True):
    c, m, f = report["connect"], report["messages"], report["faults"]
    g = report["gateway_metrics"]
    h = report.get("history") or {}
    per_conn = g.get("memory_per_connection_bytes")
    rows = [
        ("exit status (0: every SLO met)", str(status)),
        ("connected", f"{c['connected']:,} of {c['clients']:,} ({failures(report)} failed)"),
        ("connect rate", f"{c['per_sec']:,.0f} connections/s ({c['phase_secs']:.1f} s for all)"),
        ("connect latency (TCP to hello)", q(c["latency"])),
        ("messages", f"{m['sent']:,} sent, {m['acked']:,} acked, {m['unacked']:,} unacked"),
        ("deliveries", f"{m['delivered']:,} of {m['expected']:,} expected; {m['deliveries_per_sec']:,.0f}/s mean, "
                       f"{m['peak_deliveries_per_sec']:,.0f}/s peak"),
        ("end-to-end latency (due to receipt)", q(m["latency"])),
        ("ack latency (due to ack)", q(m["ack_latency"])),
        ("lost / duplicates / reordered / unrecovered",
         f"{f['lost']} / {f['duplicates']} / {f['reordered']} / {f['unrecovered']}"),
        ("reconnects", f"{report['reconnects']:,}"),
        ("closes by code", ", ".join(f"{k} {v}" for k, v in sorted(report["close_codes"].items())) or "none"),
        ("history check", history(h)),
    ]
    if memory:
        rows.append(("gateway memory per connection",
                     f"{per_conn / 1024:.1f} KiB (RSS added / connections added, all gateways)" if per_conn
                     else "not measured"))
    out = ["| figure | value |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", required=True)
    ap.add_argument("--gateways", required=True)
    ap.add_argument("--fanout", required=True)
    ap.add_argument("--reconnect", required=True)
    ap.add_argument("--fanout-status", required=True)
    ap.add_argument("--reconnect-status", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--nats", required=True)
    ap.add_argument("--rustc", required=True)
    a = ap.parse_args()

    fanout = json.loads(pathlib.Path(a.fanout).read_text())
    reconnect = json.loads(pathlib.Path(a.reconnect).read_text())
    mach = fanout["machine"]
    mem_gib = int(mach.get("memory", "0 kB").split()[0]) / 1048576
    day = __import__("datetime").date.fromtimestamp(fanout["started_unix"]).isoformat()
    s = fanout["settings"]
    r = reconnect["settings"]
    section = f"""<!-- bench-fleet:{a.label} -->
### {fanout['connect']['clients']:,} users over {a.gateways} gateway processes, {day}

Machine: {mach.get('cores')} cores ({mach.get('cpu', '?')}), {mem_gib:.0f} GiB, {mach.get('os', '?')}, {a.rustc},
{a.nats}. Everything shares the machine: NATS, PostgreSQL, the auth API, the persister, the gateways and
{fanout['workers']} harness worker processes. Command: `{a.command}`. Reports:
[`benchmarks/fanout-{a.label}.json`](../benchmarks/fanout-{a.label}.json) and
[`benchmarks/reconnect-{a.label}.json`](../benchmarks/reconnect-{a.label}.json), plots beside them.

**Fanout** ({s['users']:,} users in {s['rooms']:,} rooms, {s['senders']} sender per room at {s['rate']} msg/s for
{s['duration']:.0f} s, every user connecting at once, `--verify-history --max-loss 0 --min-connected 1`):

{table(fanout, a.fanout_status)}

**Reconnect** ({r['users']:,} users, a quarter dropping a third of the way in and rejoining from their last seq
after {r['reconnect_after']:.0f} s, and one extra gateway process drained with SIGTERM half-way through;
`--verify-history --max-loss 0`):

{table(reconnect, a.reconnect_status, memory=False)}

(Memory per connection is not shown for this run: its gateways had already held the fanout run's clients, and
freed memory stays with the processes, so the growth it saw says nothing about the cost of a connection. End-to-end
latency counts the dropped clients' replayed messages from when they were due, so its tail is the time spent away.)
<!-- /bench-fleet:{a.label} -->"""

    doc = DOC.read_text()
    pattern = re.compile(rf"<!-- bench-fleet:{re.escape(a.label)} -->.*?<!-- /bench-fleet:{re.escape(a.label)} -->",
                         re.S)
    if pattern.search(doc):
        doc = pattern.sub(lambda _: section, doc)
    else:
        if HEADING not in doc:
            doc = doc.rstrip("\n") + f"\n\n{HEADING}\n"
        doc = doc.rstrip("\n") + "\n\n" + section + "\n"
    DOC.write_text(doc)


if __name__ == "__main__":
    main()
