"""Raw HTTP/1.x over sockets for the differential suite: a client that shows exactly what a
client observes (status line, every header line in order, body bytes, chunk framing), an
incremental chunked decoder for held streams, and helpers to normalise two responses for
comparison. Every read has a deadline."""

import json
import socket
import time

# Headers whose differences are framing or identity, not behaviour.
IGNORED = {"date", "server", "connection", "transfer-encoding", "content-length", "keep-alive"}


class Head:
    def __init__(self, version, status, reason, headers, raw):
        self.version, self.status, self.reason = version, status, reason
        self.headers, self.raw = headers, raw  # headers: [(name, value)] in wire order

    def get(self, name):
        vals = self.get_all(name)
        return vals[0] if vals else None

    def get_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def comparable(self, extra_ignored=()):
        """Headers minus framing/identity ones, names lower-cased, grouped by name with the
        order of repeated headers kept."""
        skip = IGNORED | {n.lower() for n in extra_ignored}
        items = [(k.lower(), v) for k, v in self.headers if k.lower() not in skip]
        return sorted(items, key=lambda kv: kv[0])  # stable: same-name order kept

    def __repr__(self):
        return f"Head({self.status} {self.reason!r}, {self.headers!r})"


class ChunkedDecoder:
    """Feed raw bytes, get decoded data back; `done` once the last chunk is seen."""

    def __init__(self):
        self.buf = b""
        self.done = False
        self.chunk_sizes = []

    def feed(self, raw):
        self.buf += raw
        out = b""
        while not self.done:
            line_end = self.buf.find(b"\r\n")
            if line_end < 0:
                break
            size = int(self.buf[:line_end].split(b";")[0].strip(), 16)
            if size == 0:
                if self.buf.find(b"\r\n\r\n", line_end) == line_end:  # no trailers
                    self.buf = self.buf[line_end + 4:]
                    self.done = True
                    self.chunk_sizes.append(0)
                elif b"\r\n\r\n" in self.buf[line_end:]:
                    self.buf = self.buf[self.buf.index(b"\r\n\r\n", line_end) + 4:]
                    self.done = True
                    self.chunk_sizes.append(0)
                break
            need = line_end + 2 + size + 2
            if len(self.buf) < need:
                break
            assert self.buf[need - 2:need] == b"\r\n", f"bad chunk framing: {self.buf[:need]!r}"
            out += self.buf[line_end + 2:line_end + 2 + size]
            self.chunk_sizes.append(size)
            self.buf = self.buf[need:]
        return out


class Conn:
    """One client connection. `exchange` sends a request and reads the response head."""

    def __init__(self, addr, timeout=10.0):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.timeout = timeout
        self.buf = b""
        self.eof = False
        self.head = None
        self.decoder = None
        self.body = b""  # decoded body read so far

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            # a server may answer (413, 400) and close before reading a large body: its
            # answer is still there to read
            pass

    def _recv(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
        return data

    def request(self, method, path, headers=(), body=b"", version="HTTP/1.1", host="example.com",
                read=True):
        lines = [f"{method} {path} {version}", f"Host: {host}"]
        if body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        lines += [f"{k}: {v}" for k, v in headers]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        self.method = method
        return self.read_head() if read else None

    def read_head(self, limit=10.0):
        deadline = time.monotonic() + limit
        while b"\r\n\r\n" not in self.buf:
            data = self._recv(deadline)
            if not data:
                raise ConnectionError(f"closed before a response head: {self.buf!r}")
            self.buf += data
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        version, status, *reason = lines[0].split(" ", 2)
        headers = [tuple(p.strip() for p in line.split(":", 1)) for line in lines[1:]]
        self.head = Head(version, int(status), reason[0] if reason else "", headers, raw + b"\r\n\r\n")
        te = (self.head.get("transfer-encoding") or "").lower()
        self.decoder = ChunkedDecoder() if "chunked" in te else None
        return self.head

    def _bodyless(self):
        return self.method == "HEAD" or self.head.status in (204, 304) or 100 <= self.head.status < 200

    def _take(self, data):
        if self.decoder is not None:
            self.body += self.decoder.feed(data)
        else:
            self.body += data

    def body_done(self):
        if self._bodyless():
            return True
        if self.decoder is not None:
            return self.decoder.done
        cl = self.head.get("content-length")
        if cl is not None:
            return len(self.body) >= int(cl)
        return self.eof

    def read_body(self, limit=10.0):
        """The whole (decoded) body: chunked, Content-Length, or up to EOF."""
        deadline = time.monotonic() + limit
        if self.buf and not self._bodyless():
            data, self.buf = self.buf, b""
            self._take(data)
        while not self.body_done():
            self._take(self._recv(deadline))
        return self.body

    def read_until(self, needle, limit=10.0):
        """Decoded body bytes up to and including `needle` (stays connected)."""
        deadline = time.monotonic() + limit
        if self.buf:
            data, self.buf = self.buf, b""
            self._take(data)
        while needle not in self.body:
            if self.body_done():
                raise AssertionError(f"body ended without {needle!r}: {self.body!r}")
            self._take(self._recv(deadline))
        return self.body

    def read_raw_until_close(self, limit=10.0):
        """Raw bytes after the head until the server closes the connection."""
        deadline = time.monotonic() + limit
        raw, self.buf = self.buf, b""
        while not self.eof:
            raw += self._recv(deadline)
        return raw

    def read_raw_for(self, seconds):
        """Raw bytes after the head that arrive within `seconds` (stops early at EOF)."""
        deadline = time.monotonic() + seconds
        raw, self.buf = self.buf, b""
        try:
            while not self.eof:
                raw += self._recv(deadline)
        except TimeoutError:
            pass
        return raw

    def closed_within(self, limit):
        """True if the server closes the connection (EOF) within `limit` seconds; data that
        arrives meanwhile goes to the body."""
        deadline = time.monotonic() + limit
        try:
            while not self.eof:
                self._take(self._recv(deadline))
        except (TimeoutError, socket.timeout):
            return False
        return True


def fetch(addr, method, path, headers=(), body=b"", version="HTTP/1.1", limit=10.0):
    """One request on a fresh connection: (head, decoded body)."""
    with Conn(addr, timeout=limit) as c:
        head = c.request(method, path, headers=[("Connection", "close"), *headers], body=body,
                         version=version)
        return head, c.read_body(limit)


def publish_raw(publish_addr, body, method="POST", path="/publish/", headers=()):
    """POST (or other method) to the publish API: (head, body)."""
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    hdrs = [("Content-Type", "application/json"), *headers] if method == "POST" else list(headers)
    return fetch(publish_addr, method, path, headers=hdrs, body=body)


def stream_item(channel, content, **extra):
    return {"channel": channel, "formats": {"http-stream": {"content": content}}, **extra}
