#!/usr/bin/env bash
# The shipped Prometheus configuration: both scrape configs and the rules parse, and every alert fires on a series
# that breaks it and stays quiet on a healthy one (promtool test rules). That every metric the rules name is one a
# service defines is tests/dashboards.py's check, with the dashboards' own.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

promtool check config prometheus/prometheus.yml
promtool check config prometheus/prometheus.compose.yml
promtool check rules prometheus/rules/*.yml
(cd prometheus && promtool test rules tests/*.test.yml)
