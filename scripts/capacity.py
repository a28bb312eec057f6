#!/usr/bin/env python3
"""Sizes a Natter deployment for a load from per-unit costs, or checks the model against load-test reports.

    ./natter capacity --users N --rooms R --msgs-per-user-per-min M [--room-size S] [--connects-per-sec C]
                      [--replicas 1|3] [--utilisation PCT] [--node-cores N] [--costs FILE] [--json]
    ./natter capacity --check REPORT.json... [--costs FILE] [--json]

The costs (CPU time per unit of work, memory per connection, limits) are data, in scripts/capacity-costs.json,
each with its unit and where it was measured; docs/capacity.md describes the model. Python 3.11, stdlib only.

Exit status: 0 done (with --check: every prediction within 25 % of what the report measured); 1 with --check, a
prediction off by more than 25 %; 2 with --check, a report that cannot be read or holds no CPU figure to compare;
64 bad arguments or a bad cost file.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_COSTS = ROOT / "scripts" / "capacity-costs.json"
# A run that left more than this share of its sends unacknowledged was overloaded: its send phase is not checked.
OVERLOADED_SHARE = 0.1
CHECK_BOUND = 0.25

# Every figure the model reads from the cost file.
REQUIRED = {
    "costs": [
        "gateway_cpu_per_connect_us",
        "gateway_cpu_per_delivery_us",
        "gateway_cpu_per_connection_second_us",
        "gateway_memory_per_connection_kib",
        "gateway_memory_per_process_mib",
        "nats_cpu_per_delivery_us",
        "nats_cpu_per_message_per_extra_replica_us",
        "nats_stream_messages_per_second",
        "persister_cpu_per_row_us",
        "postgres_cpu_per_row_us",
        "persister_rows_per_second",
    ],
    "limits": ["gateway_connections_per_process", "stream_partitions"],
    "defaults": ["target_utilisation_percent", "node_cores", "reconnects_per_user_per_hour"],
}


class UsageError(Exception):
    """Bad arguments or a bad cost file: printed as one line, exit status 64."""


class ReportError(Exception):
    """A report that cannot be read or compared."""


# ---------------------------------------------------------------------------------------------------------------
# The cost file


def read_json(path: Path, error: type, what: str):
    """The JSON in `path`, or `error` saying why `what` could not be read."""
    try:
        return json.loads(Path(path).read_text())
    except OSError as err:
        raise error(f"cannot read {what}: {err.strerror}") from err
    except json.JSONDecodeError as err:
        raise error(f"{what} is not JSON: {err}") from err


def load_costs(path: Path) -> dict:
    """The cost file as {section: {name: {"value", "unit", "source", ...}}}, every figure the model needs present
    and a positive number."""
    data = read_json(path, UsageError, f"the cost file {path}")
    for section, names in REQUIRED.items():
        for name in names:
            entry = data.get(section, {}).get(name)
            if not isinstance(entry, dict) or "value" not in entry:
                raise UsageError(f"the cost file {path} has no {section}.{name}.value")
            value = entry["value"]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise UsageError(f"the cost file's {section}.{name}.value must be a positive number, not {value!r}")
            for field in ("unit", "source"):
                if not isinstance(entry.get(field), str) or not entry[field].strip():
                    raise UsageError(f"the cost file's {section}.{name} has no {field}")
    return data


def figure(costs: dict, name: str) -> float:
    for section in ("costs", "limits", "defaults"):
        if name in costs.get(section, {}):
            return float(costs[section][name]["value"])
    raise KeyError(name)


# ---------------------------------------------------------------------------------------------------------------
# The model


def size(
    costs: dict,
    users: int,
    rooms: int,
    msgs_per_user_per_min: float,
    room_size: float | None = None,
    connects_per_sec: float | None = None,
    replicas: int = 3,
    utilisation: float | None = None,
    node_cores: int | None = None,
) -> dict:
    """The sizing of a load: every input, every intermediate rate and every result, as a dict."""
    f = lambda name: figure(costs, name)  # noqa: E731
    validate_load(users, rooms, msgs_per_user_per_min, room_size, connects_per_sec, replicas, utilisation, node_cores)
    if room_size is None:
        room_size = users / rooms
    if connects_per_sec is None:
        connects_per_sec = users * f("reconnects_per_user_per_hour") / 3600
    if utilisation is None:
        utilisation = f("target_utilisation_percent")
    if node_cores is None:
        node_cores = int(f("node_cores"))
    u = utilisation / 100

    # The load's rates.
    messages_per_sec = users * msgs_per_user_per_min / 60
    deliveries_per_sec = messages_per_sec * room_size
    rows_per_sec = messages_per_sec

    # Gateways: busy cores are CPU seconds per second at 100 %; provisioned cores leave the headroom.
    gw_deliveries = deliveries_per_sec * f("gateway_cpu_per_delivery_us") / 1e6
    gw_keepalive = users * f("gateway_cpu_per_connection_second_us") / 1e6
    gw_connects = connects_per_sec * f("gateway_cpu_per_connect_us") / 1e6
    gw_busy = gw_deliveries + gw_keepalive + gw_connects
    gw_cores = provision(gw_busy, u)
    per_process = int(f("gateway_connections_per_process"))
    processes_for_files = math.ceil(users / per_process)
    processes_for_cores = math.ceil(gw_cores / node_cores)
    gw_processes = max(processes_for_files, processes_for_cores, 1)
    gw_memory_need_gib = (
        users * f("gateway_memory_per_connection_kib") / 2**20
        + gw_processes * f("gateway_memory_per_process_mib") / 2**10
    )
    gw_memory_gib = gw_memory_need_gib / u

    # NATS: every delivery, and each replica of the stream beyond the first per message.
    nats_deliveries = deliveries_per_sec * f("nats_cpu_per_delivery_us") / 1e6
    nats_replication = messages_per_sec * (replicas - 1) * f("nats_cpu_per_message_per_extra_replica_us") / 1e6
    nats_busy = nats_deliveries + nats_replication
    nats_cores = provision(nats_busy, u)
    nats_nodes = max(replicas, math.ceil(nats_cores / node_cores))

    # The persisters and PostgreSQL: one row per message.
    persister_busy = rows_per_sec * f("persister_cpu_per_row_us") / 1e6
    persister_cores = provision(persister_busy, u)
    persisters = min(max(2, math.ceil(persister_cores / node_cores)), int(f("stream_partitions")))
    pg_busy = rows_per_sec * f("postgres_cpu_per_row_us") / 1e6
    pg_cores = provision(pg_busy, u)

    # How far the load (same shape) can grow before each part of this deployment runs out.
    grow = {
        "gateway open files": processes_for_files_capacity(gw_processes, per_process, users),
        "gateway CPU": ratio(gw_cores, gw_busy),
        "gateway memory": ratio(gw_memory_gib, gw_memory_need_gib),
        "NATS CPU": ratio(nats_cores, nats_busy),
        "persister CPU": ratio(persister_cores, persister_busy),
        "PostgreSQL CPU": ratio(pg_cores, pg_busy),
    }
    # What adding machines does not lift: one stream's leader writes every message; one primary every row.
    ceilings = {
        f"the chat stream (one stream, its leader takes every message; "
        f"{f('nats_stream_messages_per_second'):,.0f} messages/s measured on 2 shared cores, a floor)": ratio(
            f("nats_stream_messages_per_second"), messages_per_sec
        ),
        f"the PostgreSQL primary (one machine of {node_cores} cores writes every row, CPU only)": ratio(
            node_cores, pg_busy
        ),
    }
    first = min(grow, key=grow.get)
    first_ceiling = min(ceilings, key=ceilings.get)

    return {
        "load": {
            "users": users,
            "rooms": rooms,
            "room_size": room_size,
            "msgs_per_user_per_min": msgs_per_user_per_min,
            "connects_per_sec": connects_per_sec,
            "replicas": replicas,
            "utilisation_percent": utilisation,
            "node_cores": node_cores,
        },
        "rates": {
            "messages_per_sec": messages_per_sec,
            "messages_per_room_per_sec": messages_per_sec / rooms,
            "deliveries_per_sec": deliveries_per_sec,
            "rows_per_sec": rows_per_sec,
        },
        "gateways": {
            "busy_cores": gw_busy,
            "busy_cores_deliveries": gw_deliveries,
            "busy_cores_keepalive": gw_keepalive,
            "busy_cores_connects": gw_connects,
            "cores": gw_cores,
            "processes": gw_processes,
            "processes_for_open_files": processes_for_files,
            "processes_for_cores": processes_for_cores,
            "connections_per_process": users / gw_processes,
            "memory_needed_gib": gw_memory_need_gib,
            "memory_gib": gw_memory_gib,
            "reconnect_all_core_seconds": users * f("gateway_cpu_per_connect_us") / 1e6,
            "reconnect_all_secs": users * f("gateway_cpu_per_connect_us") / 1e6 / gw_cores,
        },
        "nats": {
            "busy_cores": nats_busy,
            "busy_cores_deliveries": nats_deliveries,
            "busy_cores_replication": nats_replication,
            "cores": nats_cores,
            "nodes": nats_nodes,
        },
        "persisters": {"busy_cores": persister_busy, "cores": persister_cores, "processes": persisters},
        "postgres": {"write_rows_per_sec": rows_per_sec, "busy_cores": pg_busy, "cores": pg_cores},
        "total_cores": gw_cores + nats_cores + persister_cores + pg_cores,
        "growth": grow,
        "first_bottleneck": {"resource": first, "at_load_times": grow[first]},
        "ceilings": ceilings,
        "first_ceiling": {"resource": first_ceiling, "at_load_times": ceilings[first_ceiling]},
        "assumptions": assumptions(costs, utilisation, node_cores, replicas),
    }


def provision(busy: float, u: float) -> int:
    """Whole cores that keep `busy` cores of work at or under the target utilisation; at least one."""
    return max(1, math.ceil(busy / u - 1e-9))


def ratio(capacity: float, need: float) -> float:
    return math.inf if need <= 0 else capacity / need


def processes_for_files_capacity(processes: int, per_process: int, users: int) -> float:
    return ratio(processes * per_process, users)


def validate_load(users, rooms, msgs, room_size, connects, replicas, utilisation, node_cores) -> None:
    def whole(name, value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{name} must be a whole number, not {value!r}")

    whole("--users", users)
    whole("--rooms", rooms)
    if users < 1:
        raise UsageError(f"--users must be at least 1, not {users}")
    if rooms < 1:
        raise UsageError(f"--rooms must be at least 1, not {rooms}")
    if rooms > users:
        raise UsageError(f"--rooms ({rooms}) cannot exceed --users ({users}): every room needs a member")
    if not (isinstance(msgs, (int, float)) and math.isfinite(msgs) and msgs >= 0):
        raise UsageError(f"--msgs-per-user-per-min must be a number of 0 or more, not {msgs!r}")
    if room_size is not None and not (math.isfinite(room_size) and 1 <= room_size <= users):
        raise UsageError(f"--room-size must be between 1 and --users ({users}), not {room_size!r}")
    if connects is not None and not (math.isfinite(connects) and connects >= 0):
        raise UsageError(f"--connects-per-sec must be 0 or more, not {connects!r}")
    if replicas not in (1, 3):
        raise UsageError(f"--replicas must be 1 or 3 (the stream's replicas), not {replicas!r}")
    if utilisation is not None and not (0 < utilisation <= 100):
        raise UsageError(f"--utilisation must be a percentage above 0 and at most 100, not {utilisation!r}")
    if node_cores is not None:
        whole("--node-cores", node_cores)
        if node_cores < 1:
            raise UsageError(f"--node-cores must be at least 1, not {node_cores}")


def assumptions(costs: dict, utilisation: float, node_cores: int, replicas: int) -> list[str]:
    f = lambda name: figure(costs, name)  # noqa: E731
    return [
        "Costs are CPU time per unit of work (user + system from /proc) measured on a 2-core VM shared by every "
        "process of the fleet and the load-test harness; per-unit time carries to bigger machines better than "
        "rates do, but those machines' cores may be faster or slower.",
        f"Every provisioned figure keeps the load at or under {utilisation:g} % of it (cores rounded up).",
        "Each user holds one connection and is a member of one room; every message reaches every member of its "
        "room, the sender included (deliveries = messages x room size); each message is one stored row.",
        f"Gateway CPU = deliveries x {f('gateway_cpu_per_delivery_us'):g} µs + connections x "
        f"{f('gateway_cpu_per_connection_second_us'):g} µs/s (keepalive) + connects x "
        f"{f('gateway_cpu_per_connect_us'):g} µs. The delivery figure was measured in rooms of 100 at 6 messages/s "
        "per room and includes the sender's side of each message: much smaller rooms cost more per delivery, busier "
        "rooms less (their writes batch).",
        f"A gateway process holds at most {f('gateway_connections_per_process'):,.0f} connections (20,000 open "
        f"files per process), and no more cores than one machine of {node_cores} cores.",
        f"NATS CPU = deliveries x {f('nats_cpu_per_delivery_us'):g} µs + messages x (replicas - 1) x "
        f"{f('nats_cpu_per_message_per_extra_replica_us'):g} µs (here {replicas} replica(s)); both figures were "
        "measured over runs that include the connect storm, so they are upper figures, with 3 gateway processes: "
        "nats-server's fan-out to many more gateways per room was not measured.",
        f"Persister CPU = rows x {f('persister_cpu_per_row_us'):g} µs, PostgreSQL CPU = rows x "
        f"{f('postgres_cpu_per_row_us'):g} µs (binary COPY, fsync on); disk and WAL throughput are not modelled.",
        "Not counted: the auth API (sign-ins, history and search reads), the harness's own cost, Prometheus scrapes, "
        "changes to messages, history readers.",
    ]


# ---------------------------------------------------------------------------------------------------------------
# Text output


def fmt_n(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def cores(n: int) -> str:
    return f"{n} core" if n == 1 else f"{n} cores"


def fmt_times(x: float) -> str:
    return "never" if math.isinf(x) else f"{x:,.2f}x"


def text(result: dict, costs_path: Path) -> str:
    load, rates, gw, nats = result["load"], result["rates"], result["gateways"], result["nats"]
    pers, pg = result["persisters"], result["postgres"]
    u = load["utilisation_percent"]
    out = []
    add = out.append
    add(
        f"Load: {fmt_n(load['users'])} users in {fmt_n(load['rooms'])} rooms of {fmt_n(load['room_size'], 1)}, "
        f"{load['msgs_per_user_per_min']:g} message(s) per user per minute, {fmt_n(load['connects_per_sec'], 1)} "
        f"connects/s, the chat stream in {load['replicas']} replica(s)"
    )
    add(
        f"  {fmt_n(rates['messages_per_sec'])} messages/s ({rates['messages_per_room_per_sec']:.2f} per room), "
        f"{fmt_n(rates['deliveries_per_sec'])} deliveries/s, {fmt_n(rates['rows_per_sec'])} rows/s"
    )
    add("")
    add(f"Sizing (busy: CPU at 100 %; provision: at {u:g} % target utilisation, cores rounded up)")
    rows = [
        (
            "gateways",
            f"{gw['busy_cores']:.2f} busy cores (deliveries {gw['busy_cores_deliveries']:.2f}, keepalive "
            f"{gw['busy_cores_keepalive']:.2f}, connects {gw['busy_cores_connects']:.2f}): provision {cores(gw['cores'])}",
        ),
        (
            "gateway processes",
            f"{gw['processes']} ({fmt_n(gw['connections_per_process'])} connections and "
            f"{gw['cores'] / gw['processes']:.2f} cores each; the open-file limit needs "
            f"{gw['processes_for_open_files']}, the cores {gw['processes_for_cores']} on {load['node_cores']}-core machines)",
        ),
        (
            "gateway memory",
            f"{gw['memory_needed_gib']:.1f} GiB resident: provision {gw['memory_gib']:.1f} GiB over all processes",
        ),
        (
            "NATS",
            f"{nats['busy_cores']:.2f} busy cores (deliveries {nats['busy_cores_deliveries']:.2f}, replication "
            f"{nats['busy_cores_replication']:.2f}): provision {cores(nats['cores'])} on {nats['nodes']} node(s)",
        ),
        (
            "persisters",
            f"{pers['busy_cores']:.2f} busy cores: provision {cores(pers['cores'])}, {pers['processes']} processes "
            "(two at least, so one can fail)",
        ),
        (
            "PostgreSQL",
            f"{fmt_n(pg['write_rows_per_sec'])} rows/s written, {pg['busy_cores']:.2f} busy cores: provision "
            f"{cores(pg['cores'])} (one primary)",
        ),
        ("total", f"{cores(result['total_cores'])} (not counting the auth API)"),
    ]
    for name, value in rows:
        add(f"  {name:<19} {value}")
    add("")
    add("How far this load can grow, same shape, before each part of this deployment runs out:")
    for name, times in sorted(result["growth"].items(), key=lambda kv: kv[1]):
        add(f"  {name:<19} {fmt_times(times)}")
    fb = result["first_bottleneck"]
    add(f"First bottleneck: {fb['resource']}, at {fmt_times(fb['at_load_times'])} this load.")
    if fb["resource"] == "gateway open files":
        add("  (The open-file limit sets the number of gateway processes: as users grow, add processes before cores.)")
    add("Limits that more machines do not lift:")
    for name, times in sorted(result["ceilings"].items(), key=lambda kv: kv[1]):
        add(f"  {fmt_times(times):>10}  {name}")
    fc = result["first_ceiling"]
    add(f"The first of them: {fc['resource'].split(' (')[0]}, at {fmt_times(fc['at_load_times'])} this load.")
    add(
        f"Every user reconnecting at once (a restart of every gateway) costs {fmt_n(gw['reconnect_all_core_seconds'])} "
        f"gateway core-seconds: about {fmt_n(gw['reconnect_all_secs'])} s on {cores(gw['cores'])} if nothing else ran."
    )
    add("")
    add(f"Assumptions (costs from {display_path(costs_path)}; docs/capacity.md has the model and the sources):")
    for line in result["assumptions"]:
        add(f"  - {line}")
    return "\n".join(out) + "\n"


def finite(value):
    """The value with infinities (a limit never reached) as null, so the JSON is standard."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def display_path(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------------------------------
# Check mode: the model's prediction of a load-test run's gateway CPU against what the run measured


def measured_gateway_cpu(report: dict) -> tuple[float, float, float, str] | None:
    """(connect-phase CPU s, send-phase CPU s, where from) summed over the gateways, or None.

    From gateway_metrics.samples: one scrape of every page before connecting, one of each once connected, maybe some
    during the run, one of each at the end; else from the report's `cpu.gateways` map."""
    groups = sample_groups(report)
    if groups:
        cpu = [[s.get("values", {}).get("process_cpu_seconds_total") for s in g] for g in groups]
        if all(v is not None for g in cpu for v in g):
            before, ready, end = (sum(g) for g in cpu)
            return ready - before, end - ready, "gateway_metrics.samples"
    role = report.get("cpu", {}).get("gateways")
    if role and "connect_secs" in role and "send_secs" in role:
        return float(role["connect_secs"]), float(role["send_secs"]), "cpu.gateways"
    return None


def sample_groups(report: dict) -> list[list[dict]] | None:
    """The scrapes before connecting, once connected and at the end, one of each gateway page in each."""
    samples = report.get("gateway_metrics", {}).get("samples") or []
    pages = len(report.get("settings", {}).get("metrics") or []) or len({s.get("url") for s in samples})
    if not pages or len(samples) < 3 * pages:
        return None
    return [samples[:pages], samples[pages : 2 * pages], samples[-pages:]]


def send_phase_secs(report: dict) -> float:
    """Seconds from every client connected to the end of the run: between the scrapes, else the run's duration."""
    groups = sample_groups(report)
    if groups:
        return max(s["at_secs"] for s in groups[2]) - max(s["at_secs"] for s in groups[1])
    return float(report.get("settings", {}).get("duration") or 0)


def check_report(costs: dict, path: Path) -> dict:
    report = read_json(path, ReportError, str(path))
    if not isinstance(report, dict) or not all(k in report for k in ("settings", "connect", "messages")):
        raise ReportError(f"{path}: not a natter-loadtest report (no settings, connect and messages)")
    f = lambda name: figure(costs, name)  # noqa: E731
    settings = report["settings"]
    connections = int(report["connect"].get("connected") or 0)
    deliveries = int(report["messages"].get("delivered") or 0)
    reconnects = int(report.get("reconnects") or 0)
    measured = measured_gateway_cpu(report)
    held = send_phase_secs(report)
    predicted_connect = connections * f("gateway_cpu_per_connect_us") / 1e6
    predicted_send = (
        deliveries * f("gateway_cpu_per_delivery_us") + connections * held * f("gateway_cpu_per_connection_second_us")
        + reconnects * f("gateway_cpu_per_connect_us")
    ) / 1e6
    result = {
        "report": display_path(path),
        "shape": {
            "scenario": settings.get("scenario"),
            "users": settings.get("users"),
            "rooms": settings.get("rooms"),
            "rate_per_room": settings.get("rate"),
            "duration_secs": settings.get("duration"),
            "gateways": len(report.get("gateways") or settings.get("gateways") or []),
            "machine_cores": report.get("machine", {}).get("cores"),
            "connections": connections,
            "deliveries": deliveries,
            "reconnects": reconnects,
            "send_phase_secs": held,
        },
        "phases": [],
    }
    # A fleet that shed a large share of its sends ran past what it can carry: its send phase is not a sizing (its
    # writes batched as its queues grew, and the refusals and resends cost what the model does not count).
    sent = int(report["messages"].get("sent") or 0)
    unacked = int(report["messages"].get("unacked") or 0)
    overloaded = sent > 0 and unacked / sent > OVERLOADED_SHARE
    for phase, predicted, index in (("connect", predicted_connect, 0), ("send", predicted_send, 1)):
        entry = {"phase": phase, "predicted_cpu_secs": predicted, "measured_cpu_secs": None, "error": None}
        if measured:
            m = measured[index]
            entry["measured_cpu_secs"] = m
            entry["measured_from"] = measured[2]
            entry["error"] = (predicted - m) / m if m > 0 else math.inf
            if phase == "send" and overloaded:
                entry["not_a_sizing"] = (
                    f"the fleet left {unacked:,} of {sent:,} sends unacknowledged ({unacked / sent:.0%}): overloaded"
                )
            else:
                entry["within_bound"] = abs(entry["error"]) <= CHECK_BOUND
        result["phases"].append(entry)
    if not measured:
        samples = report.get("gateway_metrics", {}).get("samples") or []
        if any("process_cpu_seconds_total" in s.get("values", {}) for s in samples):
            result["not_measured"] = (
                "a gateway's scrape before, once connected or at the end has no process_cpu_seconds_total (a "
                "gateway gone by the end, such as one drained during the run), so the phases' sums are incomplete"
            )
        else:
            result["not_measured"] = (
                "the report holds no gateway CPU: its gateway samples have no process_cpu_seconds_total and it has "
                "no cpu.gateways (a report written before the harness read the gateways' CPU)"
            )
    return result


def check(costs: dict, paths: list[Path], as_json: bool) -> int:
    results, problems = [], []
    for path in paths:
        try:
            results.append(check_report(costs, path))
        except ReportError as err:
            problems.append(str(err))
    compared = [p for r in results for p in r["phases"] if "within_bound" in p]
    off = [p for p in compared if not p["within_bound"]]
    unmeasured = [r["report"] for r in results if "not_measured" in r]
    status = 1 if off else 2 if problems or not compared else 0
    if as_json:
        print(json.dumps(finite({"bound": CHECK_BOUND, "reports": results, "problems": problems, "status": status}), indent=2))
        return status
    print(
        f"Gateway CPU predicted from the cost file against what each report measured (bound ±{CHECK_BOUND:.0%}):"
    )
    for r in results:
        s = r["shape"]
        print(
            f"{r['report']}: {s['scenario']}, {fmt_n(s['users'] or 0)} users in {fmt_n(s['rooms'] or 0)} rooms at "
            f"{s['rate_per_room']} msg/s per room, {s['gateways']} gateways on {s['machine_cores']} cores; "
            f"{fmt_n(s['connections'])} connected, {fmt_n(s['deliveries'])} deliveries, {fmt_n(s['reconnects'])} "
            f"reconnects, connections held {s['send_phase_secs']:.1f} s after all connected"
        )
        for p in r["phases"]:
            if p["error"] is None:
                print(f"  {p['phase']:<8} predicted {p['predicted_cpu_secs']:7.2f} s   measured      n/a")
            elif "not_a_sizing" in p:
                print(
                    f"  {p['phase']:<8} predicted {p['predicted_cpu_secs']:7.2f} s   measured {p['measured_cpu_secs']:7.2f} s"
                    f"   error {p['error']:+7.1%}   not checked: {p['not_a_sizing']}"
                )
            else:
                verdict = "ok" if p["within_bound"] else "OFF"
                print(
                    f"  {p['phase']:<8} predicted {p['predicted_cpu_secs']:7.2f} s   measured {p['measured_cpu_secs']:7.2f} s"
                    f"   error {p['error']:+7.1%}   {verdict}"
                )
        if "not_measured" in r:
            print(f"  not checked: {r['not_measured']}")
    for problem in problems:
        print(f"cannot check {problem}")
    print(
        f"{len(compared) - len(off)} of {len(compared)} predictions within {CHECK_BOUND:.0%}"
        + (f"; not checked (no CPU measured): {', '.join(unmeasured)}" if unmeasured else "")
    )
    return status


# ---------------------------------------------------------------------------------------------------------------
# Command line


class Parser(argparse.ArgumentParser):
    def error(self, message):  # noqa: D401 - argparse's hook
        raise UsageError(message)


def parse(argv: list[str]) -> argparse.Namespace:
    p = Parser(
        prog="./natter capacity",
        description="Size a Natter deployment for a load from per-unit costs (docs/capacity.md), or with --check "
        "compare the model's gateway CPU with what load-test reports measured.",
    )
    p.add_argument("--users", type=int, help="concurrent users, each holding one connection")
    p.add_argument("--rooms", type=int, help="rooms the users are in")
    p.add_argument("--msgs-per-user-per-min", type=float, help="messages each user sends per minute")
    p.add_argument("--room-size", type=float, help="members per room (default users / rooms)")
    p.add_argument("--connects-per-sec", type=float, help="connects and joins per second (default: every user once an hour)")
    p.add_argument("--replicas", type=int, default=3, help="the chat stream's replicas, 1 or 3 (default 3)")
    p.add_argument("--utilisation", type=float, help="target utilisation in %% (default from the cost file, 60)")
    p.add_argument("--node-cores", type=int, help="cores per machine (default from the cost file, 16)")
    p.add_argument("--costs", type=Path, default=DEFAULT_COSTS, help="the cost file (default scripts/capacity-costs.json)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--check", nargs="+", type=Path, metavar="REPORT", help="natter-loadtest JSON reports to predict")
    args = p.parse_args(argv)
    if args.check:
        given = [flag for flag, value in (("--users", args.users), ("--rooms", args.rooms),
                                          ("--msgs-per-user-per-min", args.msgs_per_user_per_min),
                                          ("--room-size", args.room_size), ("--connects-per-sec", args.connects_per_sec))
                 if value is not None]
        if given:
            raise UsageError(f"--check takes its load from the reports; drop {', '.join(given)}")
    else:
        missing = [flag for flag, value in (("--users", args.users), ("--rooms", args.rooms),
                                            ("--msgs-per-user-per-min", args.msgs_per_user_per_min)) if value is None]
        if missing:
            raise UsageError(f"missing {', '.join(missing)} (or --check REPORT...)")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
        costs = load_costs(args.costs)
        if args.check:
            return check(costs, args.check, args.json)
        result = size(
            costs,
            users=args.users,
            rooms=args.rooms,
            msgs_per_user_per_min=args.msgs_per_user_per_min,
            room_size=args.room_size,
            connects_per_sec=args.connects_per_sec,
            replicas=args.replicas,
            utilisation=args.utilisation,
            node_cores=args.node_cores,
        )
    except UsageError as err:
        print(f"capacity: {err}", file=sys.stderr)
        print("usage: ./natter capacity --users N --rooms R --msgs-per-user-per-min M [--room-size S] "
              "[--connects-per-sec C] [--replicas 1|3] [--utilisation PCT] [--node-cores N] [--costs FILE] [--json]\n"
              "       ./natter capacity --check REPORT.json... [--costs FILE] [--json]", file=sys.stderr)
        return 64
    if args.json:
        print(json.dumps(finite(result), indent=2))
    else:
        print(text(result, args.costs), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
