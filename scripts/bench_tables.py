#!/usr/bin/env python3
"""Prints BENCHMARKS.md's tables from one scripts/bench.sh results directory: one table per
transport, a block of rows per scenario, Gripway beside Pushpin and the floor (fanbench's
limit-server) with the ratios Gripway/Pushpin and Gripway/floor. Medians over rounds.

Usage: scripts/bench_tables.py RESULTS_DIR
"""
import json
import pathlib
import re
import statistics
import sys

GROUPS = [
    ("Server-Sent Events, one channel", ["sse-1k-1ch", "sse-5k-1ch", "sse-15k-1ch"]),
    ("Server-Sent Events, 1,000 channels", ["sse-1k-1000ch", "sse-5k-1000ch", "sse-15k-1000ch"]),
    ("HTTP streaming, one channel", ["stream-1k-1ch", "stream-5k-1ch", "stream-15k-1ch"]),
    ("WebSockets (WebSocket-over-HTTP origin), one channel", ["ws-5k-1ch"]),
    ("Long-polling, one channel", ["poll-200-1ch", "poll-2k-1ch-1hz", "poll-2k-1ch"]),
    ("Burst: 1,000 messages at once to 1,000 SSE subscribers", ["burst-sse-1k"]),
    ("Publish API, no subscribers", ["publish-rate-1", "publish-rate-100"]),
]
FIGURES = [
    ("memory per idle connection, KiB", ("server", "rss_per_idle_connection_kib"), "{:.2f}"),
    ("CPU per delivery, µs", ("server", "cpu_us_per_delivery"), "{:.2f}"),
    ("latency p50, ms", ("latency_ms", "p50"), "{:.3g}"),
    ("latency p99, ms", ("latency_ms", "p99"), "{:.3g}"),
    ("deliveries/s", ("delivery", "deliveries_per_s"), "{:,.0f}"),
    ("loss, %", ("delivery", "loss_pct"), "{:.3g}"),
    ("subscribers ready/s", ("connect", "subscribers_per_s"), "{:,.0f}"),
    ("publish items/s", ("publish", "items_per_s"), "{:,.0f}"),
    ("publish request p99, ms", ("publish", "request_latency_ms", "p99"), "{:.3g}"),
]
SERVERS = ["gripway", "pushpin", "limit"]


def figure(report, path):
    if path[0] in ("delivery", "connect", "latency_ms", "server") and not report["config"].get("subscribers"):
        return None
    for key in path:
        report = report.get(key) if isinstance(report, dict) else None
    return report


def load(scenario_dir):
    runs = {}
    for f in scenario_dir.glob("*.r*.json"):
        m = re.fullmatch(r"(.+)\.r\d+\.json", f.name)
        if m:
            runs.setdefault(m.group(1), []).append(json.loads(f.read_text()))
    return runs


def median(runs, server, path):
    vals = [v for v in (figure(r, path) for r in runs.get(server, [])) if v is not None]
    return statistics.median(vals) if vals else None


def ratio(a, b):
    return "-" if a is None or not b else f"{a / b:.2f}"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = pathlib.Path(sys.argv[1])
    for title, scenarios in GROUPS:
        present = [s for s in scenarios if (root / s).is_dir()]
        if not present:
            continue
        print(f"### {title}\n")
        print("| scenario | figure | Gripway | Pushpin | floor | Gripway / Pushpin | Gripway / floor |")
        print("|---|---|---|---|---|---|---|")
        for s in present:
            data = load(root / s)
            first = True
            for label, path, fmt in FIGURES:
                g, p, f = (median(data, srv, path) for srv in SERVERS)
                if g is None and p is None and f is None:
                    continue
                show = lambda v: "-" if v is None else fmt.format(v)
                name = f"`{s}`" if first else ""
                first = False
                print(f"| {name} | {label} | **{show(g)}** | {show(p)} | {show(f)} | {ratio(g, p)} | {ratio(g, f)} |")
            done = " / ".join(
                f"{sum(bool(r.get('complete')) for r in data.get(srv, []))} of {len(data.get(srv, []))}"
                for srv in SERVERS
            )
            print(f"| | complete runs (G / P / floor) | {done} | | | | |")
        print()


if __name__ == "__main__":
    main()
