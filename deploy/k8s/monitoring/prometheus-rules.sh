#!/usr/bin/env bash
# prometheus/rules as prometheus-operator PrometheusRules (one per file, named natter-<file>), on stdout:
#   deploy/k8s/monitoring/prometheus-rules.sh | kubectl apply -n natter -f -
# A rules file is already a PrometheusRule's spec ({groups: ...}): each is indented under `spec:` as it is.
# Your Prometheus's ruleSelector must select them (add its labels with --label KEY=VALUE if it needs any).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
labels=()
while [ $# -gt 0 ]; do
  case "$1" in
    --label) labels+=("$2"); shift 2 ;;
    *) echo "usage: $0 [--label KEY=VALUE]..." >&2; exit 2 ;;
  esac
done
for f in "$ROOT"/prometheus/rules/*.yml; do
  echo "---"
  echo "apiVersion: monitoring.coreos.com/v1"
  echo "kind: PrometheusRule"
  echo "metadata:"
  echo "  name: natter-$(basename "$f" .yml)"
  echo "  labels:"
  echo "    app.kubernetes.io/part-of: natter"
  for l in "${labels[@]+"${labels[@]}"}"; do echo "    ${l%%=*}: \"${l#*=}\""; done
  echo "spec:"
  sed 's/^\(.\)/  \1/' "$f"
done
