#!/usr/bin/env python3
"""Draws each Grafana dashboard's panels from a real Prometheus into one SVG per dashboard, for docs/operations.md
(Grafana itself cannot be installed where this project is built).

    python3 scripts/render-dashboards.py --prometheus http://127.0.0.1:9090 [--minutes 5] [--out docs/dashboards]

Every query of every panel is run over the last minutes with the template variables Grafana would fill for
"All"; each panel becomes a small chart of its series, laid out as the dashboard lays them out.
"""

import argparse
import html
import json
import math
import pathlib
import sys
import time
import urllib.parse
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
CELL_W, ROW_H = 40, 30  # pixels per grid column and per grid row unit


def query_range(prometheus, expr, start, end, step):
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{params}", timeout=10) as reply:
        return json.load(reply)["data"]["result"]


def fill(expr):
    return expr.replace("$__rate_interval", "1m").replace("$instance", ".*")


def legend(template, labels):
    out = template
    for key, value in labels.items():
        out = out.replace("{{" + key + "}}", value)
    return out or ",".join(f"{k}={v}" for k, v in labels.items() if k != "__name__") or "value"


def human(value, unit):
    if unit == "percentunit":
        return f"{value * 100:.3g}%"
    if unit == "s":
        return f"{value * 1000:.3g} ms" if value < 1 else f"{value:.3g} s"
    if unit == "bytes":
        for size, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if value >= size:
                return f"{value / size:.3g} {name}"
        return f"{value:.3g} B"
    suffix = {"ops": "/s", "reqps": " req/s"}.get(unit, "")
    return f"{value:.3g}{suffix}"


def panel_svg(panel, series, x0, y0, w, h, start, end):
    unit = panel["fieldConfig"]["defaults"]["unit"]
    out = [f'<rect x="{x0 + 2}" y="{y0 + 2}" width="{w - 4}" height="{h - 4}" fill="#fff" stroke="#ccc"/>',
           f'<text x="{x0 + 10}" y="{y0 + 20}" font-size="13" font-weight="bold">{html.escape(panel["title"])}</text>']
    values = [v for _, points in series for _, v in points if math.isfinite(v)]
    if not values:
        out.append(f'<text x="{x0 + 10}" y="{y0 + h / 2}" font-size="12" fill="#c00">No data</text>')
        return out
    top = max(values) or 1.0
    px, py, pw, ph = x0 + 50, y0 + 30, w - 60, h - 70
    label = human(top, unit) if max(values) else "all 0"
    out.append(f'<text x="{x0 + 6}" y="{py + 8}" font-size="10" fill="#555">{html.escape(label)}</text>')
    out.append(f'<text x="{x0 + 6}" y="{py + ph}" font-size="10" fill="#555">0</text>')
    out.append(f'<line x1="{px}" y1="{py + ph}" x2="{px + pw}" y2="{py + ph}" stroke="#999"/>')
    for i, (name, points) in enumerate(series[:8]):
        colour = COLOURS[i % len(COLOURS)]
        coords = [f"{px + pw * (t - start) / (end - start):.1f},{py + ph - ph * max(v, 0) / top:.1f}"
                  for t, v in points if math.isfinite(v)]
        if len(coords) == 1:
            coords.append(coords[0])
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{" ".join(coords)}"/>')
        lx = x0 + 10 + (i % 2) * (w / 2 - 10)
        ly = y0 + h - 26 + (i // 2) * 12
        if ly < y0 + h - 2:
            out.append(f'<text x="{lx}" y="{ly}" font-size="10" fill="{colour}">{html.escape(name[:38])}</text>')
    return out


def render(prometheus, board, minutes):
    end = time.time()
    start = end - minutes * 60
    step = max(5, minutes * 60 // 120)
    width = 24 * CELL_W
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in board["panels"]) * ROW_H + 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif">',
             f'<rect width="{width}" height="{height}" fill="#f4f5f5"/>',
             f'<text x="10" y="24" font-size="16" font-weight="bold">{html.escape(board["title"])} '
             f'(last {minutes} min)</text>']
    for p in board["panels"]:
        g = p["gridPos"]
        series = []
        for t in p["targets"]:
            for s in query_range(prometheus, fill(t["expr"]), start, end, step):
                series.append((legend(t.get("legendFormat", ""), s["metric"]),
                               [(float(ts), float(v)) for ts, v in s["values"]]))
        # Stat panels are drawn as the line of their value too.
        parts += panel_svg(p, series, g["x"] * CELL_W, 34 + g["y"] * ROW_H, g["w"] * CELL_W, g["h"] * ROW_H - 4,
                           start, end)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prometheus", required=True)
    ap.add_argument("--minutes", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "docs/dashboards"))
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted((ROOT / "grafana/dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        target = out / f"{path.stem}.svg"
        target.write_text(render(args.prometheus.rstrip("/"), board, args.minutes))
        print(f"wrote {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
