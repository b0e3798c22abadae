"""Fixtures for the interop suite: the real gripway binary on free ports, and origins
written with Python's standard HTTP server. Every wait is bounded."""

import os
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("GRIPWAY_BIN", ROOT / "target" / "debug" / "gripway"))


class Gripway:
    """A running gripway process; its listeners are read from its start-up log."""

    def __init__(self, args):
        if not BIN.exists():
            raise RuntimeError(f"gripway binary not found at {BIN}; build it first")
        # an MQTT listener on a free port too (the demo's default, 1883, would make two
        # servers collide), unless the arguments choose one (or `off`)
        mqtt = [] if any(a.startswith("--mqtt-port") for a in args) else ["--mqtt-port", "127.0.0.1:0"]
        cmd = [str(BIN), "--port", "127.0.0.1:0", "--publish-port", "127.0.0.1:0",
               "--admin-port", "127.0.0.1:0", "--log-level", "info", *mqtt, *args]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.log = []
        # the first TLS listener (`--tls-port`), if any: its line, "clients (TLS) on ADDR",
        # comes before the plain listener's and does not match "clients on "
        self.tls_addr = None
        # the first MQTT listener, if any: its line, "MQTT on ADDR", comes before "clients on"
        self.mqtt_addr = None
        found = {}
        deadline = time.time() + 20
        patterns = {"addr": r"clients on (\S+)", "publish": r"publish API on (\S+)",
                    "admin": r"metrics on http://([^/\s]+)"}
        while len(found) < 3:
            if time.time() > deadline:
                self.stop()
                raise RuntimeError("gripway did not start:\n" + "\n".join(self.log))
            line = self.proc.stderr.readline()
            if not line:
                self.stop()
                raise RuntimeError("gripway exited:\n" + "\n".join(self.log))
            self.log.append(line.rstrip())
            m = re.search(r"clients \(TLS\) on (\S+)", line)
            if m and self.tls_addr is None:
                self.tls_addr = m.group(1)
            m = re.search(r"MQTT on (\S+)", line)
            if m and self.mqtt_addr is None:
                self.mqtt_addr = m.group(1)
            for name, pat in patterns.items():
                m = re.search(pat, line)
                if m:
                    found[name] = m.group(1)
        self.addr, self.publish_addr, self.admin_addr = found["addr"], found["publish"], found["admin"]
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stderr:
            self.log.append(line.rstrip())

    def url(self, path):
        return f"http://{self.addr}{path}"

    @property
    def control_uri(self):
        return f"http://{self.publish_addr}"

    def metric(self, sample):
        import requests
        text = requests.get(f"http://{self.admin_addr}/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            if name == sample:
                return float(value)
        return None

    def wait_metric(self, sample, want, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.metric(sample) == want:
                return True
            time.sleep(0.02)
        return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


class Origin:
    """An origin on a free port; `handler(request)` returns (status, headers, body)."""

    def __init__(self, handler):
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = {"method": self.command, "path": self.path,
                       "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                outer.requests.append(req)
                status, headers, out = handler(req)
                out = out.encode() if isinstance(out, str) else out
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = _serve

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.addr = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def start_gripway():
    started = []

    def start(*args):
        g = Gripway(list(args))
        started.append(g)
        return g

    yield start
    for g in started:
        g.stop()


@pytest.fixture
def start_origin():
    started = []

    def start(handler):
        o = Origin(handler)
        started.append(o)
        return o

    yield start
    for o in started:
        o.stop()


@pytest.fixture
def tmp_config(tmp_path):
    def write(text):
        p = tmp_path / "gripway.toml"
        p.write_text(text)
        return str(p)
    return write
