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
        ("after acceptance (the send the gateway took to receipt)",
         q(m["accepted_latency"]) if "accepted_latency" in m else "not measured"),
        ("ack latency (due to ack)", q(m["ack_latency"])),
        ("lost / duplicates / reordered / unrecovered",
         f"{f['lost']} / {f['duplicates']} / {f['reordered']} / {f['unrecovered']}"),
        ("reconnects", f"{report['reconnects']:,}"),
        ("closes by code", ", ".join(f"{k} {v}" for k, v in sorted(report["close_codes"].items())) or "none"),
        ("history check", history(h)),
    ]
    reads = report.get("history_reads")
    if reads:
        rows.append(("history pages of 50 read during the run (due to parsed)",
                     f"{reads['readers']} readers, {reads['pages']:,} pages, {reads['errors']} errors; "
                     + q(reads["latency"])))
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
    ap.add_argument("--fanout")
    ap.add_argument("--reconnect")
    ap.add_argument("--fanout-status")
    ap.add_argument("--reconnect-status")
    ap.add_argument("--saturate", help="a saturate report: write its section instead")
    ap.add_argument("--saturate-status")
    ap.add_argument("--command", required=True)
    ap.add_argument("--nats", required=True)
    ap.add_argument("--rustc", required=True)
    a = ap.parse_args()
    if a.saturate:
        write(a.label, saturate_section(a))
        return
    if not (a.fanout and a.reconnect and a.fanout_status and a.reconnect_status):
        ap.error("--fanout, --reconnect and their statuses are needed (or --saturate)")

    fanout = json.loads(pathlib.Path(a.fanout).read_text())
    reconnect = json.loads(pathlib.Path(a.reconnect).read_text())
    mach = fanout["machine"]
    mem_gib = int(mach.get("memory", "0 kB").split()[0]) / 1048576
    day = __import__("datetime").date.fromtimestamp(fanout["started_unix"]).isoformat()
    s = fanout["settings"]
    r = reconnect["settings"]
    # A heading of its own: what set the run apart (history readers) and its day.
    readers = s.get("history_readers") or 0
    apart = f" with {readers} history readers" if readers else ""
    section = f"""<!-- bench-fleet:{a.label} -->
### {fanout['connect']['clients']:,} users over {a.gateways} gateway processes{apart}, {day}

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
    write(a.label, section)


def step_row(s, label=""):
    shed = s["error_codes"].get("overloaded", 0)
    slow = s["close_codes"].get("4008", 0)
    per_cpu = s.get("deliveries_per_gateway_cpu_second")
    cpu = s.get("gateway_cpu_seconds")
    accepted = f"{s['accepted_p99_ms']:.1f}" if "accepted_p99_ms" in s else "-"
    return (f"| {label}{s['rate_per_sender']:.2f} | {s['offered_per_sec']:,.0f} | {s['delivered_per_sec']:,.0f} | "
            f"{s['p50_ms']:.1f} | {s['p99_ms']:.1f} | {accepted} | {s['ack_p99_ms']:.1f} | {s['unacked']:,} | {shed:,} | {slow:,} | "
            f"{s['faults']:,} | {f'{cpu:.1f}' if cpu else '-'} | {f'{per_cpu:,.0f}' if per_cpu else '-'} | "
            f"{'yes' if s['held'] else 'no'} |")


def saturate_section(a):
    rep = json.loads(pathlib.Path(a.saturate).read_text())
    mach = rep["machine"]
    mem_gib = int(mach.get("memory", "0 kB").split()[0]) / 1048576
    st = rep["settings"]
    rows = [step_row(s) for s in rep["steps"]]
    if rep.get("overload"):
        rows.append(step_row(rep["overload"], "overload: "))
    best = rep.get("highest_held")
    first_mem = rep["steps"][0].get("memory_per_connection_bytes") if rep["steps"] else None
    verdict = (f"Highest rate that held: **{best['offered_per_sec']:,.0f} deliveries/s** (p99 {best['p99_ms']:.1f} ms"
               + (f", {best['deliveries_per_gateway_cpu_second']:,.0f} deliveries per gateway CPU second"
                  if best.get("deliveries_per_gateway_cpu_second") else "") + ")."
               if best else "No step held.")
    runtime = "single-threaded" if "--gateway-threads 1" in a.command else "multi-threaded"
    # Written right after the run: its day is today.
    day = __import__("datetime").date.today().isoformat()
    return f"""<!-- bench-fleet:{a.label} -->
### Saturation: {st['users']:,} users over {a.gateways} gateway processes, {runtime} runtime, {day}

Machine: {mach.get('cores')} cores ({mach.get('cpu', '?')}), {mem_gib:.0f} GiB, {mach.get('os', '?')}, {a.rustc},
{a.nats}. Everything shares the machine, the harness's {st['workers']} worker processes included. Command:
`{a.command}` (exit status {a.saturate_status}; 0: some step held). Report:
[`benchmarks/{a.label}.json`](../benchmarks/{a.label}.json).

Each step is a whole fan-out run ({st['users']:,} users in {st['rooms']:,} rooms, one sender per room, every user
connected before the first send, {st['duration']:.0f} s of sending). A step holds when the end-to-end p99 is within
{rep['max_p99_ms']:.0f} ms, every send is acknowledged and no acknowledged message is lost, duplicated or
reordered. *Shed* counts sends refused with `overloaded`; *4008* slow consumers closed; *faults* deliveries of
acknowledged messages that went missing, twice or out of order. The p50 and p99 run from when a message was due,
so a refused message's pauses before it was sent again count; *taken p99* runs from the send the gateway took,
the delay of what it acknowledged. Gateway CPU is user + system time from `/proc` over the send phase and the
drain, all gateways summed.

| msg/s per room | offered deliveries/s | delivered/s | p50 ms | p99 ms | taken p99 ms | ack p99 ms | unacked | shed | 4008 | faults | gateway CPU s | deliveries per gateway CPU s | held |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
""" + "\n".join(rows) + f"""

{verdict}{f" Gateway memory {first_mem / 1024:.1f} KiB per joined connection (first step, fresh gateways)." if first_mem else ""}
<!-- /bench-fleet:{a.label} -->"""


def write(label, section):
    doc = DOC.read_text()
    pattern = re.compile(rf"<!-- bench-fleet:{re.escape(label)} -->.*?<!-- /bench-fleet:{re.escape(label)} -->",
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
