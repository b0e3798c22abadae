"""The soak test's GRIP origin: answers `/sse/<ch>`, `/stream/<ch>`, `/poll/<ch>` and
WebSocket-over-HTTP `/ws/<ch>` from the soak's own record of acknowledged items (see the
docstring of scripts/soak.py)."""

from __future__ import annotations

import asyncio
import json

from .wire import LOOPBACK, Closed, close_writer, parse_events, read_body, woh_event


class Origin:
    def __init__(self, soak) -> None:  # the soak: channels, stats, args
        self.soak = soak
        self.server = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, LOOPBACK, 0, limit=1 << 20)
        self.port = self.server.sockets[0].getsockname()[1]

    async def handle(self, reader, writer) -> None:
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 300)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await read_body(reader, headers) if ("content-length" in headers or "chunked" in headers.get("transfer-encoding", "")) else b""
                self.soak.stats.inc("origin_requests")
                writer.write(self.answer(method, target, headers, body))
                await writer.drain()
        except (ConnectionError, Closed, asyncio.IncompleteReadError):
            pass
        finally:
            close_writer(writer)

    @staticmethod
    def response(status: str, headers: list, body: bytes) -> bytes:
        head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
        return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    def answer(self, method: str, target: str, headers: dict, body: bytes) -> bytes:
        path, _, query = target.partition("?")
        if method == "POST" and path == "/mqtt":
            return self.mqtt_answer(body)
        parts = path.split("/")
        chans = self.soak.channels
        if len(parts) != 3 or parts[2] not in chans:
            return self.response("404 Not Found", [("Content-Type", "text/plain")], b"no\n")
        kind, ch = parts[1], chans[parts[2]]
        if method == "GET" and kind == "sse":
            return self.response(
                "200 OK",
                [("Content-Type", "text/event-stream"), ("Grip-Hold", "stream"), ("Grip-Channel", ch.name)],
                b": ready\n\n",
            )
        if method == "GET" and kind == "stream":
            return self.response(
                "200 OK",
                [("Content-Type", "text/plain"), ("Grip-Hold", "stream"), ("Grip-Channel", ch.name)],
                b"ready\n",
            )
        if method == "GET" and kind == "poll":
            self.soak.stats.inc("poll_requests")
            last = None
            for kv in query.split("&"):
                if kv.startswith("last="):
                    last = int(kv[5:])
            if last is None:
                return self.response("200 OK", [("Content-Type", "text/plain")], f"ready {ch.last_acked}\n".encode())
            items = ch.acked_after(last, 100)
            if items:
                text = "".join(f"{ch.name}-{s}\n" for s in items).encode()
                return self.response("200 OK", [("Content-Type", "text/plain")], text)
            grip_channel = ch.name if last == 0 else f"{ch.name}; prev-id={ch.name}-{last}"
            return self.response(
                "200 OK",
                [
                    ("Content-Type", "text/plain"),
                    ("Grip-Hold", "response"),
                    ("Grip-Channel", grip_channel),
                    ("Grip-Timeout", str(self.soak.args.poll_timeout)),
                ],
                b"timeout\n",
            )
        if method == "POST" and kind == "ws":
            if headers.get("connection-id") == "victim" or b"forged" in body:
                self.soak.stats.inc("forged_reached_origin")
            out = b""
            ext = []
            for ev in parse_events(body):
                if ev[0] == "OPEN":
                    sub = json.dumps({"type": "subscribe", "channel": ch.name}).encode()
                    out += b"OPEN\r\n" + woh_event("TEXT", b"c:" + sub) + woh_event("TEXT", b"m:ready")
                    ext = [("Sec-WebSocket-Extensions", "grip")]
                elif ev[0] == "CLOSE":
                    out += woh_event("CLOSE", ev[1])
            return self.response("200 OK", [("Content-Type", "application/websocket-events")] + ext, out)
        return self.response("405 Method Not Allowed", [("Content-Type", "text/plain")], b"no\n")

    def mqtt_answer(self, body: bytes) -> bytes:
        """MQTT-over-HTTP: every device may connect, and subscribe to the soak's channels by
        name (a filter is its channel); publishing is the publish API's job here."""
        results = []
        for ev in json.loads(body).get("events", []):
            if ev["type"] == "connect":
                results.append({"allow": True})
            elif ev["type"] == "subscribe":
                results.append({"filters": [
                    {"allow": True} if f["filter"] in self.soak.channels
                    else {"allow": False, "reason": "not-authorized"}
                    for f in ev["filters"]]})
            elif ev["type"] == "publish":
                results.append({"allow": False, "reason": "not-authorized"})
            else:
                results.append({})
        return self.response("200 OK", [("Content-Type", "application/mqtt-events+json")],
                             json.dumps({"results": results}).encode())
