#!/usr/bin/env python3
"""scripts/capacity.py: the sizing model's arithmetic on a load computed by hand, its errors on bad input, the
open-file limit, and --check against the fleet runs' reports in benchmarks/.

Run: python3 tests/capacity.py (stdlib unittest; exits non-zero on a failure). `./natter test` runs it.
"""

import copy
import importlib.util
import json
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "capacity.py"
COSTS = ROOT / "scripts" / "capacity-costs.json"
FLEET_REPORTS = [ROOT / "benchmarks" / "fanout-20000.json", ROOT / "benchmarks" / "fanout-100000.json"]

spec = importlib.util.spec_from_file_location("capacity", SCRIPT)
capacity = importlib.util.module_from_spec(spec)
spec.loader.exec_module(capacity)


def entry(value):
    return {"value": value, "unit": "test unit", "source": "round figures for a hand computation"}


# Round figures, so the expected sizing below can be worked out by hand.
HAND_COSTS = {
    "costs": {
        "gateway_cpu_per_connect_us": entry(500),
        "gateway_cpu_per_delivery_us": entry(10),
        "gateway_cpu_per_connection_second_us": entry(2),
        "gateway_memory_per_connection_kib": entry(8),
        "gateway_memory_per_process_mib": entry(10),
        "nats_cpu_per_delivery_us": entry(5),
        "nats_cpu_per_message_per_extra_replica_us": entry(100),
        "nats_stream_messages_per_second": entry(50000),
        "persister_cpu_per_row_us": entry(4),
        "postgres_cpu_per_row_us": entry(6),
        "persister_rows_per_second": entry(1000),
    },
    "limits": {"gateway_connections_per_process": entry(1000), "stream_partitions": entry(16)},
    "defaults": {
        "target_utilisation_percent": entry(50),
        "node_cores": entry(8),
        "reconnects_per_user_per_hour": entry(36),
    },
}


def run(*args):
    """The script as a command: (exit status, stdout, stderr)."""
    p = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def gateway_cpu_by_page(report):
    """Connect- and send-phase gateway CPU, summed over pages, worked out per page: each page's first, second and
    last scrape (an independent reading of the report's sample order)."""
    by_page = {}
    for s in report["gateway_metrics"]["samples"]:
        by_page.setdefault(s["url"], []).append(s["values"].get("process_cpu_seconds_total"))
    if any(v[0] is None or v[1] is None or v[-1] is None for v in by_page.values()):
        return None
    return sum(v[1] - v[0] for v in by_page.values()), sum(v[-1] - v[1] for v in by_page.values())


class Arithmetic(unittest.TestCase):
    def test_a_small_load_sized_by_hand(self):
        # 3,000 users in 30 rooms of 100, 2 messages per user per minute, the stream in 3 replicas.
        r = capacity.size(HAND_COSTS, users=3000, rooms=30, msgs_per_user_per_min=2, replicas=3)
        close = lambda a, b: self.assertAlmostEqual(a, b, places=9)  # noqa: E731
        self.assertEqual(r["load"]["room_size"], 100)
        close(r["load"]["connects_per_sec"], 30)  # 3,000 users x 36 an hour / 3,600 s
        close(r["rates"]["messages_per_sec"], 100)  # 3,000 x 2 / 60
        close(r["rates"]["messages_per_room_per_sec"], 100 / 30)
        close(r["rates"]["deliveries_per_sec"], 10_000)  # 100 x 100 members
        close(r["rates"]["rows_per_sec"], 100)
        gw = r["gateways"]
        close(gw["busy_cores_deliveries"], 0.1)  # 10,000 x 10 µs
        close(gw["busy_cores_keepalive"], 0.006)  # 3,000 x 2 µs
        close(gw["busy_cores_connects"], 0.015)  # 30 x 500 µs
        close(gw["busy_cores"], 0.121)
        self.assertEqual(gw["cores"], 1)  # ceil(0.121 / 0.5)
        self.assertEqual(gw["processes_for_open_files"], 3)  # ceil(3,000 / 1,000)
        self.assertEqual(gw["processes_for_cores"], 1)
        self.assertEqual(gw["processes"], 3)
        close(gw["memory_needed_gib"], (3000 * 8 / 1024 + 3 * 10) / 1024)
        close(gw["memory_gib"], (3000 * 8 / 1024 + 3 * 10) / 1024 / 0.5)
        close(gw["reconnect_all_core_seconds"], 1.5)  # 3,000 x 500 µs
        nats = r["nats"]
        close(nats["busy_cores_deliveries"], 0.05)  # 10,000 x 5 µs
        close(nats["busy_cores_replication"], 0.02)  # 100 x 2 extra replicas x 100 µs
        self.assertEqual((nats["cores"], nats["nodes"]), (1, 3))
        close(r["persisters"]["busy_cores"], 0.0004)
        self.assertEqual((r["persisters"]["cores"], r["persisters"]["processes"]), (1, 2))
        close(r["postgres"]["busy_cores"], 0.0006)
        self.assertEqual(r["postgres"]["write_rows_per_sec"], 100)
        self.assertEqual(r["total_cores"], 4)
        close(r["growth"]["gateway open files"], 1.0)  # 3 x 1,000 slots for 3,000 users
        close(r["growth"]["gateway CPU"], 1 / 0.121)
        self.assertEqual(r["first_bottleneck"]["resource"], "gateway open files")
        ceilings = {name.split(" (")[0]: times for name, times in r["ceilings"].items()}
        close(ceilings["the chat stream"], 500)  # 50,000 / 100 messages/s
        close(ceilings["the PostgreSQL primary"], 8 / 0.0006)
        self.assertTrue(r["first_ceiling"]["resource"].startswith("the chat stream"))

    def test_one_replica_has_no_replication_cost_and_flags_override_the_defaults(self):
        r = capacity.size(
            HAND_COSTS, users=3000, rooms=30, msgs_per_user_per_min=2, replicas=1, connects_per_sec=0,
            utilisation=100, node_cores=4, room_size=10,
        )
        self.assertEqual(r["nats"]["busy_cores_replication"], 0)
        self.assertEqual(r["nats"]["nodes"], 1)
        self.assertAlmostEqual(r["rates"]["deliveries_per_sec"], 1000)  # 100 messages x 10 members
        self.assertAlmostEqual(r["gateways"]["busy_cores_connects"], 0)
        self.assertAlmostEqual(r["gateways"]["memory_gib"], r["gateways"]["memory_needed_gib"])

    def test_the_cost_file_is_data_with_a_unit_and_a_source_for_every_figure(self):
        data = capacity.load_costs(COSTS)
        for section in ("costs", "limits", "defaults"):
            for name, e in data[section].items():
                self.assertIn("value", e, name)
                self.assertTrue(e["unit"].strip() and e["source"].strip(), name)


class OpenFiles(unittest.TestCase):
    def test_the_open_file_limit_forces_more_gateway_processes(self):
        costs = capacity.load_costs(COSTS)
        # Nearly idle users: CPU alone would need one process; 18,000 connections each need six.
        r = capacity.size(costs, users=100_000, rooms=1_000, msgs_per_user_per_min=0.001, connects_per_sec=0)
        self.assertEqual(r["gateways"]["processes_for_cores"], 1)
        self.assertEqual(r["gateways"]["processes_for_open_files"], 6)
        self.assertEqual(r["gateways"]["processes"], 6)
        self.assertEqual(r["first_bottleneck"]["resource"], "gateway open files")
        edge = lambda users: capacity.size(costs, users=users, rooms=1, msgs_per_user_per_min=0)  # noqa: E731
        self.assertEqual(edge(18_000)["gateways"]["processes"], 1)
        self.assertEqual(edge(18_001)["gateways"]["processes"], 2)

    def test_the_million_user_sizing_prints_its_assumptions(self):
        status, out, err = run("--users", 1_000_000, "--rooms", 10_000, "--msgs-per-user-per-min", 1)
        self.assertEqual(status, 0, err)
        self.assertIn("gateway processes   56 ", out)
        self.assertIn("First bottleneck:", out)
        self.assertIn("Assumptions", out)
        self.assertIn("2-core VM", out)
        status, out, _ = run("--users", 1_000_000, "--rooms", 10_000, "--msgs-per-user-per-min", 1, "--json")
        result = json.loads(out)
        self.assertEqual(result["gateways"]["processes"], 56)
        self.assertTrue(result["assumptions"])


class BadInput(unittest.TestCase):
    def assert_refused(self, args, says):
        status, out, err = run(*args)
        self.assertEqual(status, 64, (out, err))
        self.assertIn(says, err)
        self.assertEqual(out, "")

    def test_negative_users(self):
        self.assert_refused(["--users", -5, "--rooms", 1, "--msgs-per-user-per-min", 1], "--users must be at least 1")

    def test_zero_rooms(self):
        self.assert_refused(["--users", 10, "--rooms", 0, "--msgs-per-user-per-min", 1], "--rooms must be at least 1")

    def test_more_rooms_than_users(self):
        self.assert_refused(["--users", 10, "--rooms", 11, "--msgs-per-user-per-min", 1], "cannot exceed --users")

    def test_unknown_flag(self):
        self.assert_refused(
            ["--users", 10, "--rooms", 1, "--msgs-per-user-per-min", 1, "--frobnicate"],
            "unrecognized arguments: --frobnicate",
        )

    def test_missing_rate_replicas_and_a_load_given_to_check(self):
        self.assert_refused(["--users", 10, "--rooms", 1], "missing --msgs-per-user-per-min")
        self.assert_refused(["--users", 10, "--rooms", 1, "--msgs-per-user-per-min", 1, "--replicas", 2], "1 or 3")
        self.assert_refused(["--users", 10, "--rooms", 1, "--msgs-per-user-per-min", -1], "0 or more")
        self.assert_refused(["--check", FLEET_REPORTS[1], "--users", 3], "drop --users")

    def test_a_cost_file_without_a_figure(self):
        broken = copy.deepcopy(HAND_COSTS)
        del broken["costs"]["gateway_cpu_per_delivery_us"]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "costs.json"
            path.write_text(json.dumps(broken))
            self.assert_refused(
                ["--users", 10, "--rooms", 1, "--msgs-per-user-per-min", 1, "--costs", path],
                "no costs.gateway_cpu_per_delivery_us.value",
            )


class Check(unittest.TestCase):
    def test_the_fleet_runs_are_predicted_from_the_cost_file(self):
        status, out, err = run("--check", *FLEET_REPORTS, "--json")
        self.assertIn(status, (0, 1), err)
        result = json.loads(out)
        costs = capacity.load_costs(COSTS)
        f = lambda name: capacity.figure(costs, name)  # noqa: E731
        compared = 0
        for path, checked in zip(FLEET_REPORTS, result["reports"]):
            report = json.loads(path.read_text())
            connected = report["connect"]["connected"]
            phases = {p["phase"]: p for p in checked["phases"]}
            held = checked["shape"]["send_phase_secs"]
            self.assertGreater(held, report["settings"]["duration"] - 1)
            # The prediction is the cost file's figures times the report's load, nothing taken from its CPU.
            self.assertAlmostEqual(phases["connect"]["predicted_cpu_secs"], connected * f("gateway_cpu_per_connect_us") / 1e6)
            self.assertAlmostEqual(
                phases["send"]["predicted_cpu_secs"],
                (report["messages"]["delivered"] * f("gateway_cpu_per_delivery_us")
                 + connected * held * f("gateway_cpu_per_connection_second_us")
                 + report.get("reconnects", 0) * f("gateway_cpu_per_connect_us")) / 1e6,
            )
            measured = gateway_cpu_by_page(report)
            if measured is None:
                self.assertIn("not_measured", checked, path)
                self.assertIsNone(phases["send"]["measured_cpu_secs"])
                continue
            for phase, value in zip(("connect", "send"), measured):
                if "not_a_sizing" in phases[phase]:
                    # An overloaded run's send phase is shown, not checked (more than a tenth of its sends unacked).
                    self.assertEqual(phase, "send")
                    self.assertGreater(report["messages"]["unacked"], report["messages"]["sent"] * capacity.OVERLOADED_SHARE)
                    continue
                compared += 1
                self.assertAlmostEqual(phases[phase]["measured_cpu_secs"], value, places=6)
                error = (phases[phase]["predicted_cpu_secs"] - value) / value
                self.assertAlmostEqual(phases[phase]["error"], error)
                # What docs/capacity.md claims: composing the measured costs predicts the fleet run within 25 %.
                self.assertLessEqual(abs(error), capacity.CHECK_BOUND, f"{path.name} {phase}: {error:+.1%}")
        self.assertGreater(compared, 0, "no fleet report holds gateway CPU")
        self.assertEqual(status, 0)
        status, out, _ = run("--check", *FLEET_REPORTS)
        self.assertEqual(status, 0)
        self.assertIn("predicted", out)
        self.assertIn("measured", out)
        self.assertIn("error", out)

    def test_a_prediction_off_by_more_than_a_quarter_fails(self):
        report = json.loads(FLEET_REPORTS[0].read_text())
        pages = len(report["settings"]["metrics"])
        for s in report["gateway_metrics"]["samples"][-pages:]:  # double the send phase's CPU at the end
            v = s["values"]
            ready = next(x for x in report["gateway_metrics"]["samples"][pages : 2 * pages] if x["url"] == s["url"])
            v["process_cpu_seconds_total"] += v["process_cpu_seconds_total"] - ready["values"]["process_cpu_seconds_total"]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "doubled.json"
            path.write_text(json.dumps(report))
            status, out, _ = run("--check", path)
            self.assertEqual(status, 1, out)
            self.assertIn("OFF", out)

    def test_a_newer_report_is_read_from_its_cpu_map(self):
        report = json.loads(FLEET_REPORTS[0].read_text())
        for s in report["gateway_metrics"]["samples"]:
            s["values"].pop("process_cpu_seconds_total", None)
        report["cpu"] = {"gateways": {"connect_secs": 40.0, "send_secs": 70.0}}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "cpu-map.json"
            path.write_text(json.dumps(report))
            status, out, _ = run("--check", path, "--json")
            phases = json.loads(out)["reports"][0]["phases"]
            self.assertEqual([p["measured_cpu_secs"] for p in phases], [40.0, 70.0])
            self.assertEqual([p["measured_from"] for p in phases], ["cpu.gateways"] * 2)
            self.assertEqual(status, 0 if all(p["within_bound"] for p in phases) else 1)

    def test_nothing_to_compare_is_not_a_pass(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "not-a-report.json"
            path.write_text('{"steps": []}')
            status, out, _ = run("--check", path)
            self.assertEqual(status, 2)
            self.assertIn("not a natter-loadtest report", out)
            report = json.loads(FLEET_REPORTS[0].read_text())
            for s in report["gateway_metrics"]["samples"]:
                s["values"].pop("process_cpu_seconds_total", None)
            report.pop("cpu", None)
            path.write_text(json.dumps(report))
            status, out, _ = run("--check", path)
            self.assertEqual(status, 2)
            self.assertIn("not checked", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
