#!/usr/bin/env python3
"""Draws BENCHMARKS.md's chart from fanbench results: p99 latency, CPU per delivery and memory
per idle connection against subscriber count (SSE on one channel, 1k / 5k / 15k) for Gripway,
Pushpin and the floor (fanbench's limit-server), as one SVG with three panels. Uses only
the standard library.

Usage: scripts/chart.py RESULTS_DIR [OUT.svg]
  RESULTS_DIR holds sse-1k-1ch/, sse-5k-1ch/, sse-15k-1ch/ with <server>.r<N>.json files, as
  scripts/bench.sh writes them; medians over rounds are plotted. OUT defaults to
  bench/chart.svg.
"""
import json
import pathlib
import re
import statistics
import sys

SCENARIOS = [("sse-1k-1ch", 1000), ("sse-5k-1ch", 5000), ("sse-15k-1ch", 15000)]
SERVERS = [("pushpin", "Pushpin 1.36", "#d95f02"), ("gripway", "Gripway", "#1b9e77"),
           ("limit", "floor (limit-server)", "#7570b3")]
PANELS = [
    ("latency p99, ms", lambda r: r["latency_ms"].get("p99")),
    ("CPU per delivery, µs", lambda r: r["server"].get("cpu_us_per_delivery")),
    ("memory per idle connection, KiB", lambda r: r["server"].get("rss_per_idle_connection_kib")),
]


def medians(results):
    """{server: {panel index: {subscribers: median}}}"""
    out = {}
    for scen, subs in SCENARIOS:
        d = results / scen
        if not d.is_dir():
            continue
        runs = {}
        for f in d.glob("*.r*.json"):
            m = re.fullmatch(r"(.+)\.r\d+\.json", f.name)
            if m:
                runs.setdefault(m.group(1), []).append(json.loads(f.read_text()))
        for server, reports in runs.items():
            for i, (_, get) in enumerate(PANELS):
                vals = [v for v in (get(r) for r in reports) if v is not None]
                if vals:
                    out.setdefault(server, {}).setdefault(i, {})[subs] = statistics.median(vals)
    return out


def nice_max(v):
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is at least v."""
    for exp in range(-2, 8):
        for step in (1, 2, 2.5, 5):
            top = step * 10 ** exp
            if top >= v:
                return top
    return v


def panel(x0, title, series, w=300, h=220):
    """One line chart at x offset x0; series: [(label, color, {subs: value})]."""
    left, top, pw, ph = x0 + 50, 40, w - 70, h - 80
    ymax = nice_max(max((v for _, _, pts in series for v in pts.values()), default=1) * 1.05)
    xs = [s for _, s in SCENARIOS]
    def px(s):
        return left + pw * (xs.index(s) / (len(xs) - 1))
    def py(v):
        return top + ph - ph * (v / ymax)
    parts = [f'<text x="{x0 + w / 2}" y="24" text-anchor="middle" font-weight="bold">{title}</text>',
             f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#333"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#333"/>']
    for k in range(5):
        v = ymax * k / 4
        y = py(v)
        label = f"{v:g}" if v < 1000 else f"{v / 1000:g}k"
        parts.append(f'<line x1="{left}" y1="{y}" x2="{left + pw}" y2="{y}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end" font-size="11">{label}</text>')
    for s in xs:
        parts.append(f'<text x="{px(s)}" y="{top + ph + 16}" text-anchor="middle" font-size="11">{s // 1000}k</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{top + ph + 34}" text-anchor="middle" font-size="11">SSE subscribers, one channel</text>')
    for label, color, pts in series:
        ordered = [(s, pts[s]) for s in xs if s in pts]
        if len(ordered) > 1:
            path = " ".join(f"{px(s):.1f},{py(v):.1f}" for s, v in ordered)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for s, v in ordered:
            parts.append(f'<circle cx="{px(s):.1f}" cy="{py(v):.1f}" r="3" fill="{color}"><title>{label}: {v:.3g}</title></circle>')
    return parts


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    results = pathlib.Path(sys.argv[1])
    out = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else "bench/chart.svg")
    data = medians(results)
    width = 300 * len(PANELS)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="270" '
             'font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="270" fill="white"/>']
    for i, (title, _) in enumerate(PANELS):
        series = [(label, color, data.get(key, {}).get(i, {})) for key, label, color in SERVERS]
        parts += panel(300 * i, title, series)
    x = 60
    for key, label, color in SERVERS:
        parts.append(f'<rect x="{x}" y="250" width="12" height="12" fill="{color}"/>')
        parts.append(f'<text x="{x + 16}" y="260">{label}</text>')
        x += 40 + 8 * len(label)
    parts.append("</svg>")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
