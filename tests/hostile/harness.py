"""The hostile battery's harness: one gripway process per test module (the real binary, via
tests/conftest.py's `Gripway`), a steerable origin, a raw-socket origin that misbehaves on
purpose, and the CANARY: an SSE subscriber on channel `canary` plus a publisher that posts a
numbered message to it every 100 ms for the whole module. After each heavy case and at the end
of the module the canary must have received every acknowledged message, in order, with no gap
and no duplicate, the process must be alive and its RSS bounded.

Every wait is bounded; every socket is on a free port. Raw malformed bytes go through asyncio
streams (`exchange`), so thousands of hostile connections can be held open cheaply."""

import asyncio
import base64
import hashlib
import importlib.util
import json
import os
import re
import resource
import socket
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Reuse the suite's process and origin helpers (tests/conftest.py), loaded under a private name
# so that pytest's own import of that conftest is untouched.
_spec = importlib.util.spec_from_file_location("_gripway_suite_conftest", ROOT / "tests" / "conftest.py")
_suite = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_suite)
Gripway = _suite.Gripway
Origin = _suite.Origin
# The standard library's listen backlog of 5 drops origin connections under a burst of
# clients; the battery tests gripway, not that backlog.
_suite.ThreadingHTTPServer.request_queue_size = 1024

# Short limits so the battery finishes quickly; the documented answers do not depend on them.
HEAD_TIMEOUT_S = 3.0
RESPONSE_TIMEOUT_S = 1.5
# A bound on the process's resident memory for the whole battery (debug build, 10k sockets).
RSS_LIMIT_MB = 300
# Safety net for this shared machine: an allocation past this fails (and kills the process)
# instead of taking the machine's memory.
DATA_LIMIT_BYTES = 1536 * 1024 * 1024
# The canary must see each message within this long of its acknowledgement.
CANARY_MAX_LATENCY_S = 3.0

HS_SECRET = "battery-hs256-secret"
PUBLISH_TOKEN = "battery-publish-token"


def raise_nofile():
    """Raises this process's open-file soft limit to the hard limit (thousands of sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def status_mb(pid, field):
    """A size from /proc/<pid>/status (VmRSS, VmData...) in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def rss_mb(pid):
    return status_mb(pid, "VmRSS")


def data_mb(pid):
    """Private writable memory reserved, touched or not: a reservation shows here first."""
    return status_mb(pid, "VmData")


def _clk_tck():
    return os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU time of `pid` so far, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _clk_tck()


# ---------------------------------------------------------------------------------------------
# Origins


def steerable_origin(start=Origin):
    """An origin whose answer is chosen by the request path:
    /stream/<ch>        SSE stream hold on <ch>
    /poll/<ch>          long-poll (response hold) on <ch>, JSON timeout body {"messages": []}
    /hold-none, /hold-empty, /hold-separators   Grip-Hold: response on no channel
    /ws/...             WebSocket-over-HTTP: accepts OPEN, acknowledges everything else
                        (under /ws/slow, only after 4 s; /ws/sub/<ch> subscribes to <ch>)
    anything else       200 "ok"
    """

    def handle(req):
        path = req["path"]
        if path.startswith("/stream/"):
            ch = path[len("/stream/"):]
            return 200, [("Content-Type", "text/event-stream"), ("Grip-Hold", "stream"),
                         ("Grip-Channel", ch)], ""
        if path.startswith("/poll/"):
            ch = path[len("/poll/"):]
            return 200, [("Content-Type", "application/json"), ("Grip-Hold", "response"),
                         ("Grip-Channel", ch), ("Grip-Timeout", "60")], '{"messages": []}\n'
        if path == "/hold-none":
            return 200, [("Grip-Hold", "response")], "held on nothing\n"
        if path == "/hold-empty":
            return 200, [("Grip-Hold", "response"), ("Grip-Channel", "")], "held on nothing\n"
        if path == "/hold-separators":
            return 200, [("Grip-Hold", "response"), ("Grip-Channel", " , ,")], "held on nothing\n"
        if path.startswith("/ws/sub/") and req["body"].startswith(b"OPEN"):
            ch = path[len("/ws/sub/"):]
            sub = ('c:{"type": "subscribe", "channel": "%s"}' % ch).encode()
            return 200, [("Content-Type", "application/websocket-events"),
                         ("Sec-WebSocket-Extensions", "grip")], (
                b"OPEN\r\nTEXT %X\r\n%s\r\n" % (len(sub), sub))
        if path.startswith("/ws/"):
            if path.startswith("/ws/slow") and not req["body"].startswith(b"OPEN"):
                time.sleep(4)  # an origin slow to take client messages
            events = b"OPEN\r\n" if req["body"].startswith(b"OPEN") else b""
            return 200, [("Content-Type", "application/websocket-events")], events
        return 200, [("Content-Type", "text/plain")], "ok\n"

    return start(handle)


class RawOrigin:
    """An origin that misbehaves on purpose, by path:
    /raw/die-mid-headers  half a status line and headers, then closes
    /raw/garbage          bytes that are not HTTP, then closes
    /raw/silent           reads the request and never answers
    /raw/ws-stall         accepts a WebSocket, then never reads from it
    Counts the requests it saw."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.addr = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.paths = []
        self.held = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(10)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    conn.close()
                    return
                data += chunk
        except OSError:
            conn.close()
            return
        path = data.split(b" ", 2)[1].decode(errors="replace")
        self.paths.append(path)
        if path.startswith("/raw/die-mid-headers"):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/pl")
            conn.close()
        elif path.startswith("/raw/garbage"):
            conn.sendall(b"\x00\xff\xfeSMTP READY\r\n\x16\x03\x01 not http at all\r\n\r\n")
            conn.close()
        elif path.startswith("/raw/ws-stall"):
            key = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", data)
            accept = base64.b64encode(hashlib.sha1(
                key.group(1) + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            self.held.append(conn)
        else:  # silent: keep the connection open, never answer
            self.held.append(conn)

    def stop(self):
        self.stopped = True
        self.sock.close()
        for c in self.held:
            c.close()


# ---------------------------------------------------------------------------------------------
# The canary


class Canary:
    """Publishes `data: N` to channel `canary` every `period` seconds and reads them back from
    one SSE subscriber held through the proxy."""

    def __init__(self, gw, period=0.1, token=None):
        self.gw = gw
        self.period = period
        self.token = token
        self.acked = []  # (n, time acknowledged)
        self.publish_errors = []
        self.received = []  # (n, time received)
        self.stop_flag = threading.Event()
        self.sub_error = None
        self._sock = socket.create_connection(tuple(_split(gw.addr)), timeout=10)
        self._sock.sendall(b"GET /stream/canary HTTP/1.1\r\nHost: canary\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self._sock.recv(4096)
            if not chunk:
                raise RuntimeError(f"canary subscriber refused: {head!r}")
            head += chunk
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"canary subscriber refused: {head!r}")
        self._buf = head.partition(b"\r\n\r\n")[2]
        if not gw.wait_metric("gripway_subscriptions", 1.0, timeout=10):
            raise RuntimeError("canary subscription never registered")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._writer = threading.Thread(target=self._publish, daemon=True)
        self._reader.start()
        self._writer.start()

    def _read(self):
        self._sock.settimeout(0.5)
        pat = re.compile(rb"data: (\d+)\n\n")
        while True:
            try:
                chunk = self._sock.recv(65536)
            except socket.timeout:
                if self.stop_flag.is_set() and self._drained():
                    return
                continue
            except OSError as e:
                self.sub_error = f"canary subscriber socket failed: {e}"
                return
            if not chunk:
                self.sub_error = "canary subscriber connection closed by gripway"
                return
            self._buf += chunk
            now = time.time()
            last = 0
            for m in pat.finditer(self._buf):
                self.received.append((int(m.group(1)), now))
                last = m.end()
            self._buf = self._buf[last:]

    def _drained(self):
        return len(self.received) >= len(self.acked)

    def _publish(self):
        import http.client
        host, port = _split(self.gw.publish_addr)
        conn = None
        n = 0
        next_at = time.time()
        while not self.stop_flag.is_set():
            body = json.dumps({"items": [{"channel": "canary", "formats": {
                "http-stream": {"content": f"event: message\ndata: {n}\n\n"}}}]})
            headers = {"Content-Type": "application/json"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, port, timeout=5)
                conn.request("POST", "/publish/", body, headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    self.acked.append((n, time.time()))
                else:
                    self.publish_errors.append((n, resp.status))
            except Exception as e:  # a hung or refusing publish API is a failure to report
                self.publish_errors.append((n, repr(e)))
                conn = None
            n += 1
            next_at += self.period
            time.sleep(max(0.0, next_at - time.time()))

    def published(self):
        return len(self.acked)

    def wait_caught_up(self, timeout=5.0, want=None):
        """Waits until everything acknowledged so far (or the first `want`) has been
        received."""
        want = len(self.acked) if want is None else want
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.received) >= want or self.sub_error:
                break
            time.sleep(0.02)

    def check(self, context=""):
        """Asserts the canary is intact so far: every acknowledged message received in order,
        none lost, none duplicated, none late; the publish API answered every publish; the
        process is alive with bounded RSS."""
        deadline = time.time() + 2
        while not self.acked and not self.publish_errors and time.time() < deadline:
            time.sleep(0.05)
        # what was acknowledged when the check began: the publisher goes on meanwhile, and a
        # message acknowledged after the wait may not have been read yet
        acked = list(self.acked)
        self.wait_caught_up(want=len(acked))
        where = f" (after {context})" if context else ""
        assert self.acked or self.publish_errors, "the canary never published"
        assert self.gw.proc.poll() is None, f"gripway died{where}: exit {self.gw.proc.returncode}"
        assert not self.publish_errors, f"canary publishes failed{where}: {self.publish_errors[:5]}"
        assert self.sub_error is None, f"{self.sub_error}{where}"
        got = [n for n, _ in self.received]
        assert got[:len(acked)] == [n for n, _ in acked], (
            f"canary lost, duplicated or reordered messages{where}: "
            f"acked {len(acked)}, received {len(got)}; first difference at "
            f"{next((i for i, (a, b) in enumerate(zip(got, acked)) if a != b[0]), len(got))}")
        at = dict(self.received)
        late = [(n, round(at[n] - t, 2)) for n, t in acked if at[n] - t > CANARY_MAX_LATENCY_S]
        assert not late, f"canary messages arrived late{where}: {late[:10]}"
        rss = rss_mb(self.gw.proc.pid)
        assert rss < RSS_LIMIT_MB, f"gripway RSS {rss:.0f} MB{where}"

    def stop(self):
        self.stop_flag.set()
        self._writer.join(timeout=10)
        self.wait_caught_up()
        self._reader.join(timeout=2)
        try:
            self._sock.close()
        except OSError:
            pass


def _split(addr):
    host, _, port = addr.rpartition(":")
    return host, int(port)


# ---------------------------------------------------------------------------------------------
# The module environment


class Env:
    """One gripway process with the battery's config, its origins and its canary."""

    def __init__(self, tmp_dir, extra_config="", extra_routes=()):
        raise_nofile()
        self.origin = steerable_origin()
        self.raw = RawOrigin()
        cfg = Path(tmp_dir) / "gripway.toml"
        cfg.write_text(f"""
[server]
routes = [
{"".join(f'  "{r}",{chr(10)}' for r in extra_routes)}  "*,path_beg=/raw/ {self.raw.addr}",
  "*,path_beg=/ws/ {self.origin.addr},over_http",
  "* {self.origin.addr}",
]

[proxy]
request_head_timeout_ms = {int(HEAD_TIMEOUT_S * 1000)}
response_timeout_ms = {int(RESPONSE_TIMEOUT_S * 1000)}
connect_timeout_ms = 1000
{extra_config}
""")
        self.config_path = cfg
        self.gw = Gripway(["--config", str(cfg)])
        try:
            resource.prlimit(self.gw.proc.pid, resource.RLIMIT_DATA,
                             (DATA_LIMIT_BYTES, DATA_LIMIT_BYTES))
        except (OSError, ValueError):
            pass
        self.token = PUBLISH_TOKEN if "[publish.auth]" in extra_config else None
        self.canary = Canary(self.gw, token=self.token)

    @property
    def pid(self):
        return self.gw.proc.pid

    def errors(self, source, reason):
        v = self.gw.metric(f'gripway_errors_total{{source="{source}",reason="{reason}"}}')
        return v or 0.0

    def wait_errors(self, source, reason, at_least, timeout=5.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = self.errors(source, reason)
            if v >= at_least:
                return v
            time.sleep(0.05)
        return self.errors(source, reason)

    def publish(self, body, path="/publish/", headers=None, token="default", timeout=15):
        """POSTs `body` (bytes or str) to the publish API; returns (status, text)."""
        import http.client
        host, port = _split(self.gw.publish_addr)
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        h = {"Content-Type": "application/json"}
        if token == "default":
            token = self.token
        if token:
            h["Authorization"] = f"Bearer {token}"
        h.update(headers or {})
        try:
            chunked = not isinstance(body, (bytes, str))
            conn.request("POST", path, body, h, encode_chunked=chunked)
            resp = conn.getresponse()
            return resp.status, resp.read().decode(errors="replace")
        finally:
            conn.close()

    def close(self):
        try:
            self.canary.stop()
        finally:
            self.gw.stop()
            self.raw.stop()
            self.origin.stop()


# ---------------------------------------------------------------------------------------------
# Raw clients


async def exchange(addr, data, timeout=5.0, until_close=False, drip=None):
    """Sends `data` (bytes, or a list of bytes sent one after another) on a fresh connection
    and returns what came back: the head and whatever body arrived until the peer closed or,
    unless `until_close`, until a complete head plus a short grace. b"" if nothing came."""
    host, port = _split(addr)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    parts = data if isinstance(data, list) else [data]
    out = b""
    try:
        for p in parts:
            writer.write(p)
            await writer.drain()
            if drip:
                await asyncio.sleep(drip)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = await asyncio.wait_for(reader.read(65536),
                                               max(0.01, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            except ConnectionError:
                break
            if not chunk:
                break
            out += chunk
            if not until_close and b"\r\n\r\n" in out:
                deadline = min(deadline, time.monotonic() + 0.2)
    finally:
        writer.close()
    return out


def status_of(response):
    """The status code of a raw response, or None if there was none."""
    m = re.match(rb"HTTP/1\.[01] (\d{3})", response)
    return int(m.group(1)) if m else None


def run(coro):
    return asyncio.run(coro)
