"""The pieces the differential suite runs: a raw-socket origin (`Origin`, `Reply`), the real
Pushpin in a private directory on free ports (`Pushpin`), and `Target`, one server as a client
and a publisher see it. Fixtures wiring them up are in conftest.py."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import compat_http as ch

PUSHPIN_BIN = os.environ.get("PUSHPIN_BIN") or shutil.which("pushpin") or "/usr/bin/pushpin"
SERVER_HEADER = "X-Compat-Server"  # set by the client so the origin knows who proxied
DEAD_PREFIX = "/compat-dead/"  # routed to a port nobody listens on
READY_PATH = "/compat-ready"


# Routes with options, each under its own path (origin handlers registered with `route_at`).
PREFIX_ROUTE = "/compat-prefix/"      # prefix=pfx-: channels get "pfx-" in front
REPLACE_ROUTE = "/compat-replace/"    # replace_beg=/compat-replaced/: path rewritten
REPLACED = "/compat-replaced/"
NO_GRIP_ROUTE = "/compat-nogrip/"     # no_grip: instructions relayed, not acted on


def routes_for(origin_addr, dead_port):
    """The routes both servers get, in routes-file syntax (the more specific routes first)."""
    return [f"*,path_beg={DEAD_PREFIX} 127.0.0.1:{dead_port}",
            f"*,path_beg={PREFIX_ROUTE},prefix=pfx- {origin_addr}",
            f"*,path_beg={REPLACE_ROUTE},replace_beg={REPLACED} {origin_addr}",
            f"*,path_beg={NO_GRIP_ROUTE},no_grip {origin_addr}",
            f"* {origin_addr}"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Reply:
    """An origin response. `raw` (bytes) replaces the whole serialized response."""

    def __init__(self, status=200, reason="OK", headers=(), body=b"", raw=None):
        self.status, self.reason, self.headers = status, reason, list(headers)
        self.body = body.encode() if isinstance(body, str) else body
        self.raw = raw

    def encode(self, method):
        if self.raw is not None:
            return self.raw
        lines = [f"HTTP/1.1 {self.status} {self.reason}"]
        lines += [f"{k}: {v}" for k, v in self.headers]
        if not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in self.headers):
            lines.append(f"Content-Length: {len(self.body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if method == "HEAD" else head + self.body


class Origin:
    """Raw HTTP/1.1 origin with keep-alive; handlers are found by longest path prefix."""

    def __init__(self):
        self.handlers = {}
        self.requests = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.5)
        self.addr = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def route(self, handler):
        """Serve `handler` under a fresh unique path prefix, which is returned."""
        return self.route_at(f"/{uuid.uuid4().hex[:12]}/", handler)

    def route_at(self, prefix, handler):
        self.handlers[prefix] = handler
        return prefix

    def seen(self, prefix, server=None):
        with self.lock:
            return [r for r in self.requests if r["path"].startswith(prefix)
                    and (server is None or r["server"] == server)]

    def _accept(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(120)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                raw, buf = buf.split(b"\r\n\r\n", 1)
                lines = raw.decode("latin-1").split("\r\n")
                method, path, version = lines[0].split(" ", 2)
                headers = [tuple(p.strip() for p in ln.split(":", 1)) for ln in lines[1:]]
                hmap = {k.lower(): v for k, v in headers}
                body, buf = self._read_body(conn, hmap, buf)
                req = {"method": method, "path": path, "version": version, "headers": headers,
                       "h": hmap, "body": body, "server": hmap.get(SERVER_HEADER.lower())}
                with self.lock:
                    self.requests.append(req)
                handler = self._find(path)
                try:
                    reply = handler(req) if handler else Reply(404, "Not Found", body="no handler\n")
                except Exception as e:  # noqa: BLE001 - a test's handler bug, shown to the test
                    reply = Reply(500, "Origin Handler Failed", body=f"{type(e).__name__}: {e}\n")
                data = reply.encode(method)
                conn.sendall(data)
                closing = b"\r\nconnection: close\r\n" in data.split(b"\r\n\r\n")[0].lower() + b"\r\n"
                if closing or "close" in hmap.get("connection", "").lower() or version == "HTTP/1.0":
                    return
        except OSError:
            return
        finally:
            conn.close()

    @staticmethod
    def _read_body(conn, hmap, buf):
        if "chunked" in hmap.get("transfer-encoding", "").lower():
            dec, body = ch.ChunkedDecoder(), b""
            body += dec.feed(buf)
            while not dec.done:
                body += dec.feed(conn.recv(65536))
            return body, dec.buf
        n = int(hmap.get("content-length") or 0)
        while len(buf) < n:
            data = conn.recv(65536)
            if not data:
                break
            buf += data
        return buf[:n], buf[n:]

    def _find(self, path):
        if path == READY_PATH:  # a stream hold: proves proxy -> handler -> client works
            return lambda req: Reply(200, "OK", [("Content-Type", "text/plain"),
                                                 ("Grip-Hold", "stream"),
                                                 ("Grip-Channel", "compat-ready")], "ready\n")
        best = max((p for p in self.handlers if path.startswith(p)), key=len, default=None)
        return self.handlers.get(best)

    def stop(self):
        self.running = False
        self.sock.close()


class Pushpin:
    """The real Pushpin in a private directory, all ports free loopback ports."""

    def __init__(self, routes):
        self.dir = Path(tempfile.mkdtemp(prefix="compat-pushpin-"))
        (self.dir / "run").mkdir()
        (self.dir / "log").mkdir()
        port, pub = free_port(), free_port()
        pull, sub, cmd = free_port(), free_port(), free_port()
        self.addr, self.publish_addr = f"127.0.0.1:{port}", f"127.0.0.1:{pub}"
        prefix = f"cmp{os.getpid()}-{uuid.uuid4().hex[:6]}-"
        edits = {"rundir": str(self.dir / "run"), "logdir": str(self.dir / "log"),
                 "ipc_prefix": prefix, "services": "condure,zurl,pushpin-proxy,pushpin-handler",
                 "http_port": self.addr, "push_in_spec": f"tcp://127.0.0.1:{pull}",
                 "push_in_sub_specs": f"tcp://127.0.0.1:{sub}", "push_in_http_port": str(pub),
                 "command_spec": f"tcp://127.0.0.1:{cmd}", "message_rate": "0", "message_hwm": "0"}
        out = []
        for line in Path("/etc/pushpin/pushpin.conf").read_text().splitlines():
            key = line.split("=", 1)[0]
            if key in edits and not line.startswith("#"):
                if key == "command_spec" and not line.split("=", 1)[1].startswith("tcp://"):
                    out.append(line)
                    continue
                line = f"{key}={edits.pop(key)}"
            out.append(line)
            if line.strip() == "[proxy]":  # Debian's internal.conf points at a system zurl
                out += ["zurl_out_specs=ipc://{rundir}/{ipc_prefix}zurl-in",
                        "zurl_out_stream_specs=ipc://{rundir}/{ipc_prefix}zurl-in-stream",
                        "zurl_in_specs=ipc://{rundir}/{ipc_prefix}zurl-out"]
        assert not edits, f"pushpin.conf keys not found: {edits}"
        self.conf = self.dir / "pushpin.conf"
        self.conf.write_text("\n".join(out) + "\n")
        (self.dir / "routes").write_text("".join(f"{r}\n" for r in routes))
        self.out = open(self.dir / "log" / "runner.out", "wb")
        self.proc = subprocess.Popen([PUSHPIN_BIN, f"--config={self.conf}"], stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()

    def _wait_ready(self):
        deadline = time.monotonic() + 20
        item = {"items": [ch.stream_item("compat-startup", "x\n")]}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with ch.Conn(self.addr, timeout=2) as c:
                    ready = c.request("GET", READY_PATH, read=True, headers=[]).status == 200
                    ready = ready and c.read_until(b"ready\n", limit=2) == b"ready\n"
                head, _ = ch.publish_raw(self.publish_addr, item)
                if ready and head.status == 200:
                    return
            except (OSError, AssertionError, ValueError):
                pass
            time.sleep(0.1)
        logs = self.logs()
        self.stop()
        raise RuntimeError(f"pushpin did not come up:\n{logs}")

    def logs(self, lines=40):
        out = []
        for f in sorted((self.dir / "log").glob("*")):
            out.append(f"== {f.name}")
            out += f.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(out)

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        try:  # children may outlive the runner; the group id is the runner's pid
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=5)
        self.out.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Target:
    """One server under test, as a client and a publisher see it."""

    def __init__(self, name, addr, publish_addr):
        self.name, self.addr, self.publish_addr = name, addr, publish_addr

    def fetch(self, method, path, headers=(), **kw):
        return ch.fetch(self.addr, method, path, headers=[(SERVER_HEADER, self.name), *headers], **kw)

    def open(self, method, path, headers=(), version="HTTP/1.1", timeout=10.0):
        """A connection with the request sent and the response head read."""
        c = ch.Conn(self.addr, timeout=timeout)
        c.request(method, path, headers=[(SERVER_HEADER, self.name), *headers], version=version)
        return c

    def open_unread(self, method, path, headers=(), version="HTTP/1.1", timeout=10.0):
        """A connection with the request sent; the caller reads the head."""
        c = ch.Conn(self.addr, timeout=timeout)
        c.request(method, path, headers=[(SERVER_HEADER, self.name), *headers], version=version,
                  read=False)
        return c

    def publish(self, body, **kw):
        return ch.publish_raw(self.publish_addr, body, **kw)

    def publish_items(self, *items):
        head, body = self.publish({"items": list(items)})
        assert head.status == 200, (self.name, head, body)

    def __repr__(self):
        return f"Target({self.name})"


