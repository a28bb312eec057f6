#!/usr/bin/env bash
# The shipped Prometheus configuration: both scrape configs and the rules parse, every alert fires on a series
# that breaks it and stays quiet on a healthy one (promtool test rules), and every metric the rules name is one a
# service defines in its metrics.rs (whose start-up tests prove each is exported).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

promtool check config prometheus/prometheus.yml
promtool check config prometheus/prometheus.compose.yml
promtool check rules prometheus/rules/*.yml
(cd prometheus && promtool test rules tests/*.test.yml)

named="$(grep -ohE '\b(natter|process)_[a-z_]+' prometheus/rules/*.yml | sed -E 's/_(bucket|count|sum)$//' | sort -u)"
defined="$(cat ./*/src/metrics.rs service/src/lib.rs | grep -ohE '"(natter|process)_[a-z_]+"' | tr -d '"' | sort -u)"
unknown="$(comm -23 <(printf '%s\n' "$named") <(printf '%s\n' "$defined"))"
if [ -n "$unknown" ]; then
  echo "the rules name metrics no service exports:" >&2
  printf '  %s\n' $unknown >&2
  exit 1
fi
echo "rules name $(printf '%s\n' "$named" | wc -l) metrics, all exported"
