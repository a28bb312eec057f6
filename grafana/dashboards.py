#!/usr/bin/env python3
"""The Grafana dashboards, as code: `python3 grafana/dashboards.py` writes grafana/dashboards/*.json.

Each dashboard is a list of panels, each panel a title, a description, a unit and its PromQL queries. The JSON
is what Grafana's file provider loads (grafana/provisioning/dashboards/natter.yml); tests/dashboards.py checks
that the JSON files are what this script writes, and runs every query against a real Prometheus.
"""

import json
import pathlib

DATASOURCE = {"type": "prometheus", "uid": "natter-prometheus"}
RATE = "$__rate_interval"
OUT = pathlib.Path(__file__).resolve().parent / "dashboards"


def p99(metric, by="", q="0.99", where=""):
    """The q-quantile of a `_seconds` histogram over the rate interval, summed by `by` and `le`, of the series
    matching `where` (label matchers)."""
    labels = f"{by}, le" if by else "le"
    matchers = f"{{{where}}}" if where else ""
    return f"histogram_quantile({q}, sum by ({labels}) (rate({metric}_bucket{matchers}[{RATE}])))"


def panel(title, description, unit, *queries, kind="timeseries", width=12):
    """A panel; each query is (expr, legend)."""
    return {
        "title": title,
        "description": description,
        "unit": unit,
        "queries": list(queries),
        "kind": kind,
        "width": width,
    }


def stat(title, description, unit, expr, legend=""):
    return panel(title, description, unit, (expr, legend), kind="stat", width=6)


INSTANCE = {
    "name": "instance",
    "label": "Gateway",
    "query": 'label_values(up{job="natter-gateway"}, instance)',
}
GW = 'instance=~"$instance"'

DASHBOARDS = {
    "overview": {
        "title": "Natter / Overview",
        "description": "The service level objectives: users online, deliveries, delivery and ack p99, error budget, history lag.",
        "variables": [],
        "panels": [
            stat("Users online", "Open WebSocket connections over every gateway.", "short",
                 "sum(natter_gateway_connections)"),
            stat("Deliveries per second", "Chat messages handed to members' sockets, every gateway.", "ops",
                 f"sum(rate(natter_gateway_messages_out_total[{RATE}]))"),
            stat("Delivery p99", "A message's acceptance to its hand-off to members (SLO: 250 ms).", "s",
                 p99("natter_gateway_delivery_latency_seconds")),
            stat("Ack p99", "A send read to its ack queued (SLO: 500 ms).", "s",
                 p99("natter_gateway_ack_latency_seconds")),
            panel("Delivery and ack latency", "p50 and p99 of delivery (acceptance to hand-off) and of acks.", "s",
                  (p99("natter_gateway_delivery_latency_seconds"), "delivery p99"),
                  (p99("natter_gateway_delivery_latency_seconds", q="0.5"), "delivery p50"),
                  (p99("natter_gateway_ack_latency_seconds"), "ack p99"),
                  (p99("natter_gateway_ack_latency_seconds", q="0.5"), "ack p50")),
            panel("Delivery error budget burn",
                  "How fast the delivery SLO's budget burns (99 % of batches within 250 ms): 1 is on budget, "
                  "14 over an hour pages.", "short",
                  ("(1 - sum(rate(natter_gateway_delivery_latency_seconds_bucket{le=\"0.25\"}[1h])) / "
                   "sum(rate(natter_gateway_delivery_latency_seconds_count[1h]))) / 0.01", "1 h burn rate"),
                  ("(1 - sum(rate(natter_gateway_delivery_latency_seconds_bucket{le=\"0.25\"}[5m])) / "
                   "sum(rate(natter_gateway_delivery_latency_seconds_count[5m]))) / 0.01", "5 min burn rate")),
            panel("History lag", "Acceptance of the newest written message to its commit, worst persister.", "s",
                  ("max(natter_persister_lag_seconds)", "lag")),
            panel("Sends shed and slow consumers",
                  "Sends refused with overloaded, and clients closed with 4008 for not reading.", "ops",
                  (f"sum(rate(natter_gateway_sends_shed_total[{RATE}]))", "sends shed"),
                  (f"sum(rate(natter_gateway_slow_consumer_disconnects_total[{RATE}]))", "slow consumers closed")),
        ],
    },
    "gateways": {
        "title": "Natter / Gateways",
        "description": "Per gateway process: connections, joins, fan-out, shedding, close codes, replays, drain.",
        "variables": [INSTANCE],
        "panels": [
            panel("Connections", "Open connections per gateway.", "short",
                  (f"natter_gateway_connections{{{GW}}}", "{{instance}}")),
            panel("Connections opened and closed", "Accepted and closed connections per second.", "ops",
                  (f"sum by (instance) (rate(natter_gateway_connections_opened_total{{{GW}}}[{RATE}]))",
                   "{{instance}} opened"),
                  (f"sum by (instance) (rate(natter_gateway_connections_closed_total{{{GW}}}[{RATE}]))",
                   "{{instance}} closed")),
            panel("Closes by code", "Closed connections per second by close code (1012 drain, 4001 token expired, "
                  "4003 session revoked, 4008 slow consumer, 4009 idle).", "ops",
                  (f"sum by (code) (rate(natter_gateway_connections_closed_total{{{GW}}}[{RATE}]))", "{{code}}")),
            panel("Joins and rooms", "Room joins per second, and rooms with local members.", "short",
                  (f"sum by (instance) (rate(natter_gateway_joins_total{{{GW}}}[{RATE}]))", "{{instance}} joins/s"),
                  (f"natter_gateway_rooms_subscribed{{{GW}}}", "{{instance}} rooms")),
            panel("Fan-out", "Messages handed to members' sockets per second.", "ops",
                  (f"sum by (instance) (rate(natter_gateway_messages_out_total{{{GW}}}[{RATE}]))", "{{instance}}")),
            panel("Fan-out latency p99", "A message's arrival from NATS to its frame being written.", "s",
                  (p99("natter_gateway_fanout_latency_seconds", by="instance", where=GW), "{{instance}}")),
            panel("Delivery lag", "Smoothed acceptance-to-hand-off lag; a share of sends is refused over "
                  "--shed-lag.", "s",
                  (f"natter_gateway_delivery_lag_seconds{{{GW}}}", "{{instance}}")),
            panel("Shed share", "The share of new sends refused with overloaded.", "percentunit",
                  (f"natter_gateway_shed_share{{{GW}}}", "{{instance}}")),
            panel("Deepest outbound queue", "Frames waiting in the fullest client queue, each second; a queue "
                  "reaching --outbound-queue closes its client with 4008.", "short",
                  (f"natter_gateway_outbound_queue_max{{{GW}}}", "{{instance}}")),
            panel("Replays", "Messages replayed to rejoining clients, and rejoins answered recovered: false.", "ops",
                  (f"sum by (instance) (rate(natter_gateway_replayed_messages_total{{{GW}}}[{RATE}]))",
                   "{{instance}} replayed"),
                  (f"sum by (instance) (rate(natter_gateway_joins_unrecovered_total{{{GW}}}[{RATE}]))",
                   "{{instance}} unrecovered")),
            panel("Refused upgrades and rate limits", "Upgrades refused by reason, frames refused by a rate limit.",
                  "ops",
                  (f"sum by (reason) (rate(natter_gateway_auth_failures_total{{{GW}}}[{RATE}]))", "{{reason}}"),
                  (f"sum by (kind) (rate(natter_gateway_rate_limited_total{{{GW}}}[{RATE}]))", "rate limited {{kind}}")),
            panel("Draining", "1 while a gateway drains (from SIGTERM until it exits).", "short",
                  (f"natter_gateway_draining{{{GW}}}", "{{instance}}")),
            panel("Connections not yet upgraded", "Accepted sockets still in HTTP (capped by "
                  "--max-pending-connections and --max-pending-per-address), those refused with 503 "
                  "over an address's cap, and those shed to let newcomers into a full pool (an attack of "
                  "unfinished connections shows here).", "short",
                  (f"natter_gateway_pending_connections{{{GW}}}", "{{instance}} pending"),
                  (f"sum by (scope) (rate(natter_gateway_pending_refused_total{{{GW}}}[{RATE}]))",
                   "refused/s ({{scope}} cap)"),
                  (f"sum by (reason) (rate(natter_gateway_pending_shed_total{{{GW}}}[{RATE}]))",
                   "shed/s ({{reason}})")),
            panel("Per-user cap across the fleet", "Upgrades refused because the user's connections on other "
                  "gateways brought the fleet total to --max-connections-per-user; the connection-count messages "
                  "gateways exchange for it (updates every 100 ms, syncs when one starts); users with "
                  "connections elsewhere as each gateway knows them.", "short",
                  (f"sum(rate(natter_gateway_user_cap_fleet_refused_total{{{GW}}}[{RATE}]))", "refused/s"),
                  (f"sum by (kind) (rate(natter_gateway_user_counts_sent_total{{{GW}}}[{RATE}]))",
                   "sent/s ({{kind}})"),
                  (f"sum(rate(natter_gateway_user_counts_received_total{{{GW}}}[{RATE}]))", "received/s"),
                  (f"natter_gateway_remote_users{{{GW}}}", "{{instance}} remote users")),
            panel("Room evictions", "Connections taken out of a room by the gateway: room deleted, member left "
                  "or removed through the API, access revoked (found by the periodic re-check or the catch-up "
                  "after missed room events).", "ops",
                  (f"sum by (reason) (rate(natter_gateway_room_evictions_total{{{GW}}}[{RATE}]))", "{{reason}}")),
            panel("Room access questions", "Questions asked of the auth API about room access, by answer: for "
                  "joins and for the periodic re-checks of members already in a room; catch-ups (every room asked "
                  "again after NATS came back or dropped messages); JWKS refetches on unknown key ids.", "ops",
                  (f"sum by (answer) (rate(natter_gateway_access_questions_total{{{GW}}}[{RATE}]))",
                   "asked: {{answer}}"),
                  (f"sum by (answer) (rate(natter_gateway_access_rechecks_total{{{GW}}}[{RATE}]))",
                   "re-checks: {{answer}}"),
                  (f"sum by (cause) (rate(natter_gateway_access_catch_ups_total{{{GW}}}[{RATE}]))",
                   "catch-ups: {{cause}}"),
                  (f"sum by (outcome) (rate(natter_gateway_jwks_refetches_total{{{GW}}}[{RATE}]))",
                   "JWKS refetches: {{outcome}}")),
            panel("Bad frames", "Invalid frames counted against --max-bad-frames, by the error that answered "
                  "them (a join of a room that does not exist counts as one).", "ops",
                  (f"sum by (code) (rate(natter_gateway_bad_frames_total{{{GW}}}[{RATE}]))", "{{code}}")),
        ],
    },
    "persistence": {
        "title": "Natter / Persistence",
        "description": "The persisters: rows per second, batches, commit latency, backlog, dead letters, partitions.",
        "variables": [],
        "panels": [
            panel("Rows per second", "New rows written to PostgreSQL, every persister.", "ops",
                  (f"sum by (instance) (rate(natter_persister_rows_written_total[{RATE}]))", "{{instance}}")),
            panel("Batch size", "Messages per written batch (the persister's own quantiles).", "short",
                  ("max by (quantile) (natter_persister_batch_size)", "q{{quantile}}")),
            panel("Commit latency", "Writing and committing one batch, p50 and p99.", "s",
                  (p99("natter_persister_insert_latency_seconds"), "p99"),
                  (p99("natter_persister_insert_latency_seconds", q="0.5"), "p50")),
            panel("Backlog", "Messages not yet delivered to a persister, and delivered but not yet acked.", "short",
                  ("sum(natter_persister_consumer_pending)", "pending"),
                  ("sum(natter_persister_consumer_ack_pending)", "ack pending")),
            panel("History lag", "Acceptance of the newest written message to its commit.", "s",
                  ("natter_persister_lag_seconds", "{{instance}}")),
            panel("Dead letters, failures, redeliveries", "Per second: messages dead-lettered, failed batch "
                  "writes (each retried), redeliveries, duplicates skipped.", "ops",
                  (f"sum(rate(natter_persister_dead_lettered_total[{RATE}]))", "dead lettered"),
                  (f"sum(rate(natter_persister_write_failures_total[{RATE}]))", "write failures"),
                  (f"sum(rate(natter_persister_redeliveries_total[{RATE}]))", "redeliveries"),
                  (f"sum(rate(natter_persister_duplicates_skipped_total[{RATE}]))", "duplicates")),
            panel("Partitions owned", "Partitions of the chat stream whose leases each persister holds (16 in all "
                  "once settled; a standby holds none).", "short",
                  ("natter_persister_partitions_owned", "{{instance}}"),
                  ("sum(natter_persister_partitions_owned)", "all")),
            panel("Partition leases", "Per second: leases taken (vacant: its holder died; released: handed over), "
                  "handed over (rebalance, shutdown) and lost (superseded, unconfirmed: should stay at 0).", "ops",
                  (f"sum by (reason) (rate(natter_persister_leases_taken_total[{RATE}]))", "taken: {{reason}}"),
                  (f"sum by (reason) (rate(natter_persister_leases_handed_over_total[{RATE}]))",
                   "handed over: {{reason}}"),
                  (f"sum by (reason) (rate(natter_persister_leases_lost_total[{RATE}]))", "lost: {{reason}}")),
            panel("PostgreSQL connections", "Backends by state, from the PostgreSQL exporter.", "short",
                  ("sum by (state) (pg_stat_activity_count)", "{{state}}")),
            panel("Sends waiting for history", "Gateways with --ack-after persisted: sends stored by JetStream "
                  "and waiting for a persister's confirmation (capped by --max-waiting-sends; near the send rate "
                  "times the timeout while no persister can write).", "short",
                  ("sum by (instance) (natter_gateway_sends_awaiting_persistence)", "{{instance}}")),
            panel("Persistence confirmations", "Per second: sends confirmed in PostgreSQL by a commit notice or "
                  "by asking; sends given up on (publish_failed) or refused for too many waiting; notices the "
                  "persisters published and asks they answered.", "ops",
                  (f"sum by (via) (rate(natter_gateway_persisted_confirmations_total[{RATE}]))",
                   "confirmed by {{via}}"),
                  (f"sum(rate(natter_gateway_publish_failures_total{{reason=\"not_persisted\"}}[{RATE}]))",
                   "not persisted in time"),
                  (f"sum(rate(natter_gateway_persisted_waiting_refused_total[{RATE}]))", "refused: too many waiting"),
                  (f"sum(rate(natter_persister_persisted_notices_total[{RATE}]))", "notices"),
                  (f"sum(rate(natter_persister_persisted_asks_total[{RATE}]))", "asks answered")),
        ],
    },
    "auth-api": {
        "title": "Natter / Auth API",
        "description": "Requests, errors and latency per route; logins, refresh reuse, rate limits, keys.",
        "variables": [],
        "panels": [
            panel("Requests by route", "Requests per second by route pattern.", "reqps",
                  (f"sum by (route) (rate(natter_api_http_requests_total[{RATE}]))", "{{route}}")),
            panel("Errors", "Share of requests answered 5xx.", "percentunit",
                  # A healthy API has no 5xx series at all: count that as zero, not as no data.
                  (f"(sum(rate(natter_api_http_requests_total{{status=~\"5..\"}}[{RATE}])) or vector(0)) / "
                   f"sum(rate(natter_api_http_requests_total[{RATE}]))", "5xx")),
            panel("Latency p99 by route", "Request latency, p99.", "s",
                  (p99("natter_api_http_request_duration_seconds", by="route"), "{{route}}")),
            panel("Logins by outcome", "Logins per second by kind and outcome.", "ops",
                  (f"sum by (kind, outcome) (rate(natter_api_logins_total[{RATE}]))", "{{kind}} {{outcome}}")),
            panel("Tokens and refresh reuse", "Access tokens minted per second; refresh-token reuse detected.",
                  "ops",
                  (f"sum(rate(natter_api_tokens_issued_total[{RATE}]))", "tokens minted"),
                  (f"sum(rate(natter_api_refresh_token_reuse_total[{RATE}]))", "refresh reuse")),
            panel("Rate limited", "Requests refused per second by limiter.", "ops",
                  (f"sum by (limit) (rate(natter_api_rate_limited_total[{RATE}]))", "{{limit}}")),
            stat("Signing key age", "Age of the key that signs now; it rotates every 7 days.", "s",
                 "max(natter_api_signing_key_age_seconds)"),
            stat("Key rotations", "Signing keys rotated by these instances since they started.", "short",
                 "sum(natter_api_key_rotations_total)"),
        ],
    },
    "nats": {
        "title": "Natter / NATS and JetStream",
        "description": "Each service's NATS connection, the chat stream's size, publishes to it.",
        "variables": [],
        "panels": [
            panel("Connected to NATS", "1 while a service is connected to NATS.", "short",
                  ("natter_nats_connected", "{{job}} {{instance}}")),
            panel("Disconnects and reconnects", "NATS connections lost and regained per second.", "ops",
                  (f"sum by (job) (rate(natter_nats_disconnects_total[{RATE}]))", "{{job}} lost"),
                  (f"sum by (job) (rate(natter_nats_reconnects_total[{RATE}]))", "{{job}} back")),
            panel("Stream messages", "Messages held by the chat stream.", "short",
                  ("max(natter_stream_messages)", "messages")),
            panel("Stream bytes", "Bytes held by the chat stream.", "bytes",
                  ("max(natter_stream_bytes)", "bytes")),
            panel("Stream sequences", "The first sequence held and the last assigned.", "short",
                  ("max(natter_stream_first_seq)", "first"), ("max(natter_stream_last_seq)", "last")),
            panel("Publish latency", "A gateway's publish to JetStream's stored-ack, p50 and p99.", "s",
                  (p99("natter_gateway_publish_latency_seconds"), "p99"),
                  (p99("natter_gateway_publish_latency_seconds", q="0.5"), "p50")),
            panel("Publish failures and gap fills", "Publishes not confirmed, by reason; messages fetched from "
                  "the stream to fill a gap in a live feed; gaps the stream could not fill within 45 s "
                  "(receivers see them through prev).", "ops",
                  (f"sum by (reason) (rate(natter_gateway_publish_failures_total[{RATE}]))", "failed: {{reason}}"),
                  (f"sum(rate(natter_gateway_gap_fill_messages_total[{RATE}]))", "gap fills"),
                  (f"sum(rate(natter_gateway_gap_fill_failures_total[{RATE}]))", "gaps left unfilled")),
        ],
    },
    "runtime": {
        "title": "Natter / Runtime",
        "description": "CPU, memory and open files of every process; memory per connection of the gateways.",
        "variables": [],
        "panels": [
            panel("CPU", "CPU time per second (user + system) of each process: 1 is one core.", "short",
                  (f"rate(process_cpu_seconds_total{{job=~\"natter-.*\"}}[{RATE}])", "{{job}} {{instance}}")),
            panel("Resident memory", "RSS of each process.", "bytes",
                  ("process_resident_memory_bytes{job=~\"natter-.*\"}", "{{job}} {{instance}}")),
            panel("Gateway memory per connection", "RSS over open connections, per gateway.", "bytes",
                  ("sum by (instance) (process_resident_memory_bytes{job=\"natter-gateway\"}) / "
                   "clamp_min(sum by (instance) (natter_gateway_connections), 1)", "{{instance}}")),
            panel("Open files against the limit", "Open file descriptors over the process's limit.", "percentunit",
                  ("process_open_fds{job=~\"natter-.*\"} / process_max_fds{job=~\"natter-.*\"}",
                   "{{job}} {{instance}}")),
            panel("Open files", "Open file descriptors of each process.", "short",
                  ("process_open_fds{job=~\"natter-.*\"}", "{{job}} {{instance}}")),
        ],
    },
}


def variable(v):
    return {
        "name": v["name"],
        "label": v["label"],
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": v["query"], "refId": "var"},
        "definition": v["query"],
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "refresh": 2,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
    }


def dashboard(slug, spec):
    panels, x, y, row_height = [], 0, 0, 0
    for i, p in enumerate(spec["panels"], start=1):
        h = 4 if p["kind"] == "stat" else 8
        if x + p["width"] > 24:
            x, y = 0, y + row_height
            row_height = 0
        panels.append({
            "id": i,
            "type": p["kind"],
            "title": p["title"],
            "description": p["description"],
            "datasource": DATASOURCE,
            "gridPos": {"x": x, "y": y, "w": p["width"], "h": h},
            "fieldConfig": {"defaults": {"unit": p["unit"]}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if p["kind"] == "timeseries"
            else {"reduceOptions": {"calcs": ["lastNotNull"]}},
            "targets": [
                {"refId": chr(ord("A") + j), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
                for j, (expr, legend) in enumerate(p["queries"])
            ],
        })
        x += p["width"]
        row_height = max(row_height, h)
    return {
        "uid": f"natter-{slug}",
        "title": spec["title"],
        "description": spec["description"],
        "tags": ["natter"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [variable(v) for v in spec["variables"]]},
        "panels": panels,
    }


def rendered():
    """Each dashboard's file name and JSON text."""
    return {f"{slug}.json": json.dumps(dashboard(slug, spec), indent=2) + "\n" for slug, spec in DASHBOARDS.items()}


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for name, text in rendered().items():
        (OUT / name).write_text(text)
        print(f"wrote grafana/dashboards/{name}")
