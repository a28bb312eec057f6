#!/usr/bin/env python3
"""The Grafana dashboards, as code: `python3 grafana/dashboards.py` writes grafana/dashboards/*.json.

Each dashboard is a list of panels, each panel a title, a description, a unit and its PromQL queries, with
thresholds where a value means something and a "Runbook" link to each alert it shows (the alert's runbook_url);
every dashboard has an `instance` variable its per-instance queries filter by. The JSON
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


def panel(title, description, unit, *queries, kind="timeseries", width=12, height=None, thresholds=None,
          runbooks=(), links=(), decimals=None, min=None, max=None, instant=False):
    """A panel; each query is (expr, legend). thresholds: steps as from `steps()`; runbooks: the alerts (names as
    in prometheus/rules/alerts.yml) the panel shows the cause or symptom of, each linked to its runbook (the first
    titled "Runbook"); links: further (title, url) links."""
    return {
        "title": title,
        "description": description,
        "unit": unit,
        "queries": list(queries),
        "kind": kind,
        "width": width,
        "height": height or (4 if kind == "stat" else 8),
        "thresholds": thresholds,
        "links": [runbook(alert, first=i == 0) for i, alert in enumerate(runbooks)]
        + [{"title": t, "url": u} for t, u in links],
        "decimals": decimals,
        "min": min,
        "max": max,
        "instant": instant,
    }


def stat(title, description, unit, expr, legend="", width=6, **kw):
    return panel(title, description, unit, (expr, legend), kind="stat", width=width, **kw)


def steps(base, *above):
    """Grafana's absolute threshold steps: `base` colour below the first value, then (value, colour) from it up."""
    return [(None, base)] + list(above)


def runbook(alert, first=True):
    """The link to an alert's runbook: the runbook_url its rule in prometheus/rules/alerts.yml names."""
    return {"title": "Runbook" if first else f"Runbook: {alert}", "url": f"docs/operations.md#{alert.lower()}"}


def variable_over(label, selector):
    """The `instance` variable over the instances of the `up` series `selector` matches."""
    return {"name": "instance", "label": label, "query": f"label_values(up{{{selector}}}, instance)"}


INSTANCE = variable_over("Gateway", 'job="natter-gateway"')
GW = 'instance=~"$instance"'
# Every other dashboard's per-instance queries filter by the same matcher.
I = GW
ALERTS_DOC = ("Alerts and their runbooks", "docs/operations.md#alerts-and-recording-rules")

# Burn rate: an SLO's error ratio over a window divided by its error budget (1 minus its objective); 1 spends the
# 30-day budget in exactly 30 days, 14.4 in about 2 days (with the 5 min window above it too: a page), 6 in 5 days
# (with the 30 min window: a page).
BURN = steps("green", (6, "orange"), (14.4, "red"))


def burn(window, where=""):
    return f"natter:slo_errors:ratio_rate{window}{where} / on(slo) (1 - natter:slo_objective)"


FLEET = "Fleet-wide, as the SLO and its alerts count it: the instance selector does not apply."
STREAM = "The one chat stream as the persisters read its info: the instance selector does not apply."

DASHBOARDS = {
    "overview": {
        "title": "Natter / Overview",
        "description": "Is it broken, where, since when: send availability, error budgets, burn rates, alerts firing, "
                       "gateways taking users; then users online, deliveries, delivery and ack p99, history lag.",
        "variables": [variable_over("Instance", 'job=~"natter-.*|postgres"')],
        "panels": [
            # --- first row: is it broken, where, since when ---------------------------------------------------
            stat("Send availability (30 d)", "Sends acked over every send the gateways took on or turned away for "
                 "their own sake (acked, overloaded, failed), over 30 days; the objective is 99.9 %. " + FLEET,
                 "percentunit", '1 - natter:slo_errors:ratio_rate30d{slo="send_availability"}', "30 d",
                 width=3, height=5, decimals=2, thresholds=steps("red", (0.999, "green")),
                 runbooks=["NatterErrorBudgetBurningFast", "NatterErrorBudgetBurningSlowly"]),
            stat("Send availability (1 h)", "Sends acked over every send taken on or turned away, over the last "
                 "hour (objective 99.9 %; under 98.56 % over the hour burns the budget at 14.4, a page). " + FLEET,
                 "percentunit", '1 - natter:slo_errors:ratio_rate1h{slo="send_availability"}', "1 h",
                 width=3, height=5, decimals=2, thresholds=steps("red", (0.999, "green")),
                 runbooks=["NatterErrorBudgetBurningFast"]),
            stat("Error budget remaining (30 d)", "What is left of each SLO's 30-day error budget: 100 % untouched, "
                 "0 spent, below 0 overspent (send availability 99.9 %, delivery within 250 ms 99 %, ack within "
                 "500 ms 99 %, history at most 5 s behind 99.5 % of the time). An SLO without events in 30 days "
                 "has no value. " + FLEET, "percentunit",
                 "natter:slo_error_budget_remaining:ratio30d", "{{slo}}", width=8, height=5, decimals=1,
                 thresholds=steps("red", (0, "orange"), (0.25, "green")),
                 runbooks=["NatterErrorBudgetBurningSlowly", "NatterErrorBudgetBurningFast"]),
            stat("Pages firing", "Alerts firing now with severity page (each costs users now); the Firing alerts "
                 "table says which and where.", "short",
                 'count(ALERTS{alertstate="firing", severity="page"}) or vector(0)', "pages",
                 width=3, height=5, thresholds=steps("green", (1, "red")), links=[ALERTS_DOC]),
            stat("Tickets firing", "Alerts firing now with severity ticket (a cause to fix in working hours).",
                 "short", 'count(ALERTS{alertstate="firing", severity="ticket"}) or vector(0)', "tickets",
                 width=3, height=5, thresholds=steps("green", (1, "orange")), links=[ALERTS_DOC]),
            stat("Gateways assignable", "Gateways that can take new users: scraped up and not draining. Below 1 "
                 "for a minute pages (NatterNoGatewayAssignable). Fleet-wide.", "short",
                 '(count(up{job="natter-gateway"} == 1) or vector(0)) - (sum(natter_gateway_draining == 1) or '
                 'vector(0))', "assignable", width=4, height=5, thresholds=steps("red", (1, "green")),
                 runbooks=["NatterNoGatewayAssignable", "NatterGatewayDown"]),
            stat("Burn rate (1 h)", "Each SLO's error ratio over the last hour divided by its error budget (1 minus "
                 "its objective): 1 spends the 30-day budget in 30 days; 14.4 (with the 5 min window over it too) "
                 "pages, a budget gone in 2 days. No value: no events in the hour. " + FLEET, "short",
                 burn("1h"), "{{slo}}", width=4, height=8, decimals=2, thresholds=BURN,
                 runbooks=["NatterErrorBudgetBurningFast"]),
            stat("Burn rate (6 h)", "Each SLO's error ratio over 6 hours over its error budget: 6 (with the 30 min "
                 "window over it too) pages, a budget gone in 5 days; over 1 (with 3 days over 1) is a ticket. "
                 + FLEET, "short", burn("6h"), "{{slo}}", width=4, height=8, decimals=2, thresholds=BURN,
                 runbooks=["NatterErrorBudgetBurningFast", "NatterErrorBudgetBurningSlowly"]),
            panel("Firing alerts", "Alerts firing now, by name and severity, with where (SLO, job, instance) when "
                  "the alert says. Watchdog (severity none) always fires: if it is missing, the alerting path "
                  "(Prometheus, its rules) is broken and this table cannot be trusted.", "short",
                  ('count by (alertname, severity, slo, job, instance) (ALERTS{alertstate="firing"})', ""),
                  kind="table", width=9, instant=True, links=[ALERTS_DOC]),
            panel("Firing alerts over time", "Since when: the alerts firing, by name and severity, over the "
                  "dashboard's time range (Watchdog, always firing, is the line at 1 that proves the alerting path "
                  "works).", "short",
                  ('count by (alertname, severity) (ALERTS{alertstate="firing"})', "{{alertname}} ({{severity}})"),
                  width=7, links=[ALERTS_DOC]),
            # --- load and latency (the instance selector applies) ---------------------------------------------
            stat("Users online", "Open WebSocket connections over the selected gateways.", "short",
                 f"sum(natter_gateway_connections{{{I}}})"),
            stat("Deliveries per second", "Chat messages handed to members' sockets, selected gateways.", "ops",
                 f"sum(rate(natter_gateway_messages_out_total{{{I}}}[{RATE}]))",
                 runbooks=["NatterStoredNotDelivered"]),
            stat("Delivery p99", "A message's acceptance to its hand-off to members, selected gateways (SLO: 99 % "
                 "within 250 ms).", "s", p99("natter_gateway_delivery_latency_seconds", where=I),
                 thresholds=steps("green", (0.25, "red")), runbooks=["NatterErrorBudgetBurningFast"]),
            stat("Ack p99", "A send read to its ack queued, selected gateways (SLO: 99 % within 500 ms).", "s",
                 p99("natter_gateway_ack_latency_seconds", where=I),
                 thresholds=steps("green", (0.5, "red")), runbooks=["NatterErrorBudgetBurningFast"]),
            panel("Delivery and ack latency", "p50 and p99 of delivery (acceptance to hand-off; SLO 250 ms) and of "
                  "acks (SLO 500 ms), selected gateways.", "s",
                  (p99("natter_gateway_delivery_latency_seconds", where=I), "delivery p99"),
                  (p99("natter_gateway_delivery_latency_seconds", q="0.5", where=I), "delivery p50"),
                  (p99("natter_gateway_ack_latency_seconds", where=I), "ack p99"),
                  (p99("natter_gateway_ack_latency_seconds", q="0.5", where=I), "ack p50")),
            panel("Delivery error budget burn",
                  "The delivery SLO's burn rate (99 % of deliveries within 250 ms: its error ratio over its 1 % "
                  "budget) over the windows its alert reads: 14.4 over 1 h with the 5 min window over it too, or 6 "
                  "over 6 h with 30 min, pages (dashed lines); 1 spends the 30-day budget in 30 days. Every SLO's "
                  "burn rate is in the first row. " + FLEET, "short",
                  (burn("1h", '{slo="delivery_latency"}'), "1 h burn rate"),
                  (burn("5m", '{slo="delivery_latency"}'), "5 min burn rate"),
                  (burn("6h", '{slo="delivery_latency"}'), "6 h burn rate"),
                  (burn("30m", '{slo="delivery_latency"}'), "30 min burn rate"),
                  thresholds=BURN, runbooks=["NatterErrorBudgetBurningFast"]),
            panel("History lag", "Acceptance of the newest written message to its commit, worst selected "
                  "persister: over 5 s counts against the history freshness SLO; over 30 s for 5 min is a ticket.",
                  "s", (f"max(natter_persister_lag_seconds{{{I}}})", "lag"),
                  thresholds=steps("green", (5, "orange"), (30, "red")), runbooks=["NatterPersisterLagging"]),
            panel("Sends shed and slow consumers",
                  "Sends refused with overloaded, and clients closed with 4008 for not reading, selected gateways.",
                  "ops",
                  (f"sum(rate(natter_gateway_sends_shed_total{{{I}}}[{RATE}]))", "sends shed"),
                  (f"sum(rate(natter_gateway_slow_consumer_disconnects_total{{{I}}}[{RATE}]))",
                   "slow consumers closed"),
                  runbooks=["NatterSlowConsumerClosesRising", "NatterErrorBudgetBurningFast"]),
        ],
    },
    "gateways": {
        "title": "Natter / Gateways",
        "description": "Per gateway process: up and draining, send availability, connections, joins, fan-out, "
                       "shedding, close codes, token failures, replays.",
        "variables": [INSTANCE],
        "panels": [
            panel("Gateways up", "1 while Prometheus scrapes a gateway; a drained gateway that exited drops to 0 "
                  "without an alert.", "short",
                  (f'up{{job="natter-gateway", {GW}}}', "{{instance}}"),
                  thresholds=steps("red", (1, "green")), min=0, max=1,
                  runbooks=["NatterGatewayDown", "NatterNoGatewayAssignable"]),
            panel("Send availability by gateway", "Sends acked over every send each gateway took on or turned away "
                  "for its own sake (acked, overloaded, failed), over the rate interval; the SLO is 99.9 % "
                  "fleet-wide over 30 days.", "percentunit",
                  (f'sum by (instance) (rate(natter_gateway_sends_total{{outcome="acked", {GW}}}[{RATE}])) / '
                   f"sum by (instance) (rate(natter_gateway_sends_total{{{GW}}}[{RATE}]))", "{{instance}}"),
                  thresholds=steps("red", (0.999, "green")), runbooks=["NatterErrorBudgetBurningFast"]),
            panel("Sends by outcome", "Sends per second by outcome: acked, overloaded (shed), failed (publish "
                  "failed; the sender sends again).", "ops",
                  (f"sum by (outcome) (rate(natter_gateway_sends_total{{{GW}}}[{RATE}]))", "{{outcome}}")),
            panel("Draining", "1 while a gateway drains (from SIGTERM until it exits); a draining gateway takes no "
                  "new users.", "short",
                  (f"natter_gateway_draining{{{GW}}}", "{{instance}}"), runbooks=["NatterNoGatewayAssignable"]),
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
                  (f"sum by (instance) (rate(natter_gateway_messages_out_total{{{GW}}}[{RATE}]))", "{{instance}}"),
                  runbooks=["NatterStoredNotDelivered"]),
            panel("Fan-out latency p99", "A message's arrival from NATS to its frame being written.", "s",
                  (p99("natter_gateway_fanout_latency_seconds", by="instance", where=GW), "{{instance}}")),
            panel("Delivery lag", "Smoothed acceptance-to-hand-off lag; a share of sends is refused over "
                  "--shed-lag. The delivery SLO's limit, 250 ms, is the dashed line.", "s",
                  (f"natter_gateway_delivery_lag_seconds{{{GW}}}", "{{instance}}"),
                  thresholds=steps("green", (0.25, "red"))),
            panel("Shed share", "The share of new sends refused with overloaded.", "percentunit",
                  (f"natter_gateway_shed_share{{{GW}}}", "{{instance}}")),
            panel("Deepest outbound queue", "Frames waiting in the fullest client queue, each second; a queue "
                  "reaching --outbound-queue closes its client with 4008.", "short",
                  (f"natter_gateway_outbound_queue_max{{{GW}}}", "{{instance}}"),
                  runbooks=["NatterSlowConsumerClosesRising"]),
            panel("Replays", "Messages replayed to rejoining clients, and rejoins answered recovered: false.", "ops",
                  (f"sum by (instance) (rate(natter_gateway_replayed_messages_total{{{GW}}}[{RATE}]))",
                   "{{instance}} replayed"),
                  (f"sum by (instance) (rate(natter_gateway_joins_unrecovered_total{{{GW}}}[{RATE}]))",
                   "{{instance}} unrecovered")),
            panel("Token failures by reason", "Upgrades refused for their access token, per second by reason "
                  "(missing_token, token_expired, bad_signature, unknown_key, …; the refusals that are not about "
                  "the token, draining, origin and too_many_connections, are in Refused upgrades), next to the "
                  "tokens checked by how (signature: an Ed25519 check; cached: verified before in this process).",
                  "ops",
                  (f"sum by (reason) (rate(natter_gateway_auth_failures_total{{{GW}, "
                   f'reason!~"draining|origin|too_many_connections"}}[{RATE}]))', "{{reason}}"),
                  (f"sum by (how) (rate(natter_gateway_tokens_verified_total{{{GW}}}[{RATE}]))", "checked: {{how}}")),
            panel("Refused upgrades and rate limits", "Upgrades refused by reason (token failures and the others), "
                  "frames refused by a rate limit.", "ops",
                  (f"sum by (reason) (rate(natter_gateway_auth_failures_total{{{GW}}}[{RATE}]))", "{{reason}}"),
                  (f"sum by (kind) (rate(natter_gateway_rate_limited_total{{{GW}}}[{RATE}]))", "rate limited {{kind}}")),
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
        "description": "The persisters: up, rows per second, batches, commit latency, backlog, history lag, dead "
                       "letters, partitions; PostgreSQL.",
        "variables": [variable_over("Persister", 'job="natter-persister"')],
        "panels": [
            panel("Persisters up", "1 while Prometheus scrapes a persister. With none up history stops at the last "
                  "message written (the stream keeps the rest).", "short",
                  (f'up{{job="natter-persister", {I}}}', "{{instance}}"),
                  thresholds=steps("red", (1, "green")), min=0, max=1,
                  runbooks=["NatterPersistersDown", "NatterTargetDown"]),
            panel("PostgreSQL up", "pg_up: 1 while the exporter reaches PostgreSQL; up: 1 while Prometheus scrapes "
                  "the exporter. Not filtered by persister.", "short",
                  ("max(pg_up)", "PostgreSQL answers"), ('max(up{job="postgres"})', "exporter scraped"),
                  thresholds=steps("red", (1, "green")), min=0, max=1,
                  runbooks=["NatterPostgresDown", "NatterTargetDown"]),
            panel("Rows per second", "New rows written to PostgreSQL, per persister.", "ops",
                  (f"sum by (instance) (rate(natter_persister_rows_written_total{{{I}}}[{RATE}]))", "{{instance}}")),
            panel("Batch size", "Messages per written batch (the persisters' own quantiles).", "short",
                  (f"max by (quantile) (natter_persister_batch_size{{{I}}})", "q{{quantile}}")),
            panel("Commit latency", "Writing and committing one batch, p50 and p99.", "s",
                  (p99("natter_persister_insert_latency_seconds", where=I), "p99"),
                  (p99("natter_persister_insert_latency_seconds", q="0.5", where=I), "p50")),
            panel("Backlog", "Messages not yet delivered to a persister (each partition counted once, however "
                  "many persisters report it while its lease is handed over; over 10,000 and growing for 10 min is "
                  "a ticket), and delivered but not yet acked.", "short",
                  (f"sum(max by (partition) (natter_persister_consumer_pending{{{I}}}))", "pending"),
                  (f"sum(natter_persister_consumer_ack_pending{{{I}}})", "ack pending"),
                  thresholds=steps("green", (10000, "orange")), runbooks=["NatterPersisterPendingGrowing"]),
            panel("History lag", "Acceptance of the newest written message to its commit: over 5 s counts against "
                  "the history freshness SLO; over 30 s for 5 min is a ticket.", "s",
                  (f"natter_persister_lag_seconds{{{I}}}", "{{instance}}"),
                  thresholds=steps("green", (5, "orange"), (30, "red")),
                  runbooks=["NatterPersisterLagging", "NatterErrorBudgetBurningFast"]),
            panel("Dead letters, failures, redeliveries", "Per second: messages dead-lettered, failed batch "
                  "writes (each retried), redeliveries, duplicates skipped.", "ops",
                  (f"sum(rate(natter_persister_dead_lettered_total{{{I}}}[{RATE}]))", "dead lettered"),
                  (f"sum(rate(natter_persister_write_failures_total{{{I}}}[{RATE}]))", "write failures"),
                  (f"sum(rate(natter_persister_redeliveries_total{{{I}}}[{RATE}]))", "redeliveries"),
                  (f"sum(rate(natter_persister_duplicates_skipped_total{{{I}}}[{RATE}]))", "duplicates"),
                  runbooks=["NatterDeadLetter"]),
            panel("Partitions owned", "Partitions of the chat stream whose leases each persister holds (16 in all "
                  "once settled; a standby holds none).", "short",
                  (f"natter_persister_partitions_owned{{{I}}}", "{{instance}}"),
                  (f"sum(natter_persister_partitions_owned{{{I}}})", "all")),
            panel("Partition leases", "Per second: leases taken (vacant: its holder died; released: handed over), "
                  "handed over (rebalance, shutdown) and lost (superseded, unconfirmed: should stay at 0).", "ops",
                  (f"sum by (reason) (rate(natter_persister_leases_taken_total{{{I}}}[{RATE}]))", "taken: {{reason}}"),
                  (f"sum by (reason) (rate(natter_persister_leases_handed_over_total{{{I}}}[{RATE}]))",
                   "handed over: {{reason}}"),
                  (f"sum by (reason) (rate(natter_persister_leases_lost_total{{{I}}}[{RATE}]))", "lost: {{reason}}")),
            panel("PostgreSQL connections", "Backends by state, from the PostgreSQL exporter (not filtered by "
                  "persister).", "short",
                  ("sum by (state) (pg_stat_activity_count)", "{{state}}"), runbooks=["NatterPostgresDown"]),
            panel("Sends waiting for history", "Gateways with --ack-after persisted: sends stored by JetStream "
                  "and waiting for a persister's confirmation (capped by --max-waiting-sends; near the send rate "
                  "times the timeout while no persister can write). Every gateway: not filtered by persister.",
                  "short",
                  ("sum by (instance) (natter_gateway_sends_awaiting_persistence)", "{{instance}}")),
            panel("Persistence confirmations", "Per second: sends confirmed in PostgreSQL by a commit notice or "
                  "by asking; sends given up on (publish_failed) or refused for too many waiting (these from every "
                  "gateway); notices the selected persisters published and asks they answered.", "ops",
                  (f"sum by (via) (rate(natter_gateway_persisted_confirmations_total[{RATE}]))",
                   "confirmed by {{via}}"),
                  (f"sum(rate(natter_gateway_publish_failures_total{{reason=\"not_persisted\"}}[{RATE}]))",
                   "not persisted in time"),
                  (f"sum(rate(natter_gateway_persisted_waiting_refused_total[{RATE}]))", "refused: too many waiting"),
                  (f"sum(rate(natter_persister_persisted_notices_total{{{I}}}[{RATE}]))", "notices"),
                  (f"sum(rate(natter_persister_persisted_asks_total{{{I}}}[{RATE}]))", "asks answered")),
        ],
    },
    "auth-api": {
        "title": "Natter / Auth API",
        "description": "Instances up; requests, errors and latency per route; logins, refresh reuse, rate limits, "
                       "keys. Token failures at the gateways are on the Gateways dashboard.",
        "variables": [variable_over("Auth API", 'job="natter-auth-api"')],
        "panels": [
            stat("Auth API instances up", "Auth API instances Prometheus scrapes. With none, nobody can log in, "
                 "or reconnect once their token expires.", "short",
                 f'count(up{{job="natter-auth-api", {I}}} == 1) or vector(0)', "up",
                 thresholds=steps("red", (1, "green")), runbooks=["NatterAuthApiDown", "NatterTargetDown"]),
            stat("Signing key age", "Age of the key that signs now; it rotates every 7 days, over 8 is a ticket.",
                 "s", f"max(natter_api_signing_key_age_seconds{{{I}}})",
                 thresholds=steps("green", (8 * 86400, "red")), runbooks=["NatterSigningKeyStale"]),
            stat("Key rotations", "Signing keys rotated by these instances since they started.", "short",
                 f"sum(natter_api_key_rotations_total{{{I}}})"),
            stat("5xx share", "Share of requests answered 5xx over the rate interval; over 5 % for 5 min pages.",
                 "percentunit",
                 f"(sum(rate(natter_api_http_requests_total{{status=~\"5..\", {I}}}[{RATE}])) or vector(0)) / "
                 f"sum(rate(natter_api_http_requests_total{{{I}}}[{RATE}]))",
                 thresholds=steps("green", (0.05, "red")), runbooks=["NatterAuthErrors"]),
            panel("Requests by route", "Requests per second by route pattern.", "reqps",
                  (f"sum by (route) (rate(natter_api_http_requests_total{{{I}}}[{RATE}]))", "{{route}}")),
            panel("Errors", "Share of requests answered 5xx; over 5 % for 5 min pages.", "percentunit",
                  # A healthy API has no 5xx series at all: count that as zero, not as no data.
                  (f"(sum(rate(natter_api_http_requests_total{{status=~\"5..\", {I}}}[{RATE}])) or vector(0)) / "
                   f"sum(rate(natter_api_http_requests_total{{{I}}}[{RATE}]))", "5xx"),
                  thresholds=steps("green", (0.05, "red")), runbooks=["NatterAuthErrors"]),
            panel("Latency p99 by route", "Request latency, p99.", "s",
                  (p99("natter_api_http_request_duration_seconds", by="route", where=I), "{{route}}")),
            panel("Logins by outcome", "Logins per second by kind and outcome; over 5 wrong passwords a second for "
                  "5 min is a ticket.", "ops",
                  (f"sum by (kind, outcome) (rate(natter_api_logins_total{{{I}}}[{RATE}]))", "{{kind}} {{outcome}}"),
                  runbooks=["NatterLoginFailureSpike"]),
            panel("Tokens and refresh reuse", "Access tokens minted per second; refresh-token reuse detected.",
                  "ops",
                  (f"sum(rate(natter_api_tokens_issued_total{{{I}}}[{RATE}]))", "tokens minted"),
                  (f"sum(rate(natter_api_refresh_token_reuse_total{{{I}}}[{RATE}]))", "refresh reuse")),
            panel("Rate limited", "Requests refused per second by limiter.", "ops",
                  (f"sum by (limit) (rate(natter_api_rate_limited_total{{{I}}}[{RATE}]))", "{{limit}}"),
                  runbooks=["NatterLoginFailureSpike"]),
        ],
    },
    "nats": {
        "title": "Natter / NATS and JetStream",
        "description": "Each service's NATS connection; the chat stream's leader, copies, size against its cap, "
                       "recreations; the persisters' backlog per partition; publishes to the stream.",
        "variables": [variable_over("Service instance", 'job=~"natter-gateway|natter-persister|natter-auth-api"')],
        "panels": [
            stat("Stream leader", "1 while the chat stream has a leader; 0 for a minute pages: no send can be "
                 "stored. " + STREAM, "short", "max(natter_stream_leader)", "leader",
                 thresholds=steps("red", (1, "green")), runbooks=["NatterStreamNoLeader"]),
            stat("Services connected to NATS", "Processes of each service connected to NATS now (selected "
                 "instances); a service at 0 is red. No service connected for a minute pages.", "short",
                 f"sum by (job) (natter_nats_connected{{{I}}})", "{{job}}",
                 thresholds=steps("red", (1, "green")), runbooks=["NatterNatsDown", "NatterNatsDisconnected"]),
            stat("NATS cluster servers listed", "Servers of the NATS cluster as the server each persister is "
                 "connected to lists them (0 for a server outside a cluster, as on the local stack); a node that "
                 "lost its routes lists fewer.", "short",
                 f"natter_nats_cluster_servers{{{I}}}", "{{instance}}", runbooks=["NatterStreamReplicasBehind"]),
            stat("Stream fill (bytes of cap)", "The chat stream's bytes over its byte cap; over 80 % for 15 min is "
                 "a ticket, and full it refuses every send. No value: the stream has no cap. " + STREAM,
                 "percentunit", "max(natter_stream_bytes) / max(natter_stream_max_bytes > 0)", "of cap",
                 decimals=1, thresholds=steps("green", (0.8, "orange"), (0.95, "red")),
                 runbooks=["NatterStreamFilling"]),
            panel("Connected to NATS", "1 while a service's process is connected to NATS.", "short",
                  (f"natter_nats_connected{{{I}}}", "{{job}} {{instance}}"),
                  thresholds=steps("red", (1, "green")), min=0, max=1,
                  runbooks=["NatterNatsDisconnected", "NatterNatsDown"]),
            panel("NATS disconnects and reconnects", "NATS connections lost and regained per second, per service.",
                  "ops",
                  (f"sum by (job) (rate(natter_nats_disconnects_total{{{I}}}[{RATE}]))", "{{job}} lost"),
                  (f"sum by (job) (rate(natter_nats_reconnects_total{{{I}}}[{RATE}]))", "{{job}} back"),
                  runbooks=["NatterNatsDisconnected", "NatterNatsDown"]),
            panel("Stream copies by state", "The chat stream's copies by state (current: the leader and replicas "
                  "caught up; lagging: reachable, behind; offline: unreachable) against the copies it is "
                  "configured to keep; lagging or offline copies for 5 min are a ticket. " + STREAM, "short",
                  ("max by (state) (natter_stream_replicas)", "{{state}}"),
                  ("max(natter_stream_replicas_configured)", "configured"),
                  runbooks=["NatterStreamReplicasBehind", "NatterStreamNoLeader"]),
            panel("Stream bytes against the cap", "Bytes held by the chat stream and its byte cap (0: none); the "
                  "ratio is the Stream fill stat. " + STREAM, "bytes",
                  ("max(natter_stream_bytes)", "bytes"), ("max(natter_stream_max_bytes)", "cap"),
                  runbooks=["NatterStreamFilling"]),
            panel("Stream recreations", "Times in the last hour each process found the chat stream recreated (a "
                  "new epoch): gateways send their rooms' members to rejoin, persisters read on in the new stream. "
                  "Any is worth a look (messages held only by the old stream are gone).", "short",
                  (f"sum by (instance) (increase(natter_gateway_stream_recreations_total{{{I}}}[1h]))",
                   "gateway {{instance}}"),
                  (f"sum by (instance) (increase(natter_persister_stream_recreations_total{{{I}}}[1h]))",
                   "persister {{instance}}"),
                  thresholds=steps("green", (1, "orange"))),
            panel("Consumer pending per partition", "Messages of each partition of the chat stream not yet "
                  "delivered to a persister (the most any selected persister reports: a partition being handed "
                  "over counts once), and their sum; over 10,000 and growing for 10 min is a ticket.", "short",
                  (f"max by (partition) (natter_persister_consumer_pending{{{I}}})", "partition {{partition}}"),
                  (f"sum(max by (partition) (natter_persister_consumer_pending{{{I}}}))", "all partitions"),
                  thresholds=steps("green", (10000, "orange")), runbooks=["NatterPersisterPendingGrowing"]),
            panel("Stream messages", "Messages held by the chat stream. " + STREAM, "short",
                  ("max(natter_stream_messages)", "messages")),
            panel("Stream sequences", "The first sequence held and the last assigned; the last rising while "
                  "nothing is delivered for 5 min pages. " + STREAM, "short",
                  ("max(natter_stream_first_seq)", "first"), ("max(natter_stream_last_seq)", "last"),
                  runbooks=["NatterStoredNotDelivered"]),
            panel("Publish latency", "A gateway's publish to JetStream's stored-ack, p50 and p99.", "s",
                  (p99("natter_gateway_publish_latency_seconds", where=I), "p99"),
                  (p99("natter_gateway_publish_latency_seconds", q="0.5", where=I), "p50")),
            panel("Publish failures and gap fills", "Publishes not confirmed, by reason; messages fetched from "
                  "the stream to fill a gap in a live feed; gaps the stream could not fill within 45 s "
                  "(receivers see them through prev).", "ops",
                  (f"sum by (reason) (rate(natter_gateway_publish_failures_total{{{I}}}[{RATE}]))",
                   "failed: {{reason}}"),
                  (f"sum(rate(natter_gateway_gap_fill_messages_total{{{I}}}[{RATE}]))", "gap fills"),
                  (f"sum(rate(natter_gateway_gap_fill_failures_total{{{I}}}[{RATE}]))", "gaps left unfilled"),
                  runbooks=["NatterErrorBudgetBurningFast"]),
        ],
    },
    "runtime": {
        "title": "Natter / Runtime",
        "description": "Targets up; CPU, memory and open files of every process; memory per connection of the "
                       "gateways.",
        "variables": [variable_over("Instance", 'job=~"natter-.*|postgres"')],
        "panels": [
            panel("Targets up", "1 while Prometheus scrapes a target (gateways, persisters, auth API, the "
                  "PostgreSQL exporter).", "short",
                  (f'up{{job=~"natter-.*|postgres", {I}}}', "{{job}} {{instance}}"),
                  thresholds=steps("red", (1, "green")), min=0, max=1,
                  runbooks=["NatterTargetDown", "NatterGatewayDown"], width=24),
            panel("CPU", "CPU time per second (user + system) of each process: 1 is one core.", "short",
                  (f"rate(process_cpu_seconds_total{{job=~\"natter-.*\", {I}}}[{RATE}])", "{{job}} {{instance}}")),
            panel("Resident memory", "RSS of each process.", "bytes",
                  (f"process_resident_memory_bytes{{job=~\"natter-.*\", {I}}}", "{{job}} {{instance}}")),
            panel("Gateway memory per connection", "RSS over open connections, per gateway.", "bytes",
                  (f"sum by (instance) (process_resident_memory_bytes{{job=\"natter-gateway\", {I}}}) / "
                   f"clamp_min(sum by (instance) (natter_gateway_connections{{{I}}}), 1)", "{{instance}}")),
            panel("Open files against the limit", "Open file descriptors over the process's limit; a gateway over "
                  "90 % for 5 min is a ticket.", "percentunit",
                  (f"process_open_fds{{job=~\"natter-.*\", {I}}} / process_max_fds{{job=~\"natter-.*\", {I}}}",
                   "{{job}} {{instance}}"),
                  thresholds=steps("green", (0.9, "red")), runbooks=["NatterConnectionsNearFileLimit"]),
            panel("Open files", "Open file descriptors of each process.", "short",
                  (f"process_open_fds{{job=~\"natter-.*\", {I}}}", "{{job}} {{instance}}"),
                  runbooks=["NatterConnectionsNearFileLimit"]),
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


def field_defaults(p):
    defaults = {"unit": p["unit"]}
    for key in ("decimals", "min", "max"):
        if p[key] is not None:
            defaults[key] = p[key]
    if p["thresholds"]:
        defaults["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": colour, "value": value} for value, colour in p["thresholds"]],
        }
        if p["kind"] == "stat":
            defaults["color"] = {"mode": "thresholds"}
        elif p["kind"] == "timeseries":
            # The thresholds drawn as dashed lines across the graph; the series keep their own colours.
            defaults["custom"] = {"thresholdsStyle": {"mode": "dashed"}}
    elif p["kind"] == "stat":
        # No threshold means anything here: no colour either (Grafana's default would turn 80 red).
        defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": "text", "value": None}]}
        defaults["color"] = {"mode": "thresholds"}
    return defaults


SEVERITY_COLOURS = {"page": "red", "ticket": "orange", "none": "green"}


def options(p):
    if p["kind"] == "timeseries":
        return {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}}
    if p["kind"] == "stat":
        return {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background" if p["thresholds"] else "none",
            "graphMode": "area",
            "textMode": "auto",
            "justifyMode": "auto",
            "orientation": "auto",
        }
    return {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"], "fields": ""}}


def table_extras(p):
    """A table of an instant query's series: its labels as columns (the time left out), severities coloured."""
    mappings = [{"type": "value", "options": {sev: {"color": colour, "index": i}
                                              for i, (sev, colour) in enumerate(SEVERITY_COLOURS.items())}}]
    return {
        "transformations": [{"id": "organize", "options": {"excludeByName": {"Time": True},
                                                           "renameByName": {"Value": "series firing"}}}],
        "overrides": [{"matcher": {"id": "byName", "options": "severity"},
                       "properties": [{"id": "mappings", "value": mappings},
                                      {"id": "custom.cellOptions", "value": {"type": "color-background"}}]}],
    }


def target(p, j, expr, legend):
    t = {"refId": chr(ord("A") + j), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
    if p["instant"]:
        t.update({"instant": True, "range": False, "format": "table"})
    return t


def dashboard(slug, spec):
    panels, x, y, row_height = [], 0, 0, 0
    for i, p in enumerate(spec["panels"], start=1):
        h = p["height"]
        if x + p["width"] > 24:
            x, y = 0, y + row_height
            row_height = 0
        extras = table_extras(p) if p["kind"] == "table" else {"overrides": []}
        out = {
            "id": i,
            "type": p["kind"],
            "title": p["title"],
            "description": p["description"],
            "datasource": DATASOURCE,
            "gridPos": {"x": x, "y": y, "w": p["width"], "h": h},
            "fieldConfig": {"defaults": field_defaults(p), "overrides": extras["overrides"]},
            "options": options(p),
            "targets": [target(p, j, expr, legend) for j, (expr, legend) in enumerate(p["queries"])],
        }
        if "transformations" in extras:
            out["transformations"] = extras["transformations"]
        if p["links"]:
            out["links"] = p["links"]
        panels.append(out)
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
