#!/usr/bin/env bash
# The shipped Prometheus and Alertmanager configuration: both scrape configs, the rules and Alertmanager's routing
# parse; every alert fires on a series that breaks it and stays quiet on a healthy one (promtool test rules), has a
# severity and a runbook in docs/operations.md (tests/alert_rules.py); each severity reaches its receiver (amtool).
# That every metric the rules name is one a service defines is tests/dashboards.py's check, with the dashboards' own.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

promtool check config prometheus/prometheus.yml
promtool check config prometheus/prometheus.compose.yml
promtool check rules prometheus/rules/*.yml
(cd prometheus && promtool test rules tests/*.test.yml)
python3 tests/alert_rules.py
amtool check-config alertmanager/alertmanager.yml

route() { # expected receiver, then the alert's labels
  local want="$1" got
  shift
  got="$(amtool config routes test --config.file=alertmanager/alertmanager.yml "$@" 2>/dev/null)"
  [ "$got" = "$want" ] || { echo "FAIL: an alert with $* goes to '$got', not '$want'" >&2; exit 1; }
  echo "ok: $* -> $want"
}
route page alertname=NatterNatsDown severity=page
route page alertname=NatterErrorBudgetBurningFast severity=page slo=send_availability
route ticket alertname=NatterGatewayDown severity=ticket
route ticket alertname=NatterErrorBudgetBurningSlowly severity=ticket slo=send_availability
route watchdog alertname=Watchdog severity=none
