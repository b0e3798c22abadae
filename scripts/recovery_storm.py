#!/usr/bin/env python3
"""Recovery speed (issue 8): a reconnect storm of SSE clients that all missed the same items,
against Gripway (which serves them from its own history) and Pushpin 1.36 (whose origin must
serve them), alternately, each on fresh processes, in one run.

Not run in CI. Python 3.11, standard library only (HTTP helpers from scripts/soaklib/wire.py).
Everything is on 127.0.0.1, on free ports; every wait is bounded.

Usage:

    cargo build --release -p gripway
    scripts/recovery_storm.py                        # 1,000 clients, 100 missed items, 3 rounds
    scripts/recovery_storm.py --clients 200 --missed 20 --rounds 1 --servers gripway

Each round, for each server:

1. An origin (this script, `origin` subcommand, its own process so its CPU is counted apart)
   answers `GET /sse/<ch>` with `text/event-stream`, `Grip-Hold: stream`, `Grip-Channel: <ch>`
   and `: ready`. For Gripway it knows nothing of history. For Pushpin it is the origin a
   Pushpin user must write: it keeps its own list of items (the publisher stores each item
   there with `POST /append` before publishing it) and answers a request carrying
   `Last-Event-ID` with the events after that id in its initial body, then the hold.
2. N SSE clients connect to channel `storm` and are confirmed live (id-less probe items until
   every client saw one), then item e0 reaches all of them.
3. All N disconnect. Items e1..eM are published (one request; Gripway keeps them, with
   `[history] max_items` raised to M + 28 so that e0, the clients' last id, is still kept).
4. The storm: all N reconnect at once with `Last-Event-ID: e0`. Measured: the time until every
   client has received eM, each client's own catch-up time (p50, p99), and the CPU time
   (utime + stime from /proc) of the server (every Pushpin process) and of the origin between
   the storm's start and its end. A client whose connection fails retries after 100 ms, as
   EventSource would; retries are counted.
5. Every client's events must be exactly e1..eM, in order, once each (a `history-gap` event
   or any other id counts as wrong).

Prints one line per storm and a Markdown table of medians; `--json FILE` keeps every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from soaklib.wire import Closed, body_chunks, close_writer, read_head  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHANNEL = "storm"
TICK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def event(n: int) -> str:
    return f"id: e{n}\ndata: e{n}\n\n"


# ---------------------------------------------------------------- the origin (own process)

class OriginServer:
    def __init__(self, keeps_items: bool) -> None:
        self.keeps_items = keeps_items
        self.items: list[tuple[str, bytes]] = []  # (id, SSE event), in publish order
        self.index: dict[str, int] = {}

    def after(self, last_id: str) -> bytes:
        start = self.index.get(last_id, -1) + 1
        return b"".join(e for _, e in self.items[start:])

    def answer(self, method: str, path: str, headers: dict, body: bytes) -> tuple[list, bytes]:
        if method == "POST" and path == "/append":
            for item_id, content in json.loads(body):
                self.index[item_id] = len(self.items)
                self.items.append((item_id, content.encode()))
            return [("Content-Type", "text/plain")], b"ok\n"
        if path.startswith("/sse/"):
            ch = path[len("/sse/"):].split("?")[0]
            out = b": ready\n\n"
            last = headers.get("last-event-id")
            if self.keeps_items and last is not None:
                out += self.after(last)
            return [("Content-Type", "text/event-stream"), ("Grip-Hold", "stream"),
                    ("Grip-Channel", ch)], out
        return [("Content-Type", "text/plain")], b"ready\n"

    async def serve_conn(self, reader, writer) -> None:
        try:
            while True:
                try:
                    raw = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                lines = raw.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = b""
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    body = b"".join([c async for c in body_chunks(reader, headers)])
                elif int(headers.get("content-length") or 0):
                    body = await reader.readexactly(int(headers["content-length"]))
                extra, out = self.answer(method, path, headers, body)
                head = "HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in extra)
                head += f"Content-Length: {len(out)}\r\n\r\n"
                writer.write(head.encode() + out)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, Closed, asyncio.IncompleteReadError):
            return
        finally:
            close_writer(writer)


async def origin_main(port: int, keeps_items: bool) -> None:
    origin = OriginServer(keeps_items)
    server = await asyncio.start_server(origin.serve_conn, "127.0.0.1", port, backlog=4096)
    print(f"listening {port}", flush=True)
    async with server:
        await asyncio.sleep(7200)  # ends by itself


# ---------------------------------------------------------------- servers under test

def proc_cpu(pids: list[int]) -> float:
    """utime + stime of these processes, in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def session_pids(sid: int) -> list[int]:
    """Every live process of session `sid` (Pushpin's runner and the services it starts)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # field 6 of stat: session id
            out.append(int(entry))
    return out


class Process:
    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)


class Origin(Process):
    def __init__(self, keeps_items: bool) -> None:
        port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "origin", "--port", str(port)] + (["--keeps-items"] if keeps_items else []),
            stdout=subprocess.PIPE, text=True, start_new_session=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening"):
            self.stop()
            raise RuntimeError(f"origin did not start: {line!r}")
        self.addr = f"127.0.0.1:{port}"

    def pids(self) -> list[int]:
        return [self.proc.pid]

    def append(self, items: list[tuple[str, str]]) -> None:
        post(f"http://{self.addr}/append", json.dumps(items).encode())


class Gripway(Process):
    name = "gripway"

    def __init__(self, binary: str, origin: Origin, max_items: int, workdir: Path) -> None:
        conf = workdir / "gripway.toml"
        conf.write_text(f"[history]\nmax_items = {max_items}\n")
        self.max_items = max_items
        self.proc = subprocess.Popen(
            [binary, "--port", "127.0.0.1:0", "--publish-port", "127.0.0.1:0", "--admin-port", "127.0.0.1:0",
             "--log-level", "info", "--config", str(conf), "--route", f"* {origin.addr}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        found, deadline = {}, time.monotonic() + 20
        pats = {"addr": r"clients on (\S+)", "publish": r"publish API on (\S+)", "admin": r"metrics on http://([^/\s]+)"}
        while len(found) < 3:
            line = self.proc.stderr.readline()
            if not line or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("gripway did not start")
            for k, p in pats.items():
                m = re.search(p, line)
                if m:
                    found[k] = m.group(1)
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
        self.addr, self.publish_addr, self.admin = found["addr"], found["publish"], found["admin"]

    def pids(self) -> list[int]:
        return [self.proc.pid]

    def metric(self, sample: str):
        with urllib.request.urlopen(f"http://{self.admin}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                name, _, value = line.rpartition(" ")
                if name == sample:
                    return float(value)
        return None

    def wait_metric(self, sample: str, want: float, limit: float = 20) -> None:
        deadline = time.monotonic() + limit
        while self.metric(sample) != want:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{sample} never reached {want} (now {self.metric(sample)})")
            time.sleep(0.05)

    def settle_subscribers(self, n: int) -> None:
        self.wait_metric("gripway_subscriptions", float(n))

    def settle_history(self, n: int) -> None:
        self.wait_metric("gripway_history_items", float(min(n, self.max_items)))


class Pushpin(Process):
    name = "pushpin"

    def __init__(self, binary: str, origin: Origin, workdir: Path) -> None:
        d = workdir / "pushpin"
        (d / "run").mkdir(parents=True)
        (d / "log").mkdir()
        port, pub, pull, sub, cmd = (free_port() for _ in range(5))
        self.addr, self.publish_addr = f"127.0.0.1:{port}", f"127.0.0.1:{pub}"
        edits = {"rundir": str(d / "run"), "logdir": str(d / "log"), "ipc_prefix": f"storm{os.getpid()}-",
                 "services": "condure,zurl,pushpin-proxy,pushpin-handler", "http_port": self.addr,
                 "push_in_spec": f"tcp://127.0.0.1:{pull}", "push_in_sub_specs": f"tcp://127.0.0.1:{sub}",
                 "push_in_http_port": str(pub), "command_spec": f"tcp://127.0.0.1:{cmd}",
                 # its rate limits off, as in BENCHMARKS.md (on, they drop deliveries)
                 "message_rate": "0", "message_hwm": "0"}
        out = []
        for line in Path("/etc/pushpin/pushpin.conf").read_text().splitlines():
            key = line.split("=", 1)[0]
            if key in edits and not line.startswith("#"):
                if key == "command_spec" and not line.split("=", 1)[1].startswith("tcp://"):
                    out.append(line)
                    continue
                line = f"{key}={edits.pop(key)}"
            out.append(line)
            if line.strip() == "[proxy]":  # Debian points the proxy at a system zurl: our own
                out += ["zurl_out_specs=ipc://{rundir}/{ipc_prefix}zurl-in",
                        "zurl_out_stream_specs=ipc://{rundir}/{ipc_prefix}zurl-in-stream",
                        "zurl_in_specs=ipc://{rundir}/{ipc_prefix}zurl-out"]
        if edits:
            raise RuntimeError(f"pushpin.conf keys not found: {edits}")
        (d / "pushpin.conf").write_text("\n".join(out) + "\n")
        (d / "routes").write_text(f"* {origin.addr}\n")
        self.out = open(d / "log" / "runner.out", "wb")
        self.proc = subprocess.Popen([binary, f"--config={d / 'pushpin.conf'}"], stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                post(f"http://{self.publish_addr}/publish/", json.dumps(
                    {"items": [{"channel": "startup", "formats": {"http-stream": {"content": "x\n"}}}]}).encode())
                with urllib.request.urlopen(f"http://{self.addr}/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("pushpin did not come up")
            time.sleep(0.2)

    def pids(self) -> list[int]:
        return session_pids(self.proc.pid)

    def settle_subscribers(self, n: int) -> None:
        time.sleep(2)  # no gauge to read: time for the handler to drop the subscriptions

    def settle_history(self, n: int) -> None:
        pass  # nothing kept: the origin has the items (appended before the publish)


def post(url: str, body: bytes) -> None:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        if r.status != 200:
            raise RuntimeError(f"POST {url}: {r.status}")


# ---------------------------------------------------------------- clients

class Client:
    __slots__ = ("body", "writer", "done", "retries", "took", "probe", "why")

    def __init__(self) -> None:
        self.body = bytearray()
        self.writer = None
        self.done = asyncio.Event()
        self.retries = 0
        self.took = None
        self.probe = False
        self.why: dict[str, int] = {}  # why connections were retried

    async def connect(self, addr: str, last_id: str | None, until: bytes | None, started: float,
                      deadline: float, ready: asyncio.Event | None = None) -> None:
        """One connection (retried on failure until `deadline`); reads until `until` is in
        the body, then keeps the connection open (a live client)."""
        host, port = addr.rsplit(":", 1)
        extra = f"Last-Event-ID: {last_id}\r\n" if last_id else ""
        req = f"GET /sse/{CHANNEL} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{extra}\r\n".encode()
        while True:
            try:
                reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 20)
                self.writer = writer
                writer.write(req)
                status, headers = await read_head(reader)
                if status != 200:
                    text = b"".join([d async for d in body_chunks(reader, headers)])[:80]
                    raise Closed(f"status {status} {text.decode('latin-1').strip()!r}")
                self.body = bytearray()
                async for data in body_chunks(reader, headers):
                    before = len(self.body)
                    self.body += data
                    if ready is not None and not ready.is_set() and b": ready\n\n" in self.body:
                        ready.set()
                    if b": probe" in data:
                        self.probe = True
                    if until is not None and self.took is None and until in self.body[max(0, before - len(until)):]:
                        self.took = time.monotonic() - started
                        self.done.set()
                raise Closed("stream ended")
            except (OSError, Closed, asyncio.IncompleteReadError) as e:
                if self.writer is not None:
                    close_writer(self.writer)
                if self.done.is_set() or time.monotonic() > deadline:
                    return
                if isinstance(e, Closed) and str(e) == "stream ended" and until is None:
                    return
                self.retries += 1
                why = type(e).__name__ + (f": {e}" if isinstance(e, Closed) else "")
                self.why[why] = self.why.get(why, 0) + 1
                await asyncio.sleep(0.1)
            except asyncio.CancelledError:
                if self.writer is not None:
                    close_writer(self.writer)
                raise

    def ids(self) -> list[str]:
        """The ids of the events received, and any named event (a history-gap) as `event:NAME`."""
        out = []
        for line in self.body.decode("latin-1").split("\n"):
            if line.startswith("id: "):
                out.append(line[4:])
            elif line.startswith("event: "):
                out.append("event:" + line[7:])
        return out


async def wait_all(events, limit: float) -> bool:
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), limit)
        return True
    except asyncio.TimeoutError:
        return False


async def run_storm(server, origin: Origin, clients_n: int, missed: int) -> dict:
    loop_deadline = time.monotonic() + 300
    publish_url = f"http://{server.publish_addr}/publish/"

    def publish(items):  # (id or None, content)
        body = {"items": [{"channel": CHANNEL, **({"id": i} if i else {}),
                           "formats": {"http-stream": {"content": c}}} for i, c in items]}
        post(publish_url, json.dumps(body).encode())

    # 1. connect and confirm live
    clients = [Client() for _ in range(clients_n)]
    readies = [asyncio.Event() for _ in clients]
    sem = asyncio.Semaphore(100)

    async def first(c, ready):
        async with sem:
            t = asyncio.ensure_future(c.connect(server.addr, None, b"data: e0\n", time.monotonic(), loop_deadline, ready))
            await ready.wait()
        return t

    tasks = await asyncio.wait_for(asyncio.gather(*(first(c, r) for c, r in zip(clients, readies))), 120)
    for _ in range(30):
        await asyncio.to_thread(publish, [(None, ": probe\n\n")])
        await asyncio.sleep(1)
        if all(c.probe for c in clients):
            break
    else:
        raise RuntimeError(f"{sum(not c.probe for c in clients)} clients never confirmed live")
    await asyncio.to_thread(origin.append, [("e0", event(0))])
    await asyncio.to_thread(publish, [("e0", event(0))])
    if not await wait_all([c.done for c in clients], 30):
        raise RuntimeError("e0 did not reach every client")

    # 2. everyone leaves; the missed items are published
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.to_thread(server.settle_subscribers, 0)
    items = [(f"e{n}", event(n)) for n in range(1, missed + 1)]
    await asyncio.to_thread(origin.append, items)
    await asyncio.to_thread(publish, items)
    await asyncio.to_thread(server.settle_history, missed + 1)
    await asyncio.sleep(1)

    # 3. the storm
    clients = [Client() for _ in range(clients_n)]
    until = f"data: e{missed}\n".encode()
    server_pids, origin_pids = server.pids(), origin.pids()
    cpu0 = (proc_cpu(server_pids), proc_cpu(origin_pids), resource.getrusage(resource.RUSAGE_SELF))
    started = time.monotonic()
    storm_deadline = started + 120
    tasks = [asyncio.ensure_future(c.connect(server.addr, "e0", until, started, storm_deadline)) for c in clients]
    complete = await wait_all([c.done for c in clients], 120)
    elapsed = time.monotonic() - started
    cpu1 = (proc_cpu(server_pids), proc_cpu(origin_pids), resource.getrusage(resource.RUSAGE_SELF))
    await asyncio.sleep(0.2)  # anything extra (a duplicate) would come right after
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    want = [f"e{n}" for n in range(1, missed + 1)]
    wrong = sum(c.ids() != want for c in clients)
    took = sorted(c.took for c in clients if c.took is not None)
    why: dict[str, int] = {}
    for c in clients:
        for k, v in c.why.items():
            why[k] = why.get(k, 0) + v
    return {
        "server": server.name, "clients": clients_n, "missed": missed,
        "caught_up": len(took), "complete": complete, "wrong": wrong,
        "retries": sum(c.retries for c in clients), "retry_reasons": why,
        "seconds": round(elapsed, 3),
        "p50_s": round(statistics.median(took), 3) if took else None,
        "p99_s": round(took[max(0, int(len(took) * 0.99) - 1)], 3) if took else None,
        "server_cpu_s": round(cpu1[0] - cpu0[0], 3),
        "origin_cpu_s": round(cpu1[1] - cpu0[1], 3),
        "clients_cpu_s": round((cpu1[2].ru_utime + cpu1[2].ru_stime) - (cpu0[2].ru_utime + cpu0[2].ru_stime), 3),
    }


def one(kind: str, a) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="recovery-storm-"))
    origin = Origin(keeps_items=(kind == "pushpin"))
    server = None
    try:
        if kind == "gripway":
            server = Gripway(a.gripway, origin, a.max_items or a.missed + 28, workdir)
        else:
            server = Pushpin(a.pushpin, origin, workdir)
        return asyncio.run(run_storm(server, origin, a.clients, a.missed))
    finally:
        if server is not None:
            server.stop()
            if getattr(server, "out", None):
                server.out.close()
        origin.stop()
        if os.environ.get("KEEP_LOGS"):
            log(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def table(results: list[dict]) -> str:
    rows = ["| server | all caught up, s | client p50, s | client p99, s | server CPU, s | origin CPU, s "
            "| server + origin CPU, s | load generator CPU, s | wrong | retries |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name in ("gripway", "pushpin"):
        rs = [r for r in results if r["server"] == name]
        if not rs:
            continue

        def med(k):
            xs = [r[k] for r in rs if r[k] is not None]
            return statistics.median(xs) if xs else float("nan")
        total = statistics.median([r["server_cpu_s"] + r["origin_cpu_s"] for r in rs])
        rows.append(f"| {name} | {med('seconds'):.3f} | {med('p50_s'):.3f} | {med('p99_s'):.3f} | "
                    f"{med('server_cpu_s'):.2f} | {med('origin_cpu_s'):.2f} | {total:.2f} | {med('clients_cpu_s'):.2f} | "
                    f"{sum(r['wrong'] for r in rs)} | {sum(r['retries'] for r in rs)} |")
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd")
    o = sub.add_parser("origin")
    o.add_argument("--port", type=int, required=True)
    o.add_argument("--keeps-items", action="store_true")
    p.add_argument("--gripway", default=str(ROOT / "target" / "release" / "gripway"))
    p.add_argument("--pushpin", default=shutil.which("pushpin") or "/usr/bin/pushpin")
    p.add_argument("--servers", default="gripway,pushpin")
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--missed", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--max-items", type=int, help="Gripway's [history] max_items [missed + 28, so "
                   "that the clients' last id is still kept; at the default 100 a client 100 behind gets a gap]")
    p.add_argument("--json")
    a = p.parse_args()
    if a.cmd == "origin":
        asyncio.run(origin_main(a.port, a.keeps_items))
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * a.clients + 1000)), hard))
    results = []
    for rnd in range(1, a.rounds + 1):
        for kind in a.servers.split(","):
            r = one(kind, a)
            r["round"] = rnd
            results.append(r)
            log(json.dumps(r))
    print(table(results))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1) + "\n")
    bad = [r for r in results if not r["complete"] or r["wrong"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
