#!/usr/bin/env python3
"""Soak test for Gripway (issue 7): many connections with churn over every transport, steady
publishing, slow readers and hostile clients, for a long time; it reports the server's RSS over
time, deliveries, losses, duplicates and out-of-order deliveries, and says pass or fail.

Not run in CI. Python 3.11, standard library only (parts in scripts/soaklib/: wire helpers,
the origin, misbehaving clients). Everything listens and connects on
127.0.0.1 only, on free ports, and every loop ends by itself (the whole run is bounded by
--duration plus a fixed grace).

Usage:

    cargo build --release -p gripway
    scripts/soak.py                                   # 30 minutes, 5,000 connections
    scripts/soak.py --duration 180 --connections 2000 --minute-mark 60 --json soak.json

What it does:

* Starts the gripway binary (--binary) on port 0 with one route, `* 127.0.0.1:PORT,over_http`,
  to an origin inside this script. The origin answers GRIP for
  `GET /sse/<ch>` (stream hold, first bytes `: ready`), MQTT-over-HTTP `POST /mqtt`, `GET /stream/<ch>` (stream hold,
  `ready`), `GET /poll/<ch>[?last=N]` (long-poll: without `last` it answers at once
  `ready N`, N being the channel's last acknowledged sequence number; with `last` it answers
  at once with every acknowledged item after N if there is one, else holds with
  `Grip-Channel: <ch>; prev-id=<ch>-N`), and `POST /ws/<ch>` (WebSocket-over-HTTP: OPEN is
  answered with OPEN, `c:` subscribe and `m:ready`).
* Publishes steadily (--publish-rate items/s over --channels channels `c0`..; plus
  --bulk-rate items/s of --bulk-size bytes on channel `bulk`). Each item has id `<ch>-<seq>`,
  `prev-id` the channel's previous item, and all three formats (`http-stream`
  `data: <id>\\n\\n`, `http-response` body `<id>\\n`, `ws-message` `<id>`). One publish per
  channel is in flight at a time; a 200 answer is an acknowledgement.
* Keeps --connections subscribers connected, spread evenly over SSE, HTTP streaming,
  long-poll, WebSocket and MQTT 3.1.1 (a device on `--mqtt-port` subscribed to its channel at
  QoS 1, acknowledging every PUBLISH; the origin allows its CONNECT and SUBSCRIBE) (--bulk-fraction of them on `bulk`). Each lives a random time
  (--life-min..--life-max s), then drains and drops, and a new one takes its place. A long-poll
  re-polls with `?last=<highest seq seen>`, so the origin fills any gap.
* Mixes in slow readers (--slow-fraction extra connections on `bulk` with a small receive
  buffer that stop reading after `ready`: each must be cut off by the server within
  --slow-stall s) and hostile clients (--hostile-rate per second: malformed heads, oversized
  heads, slowloris heads, forged WebSocket-over-HTTP events, 1 GiB WebSocket frame headers),
  each of which must be refused (4xx, close, or cut off in time).
* Prints a line every --interval s and a summary at the end; --json FILE writes both.

Loss accounting. Subscriber S on channel C is surely subscribed from the moment its first
`ready` bytes arrive (`ready_t`): the server subscribes before it sends them. When S decides
to drop (or at the end of the run, once publishing stopped) it notes A, the last acknowledged
sequence number on C, and keeps reading until it has seen A (at most --drain s). S must have
received exactly once and in order every acknowledged item of C with sequence number <= A and,
for stream transports (SSE, HTTP streaming, WebSocket), a publish request sent after `ready_t`;
for long-polls, a sequence number above the N of its `ready N`. A missing item is a loss, an
item seen twice a duplicate, an item with a lower sequence number than one seen before is out
of order. A subscriber the server closes early is counted (`unexpected closes`); its interval
ends --close-grace s before the close.

Pass means: RSS at the end within 10% of RSS at --minute-mark (default 300 s, "minute 5";
each the median over --rss-window s of once-a-second samples of the server's VmRSS),
no losses, no duplicates, no out-of-order deliveries, and every slow reader cut off.
Exit status: 0 pass, 1 fail, 2 could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import random
import re
import resource
import signal
import struct
import sys
import time
from dataclasses import dataclass, field

from soaklib.misbehaving import Misbehaving
from soaklib.origin import Origin
from soaklib.wire import (
    LOOPBACK, Closed, body_chunks, close_writer, mqtt_packet, mqtt_read, open_conn, read_body,
    read_head, ws_frame, ws_handshake, ws_read_frame,
)

TRANSPORTS = ("sse", "stream", "poll", "ws", "mqtt")
ID_RE = re.compile(rb"((?:c\d+|bulk)-\d+)")
GRACE = 90.0  # seconds past --duration by which everything has ended


def now() -> float:
    return time.monotonic()


# --------------------------------------------------------------------------------------------
# Published items and their acknowledgements


@dataclass
class Channel:
    name: str
    seq: int = 0  # last sequence number sent
    send_t: list = field(default_factory=lambda: [0.0])  # index = seq
    ack_t: list = field(default_factory=lambda: [0.0])  # 0.0 = not acknowledged (yet)
    last_acked: int = 0
    acked_seqs: list = field(default_factory=list)  # ascending

    def acked_after(self, seq: int, limit: int) -> list:
        i = bisect.bisect_right(self.acked_seqs, seq)
        return self.acked_seqs[i : i + limit]


class Stats:
    def __init__(self) -> None:
        self.c = {
            "published": 0,
            "acked": 0,
            "publish_failed": 0,
            "publish_retries": 0,
            "deliveries": 0,
            "expected": 0,
            "losses": 0,
            "duplicates": 0,
            "out_of_order": 0,
            "extra": 0,
            "subs_started": 0,
            "subs_finished": 0,
            "connect_failed": 0,
            "no_ready": 0,
            "unexpected_closes": 0,
            "drain_timeouts": 0,
            "slow_started": 0,
            "slow_cut_off": 0,
            "slow_not_cut_off": 0,
            "slow_failed": 0,
            "hostile_started": 0,
            "hostile_refused": 0,
            "hostile_unexpected": 0,
            "forged_reached_origin": 0,
            "origin_requests": 0,
            "poll_requests": 0,
        }
        self.by_transport = {t: {"subs": 0, "deliveries": 0, "losses": 0} for t in TRANSPORTS}
        self.hostile_kinds: dict = {}
        self.loss_examples: list = []
        self.unexpected_examples: list = []
        self.open_conns = 0
        self.fault_drop = 0.0
        self.publish_failures: list = []

    def inc(self, key: str, n: int = 1) -> None:
        self.c[key] += n


# --------------------------------------------------------------------------------------------
# Subscribers


class Sub:
    """One subscriber's view: what it received, and the interval it was surely subscribed."""

    __slots__ = ("transport", "ch", "ready_t", "start_seq", "seen", "max_seq", "got")

    def __init__(self, transport: str, ch: Channel) -> None:
        self.transport = transport
        self.ch = ch
        self.ready_t = 0.0
        self.start_seq = 0
        self.seen: set = set()
        self.max_seq = 0
        self.got = asyncio.Event()

    def item(self, token: bytes, stats: Stats) -> None:
        name, _, seq = token.decode().rpartition("-")
        if name != self.ch.name:
            stats.inc("extra")
            return
        seq = int(seq)
        if stats.fault_drop and random.random() < stats.fault_drop:
            return  # --fault-drop: pretend it never arrived (checks that losses are caught)
        stats.c["deliveries"] += 1
        stats.by_transport[self.transport]["deliveries"] += 1
        if seq in self.seen:
            stats.inc("duplicates")
            return
        if seq < self.max_seq:
            stats.inc("out_of_order")
        self.seen.add(seq)
        if seq > self.max_seq:
            self.max_seq = seq
            self.got.set()


class Soak(Misbehaving):
    def __init__(self, args) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.stats = Stats()
        self.stats.fault_drop = args.fault_drop
        self.channels: dict = {f"c{i}": Channel(f"c{i}") for i in range(args.channels)}
        self.channels["bulk"] = Channel("bulk")
        self.normal = [c for n, c in self.channels.items() if n != "bulk"]
        self.load_over = asyncio.Event()  # no new subscribers, publishing stops
        self.publishing_done = asyncio.Event()  # every publish answered: subscribers drain now
        self.proc = None
        self.port = self.publish_port = self.admin_port = self.mqtt_port = 0
        self.mqtt_ids = 0
        self.rss: list = []  # (elapsed, KiB)
        self.lines: list = []
        self.start_t = 0.0
        self.log_tail: list = []
        self.log_warnings = 0
        self.tasks: set = set()
        self.pub_pool: list = []
        self.pub_sem = None

    def spawn(self, coro) -> None:
        t = asyncio.create_task(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    def elapsed(self) -> float:
        return now() - self.start_t

    # ---- gripway ------------------------------------------------------------------------

    async def start_gripway(self, origin_port: int) -> None:
        a = self.args
        cmd = [
            a.binary,
            "--port", f"{LOOPBACK}:0",
            "--publish-port", f"{LOOPBACK}:0",
            "--admin-port", f"{LOOPBACK}:0",
            "--mqtt-port", f"{LOOPBACK}:0",
            "--route", f"* {LOOPBACK}:{origin_port},over_http",
            "--log-level", "info",
        ] + [x for g in a.gripway_arg for x in g.split(" ", 1)]
        env = dict(os.environ)
        env.pop("RUST_LOG", None)
        self.proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env=env,
        )
        addr = re.compile(r"(\d+\.\d+\.\d+\.\d+):(\d+)")

        def port_after(line: str, marker: str) -> int:
            i = line.find(marker)
            if i < 0:
                return 0
            m = addr.match(line[i + len(marker):])
            return int(m.group(2)) if m else 0

        deadline = now() + 20
        while not (self.port and self.publish_port and self.admin_port and self.mqtt_port):
            try:
                raw = await asyncio.wait_for(self.proc.stderr.readline(), max(0.1, deadline - now()))
            except asyncio.TimeoutError:
                raw = b""
            if not raw:
                raise RuntimeError("gripway did not report its listeners:\n" + "\n".join(self.log_tail))
            line = raw.decode(errors="replace").rstrip()
            self.log_tail.append(line)
            self.port = self.port or port_after(line, "clients on ")
            self.publish_port = self.publish_port or port_after(line, "publish API on ")
            self.admin_port = self.admin_port or port_after(line, "metrics on http://")
            self.mqtt_port = self.mqtt_port or port_after(line, "MQTT on ")
        self.spawn(self.pump_log())

    async def pump_log(self) -> None:
        while True:
            raw = await self.proc.stderr.readline()
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip()
            if " WARN " in line or " ERROR " in line or "WARN" in line[:40] or "ERROR" in line[:40]:
                self.log_warnings += 1
            self.log_tail.append(line)
            if len(self.log_tail) > 200:
                del self.log_tail[:100]

    def read_rss(self) -> int:
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    async def metrics(self) -> dict:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(LOOPBACK, self.admin_port), 5)
            w.write(b"GET /metrics HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
            _, h = await asyncio.wait_for(read_head(r), 5)
            text = (await asyncio.wait_for(read_body(r, h), 5)).decode()
            close_writer(w)
        except (OSError, asyncio.TimeoutError, Closed, asyncio.IncompleteReadError):
            return {}
        out: dict = {}
        for line in text.splitlines():
            if line.startswith("#") or " " not in line:
                continue
            name, value = line.rsplit(" ", 1)
            try:
                out[name] = float(value)
            except ValueError:
                pass
        return out

    # ---- publishing ---------------------------------------------------------------------

    async def publish(self, ch: Channel, pad: int) -> None:
        ch.seq += 1
        seq = ch.seq
        iid = f"{ch.name}-{seq}"
        tail = (" " + "x" * pad) if pad else ""
        item = {"channel": ch.name, "id": iid}
        if seq > 1:
            item["prev-id"] = f"{ch.name}-{seq - 1}"
        item["formats"] = {
            "http-stream": {"content": f"data: {iid}{tail}\n\n"},
            "http-response": {"body": f"{iid}{tail}\n"},
            "ws-message": {"content": f"{iid}{tail}"},
        }
        body = json.dumps({"items": [item]}).encode()
        req = (
            f"POST /publish/ HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.stats.inc("published")
        ch.send_t.append(now())  # set again when the request is written; ascending per channel
        ch.ack_t.append(0.0)
        # A reused connection the server has closed fails before the request is read: try
        # again on a fresh one. Resending is safe (same id: the server drops duplicates), and
        # send_t stays the first attempt's, the earliest the server can have taken the item.
        ok, why = False, ""
        for attempt in range(3):
            async with self.pub_sem:
                conn = self.pub_pool.pop() if self.pub_pool and attempt == 0 else None
                try:
                    if conn is None:
                        conn = await asyncio.wait_for(asyncio.open_connection(LOOPBACK, self.publish_port), 10)
                    r, w = conn
                    if attempt == 0:
                        ch.send_t[seq] = now()
                    w.write(req)
                    status, h = await asyncio.wait_for(read_head(r), 30)
                    text = await asyncio.wait_for(read_body(r, h), 30)
                    ok, why = status == 200, f"{status} {text[:80]!r}"
                    if h.get("connection", "").lower() != "close":
                        self.pub_pool.append(conn)
                        conn = None
                except (OSError, asyncio.TimeoutError, Closed, asyncio.IncompleteReadError, ValueError) as e:
                    why = repr(e)[:100]
                finally:
                    if conn is not None:
                        close_writer(conn[1])
            if ok or why[:1].isdigit():  # answered: no retry
                break
            self.stats.inc("publish_retries")
        if ok:
            ch.ack_t[seq] = now()
            ch.last_acked = seq
            ch.acked_seqs.append(seq)
            self.stats.inc("acked")
        else:
            self.stats.inc("publish_failed")
            if len(self.stats.publish_failures) < 10:
                self.stats.publish_failures.append(f"{iid}: {why}")

    async def publish_loop(self, ch: Channel, rate: float, pad: int) -> None:
        if rate <= 0:
            return
        await asyncio.sleep(self.rng.uniform(0, 1 / rate))
        while not self.load_over.is_set():
            t0 = now()
            await self.publish(ch, pad)
            gap = self.rng.uniform(0.5, 1.5) / rate - (now() - t0)
            if gap > 0:
                try:
                    await asyncio.wait_for(self.load_over.wait(), gap)
                except asyncio.TimeoutError:
                    pass

    # ---- subscribers --------------------------------------------------------------------

    def pick_channel(self) -> Channel:
        if self.rng.random() < self.args.bulk_fraction:
            return self.channels["bulk"]
        return self.rng.choice(self.normal)

    async def subscriber_slot(self, slot: int) -> None:
        """Keeps one subscriber connected until the load is over: connect, hold, drop, repeat."""
        transport = self.args.transports[slot % len(self.args.transports)]
        while not self.load_over.is_set():
            life = self.rng.uniform(self.args.life_min, self.args.life_max)
            t0 = now()
            await self.subscriber(transport, self.pick_channel(), life)
            if now() - t0 < 1.0:  # failed fast: do not spin
                await asyncio.sleep(1.0)

    async def subscriber(self, transport: str, ch: Channel, life: float) -> None:
        st = self.stats
        st.inc("subs_started")
        st.by_transport[transport]["subs"] += 1
        sub = Sub(transport, ch)
        writer = None
        st.open_conns += 1
        closed_at = None
        try:
            try:
                port = self.mqtt_port if transport == "mqtt" else self.port
                reader, writer = await asyncio.wait_for(open_conn(port), 10)
            except (OSError, asyncio.TimeoutError):
                st.inc("connect_failed")
                return
            reading = asyncio.create_task(self.consume(sub, reader, writer))
            reading.add_done_callback(lambda t: t.cancelled() or t.exception())
            try:
                await asyncio.wait_for(self._ready(sub, reading), 15)
            except asyncio.TimeoutError:
                pass
            if not sub.ready_t:
                reading.cancel()
                st.inc("no_ready")
                return
            # hold
            stop = asyncio.create_task(self._until_stop(life))
            await asyncio.wait({stop, reading}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if reading.done():
                closed_at = now()
                st.inc("unexpected_closes")
                if len(st.unexpected_examples) < 20:
                    exc = reading.exception() if not reading.cancelled() else None
                    st.unexpected_examples.append(
                        {"transport": transport, "channel": ch.name, "at": round(self.elapsed(), 1),
                         "lived": round(closed_at - sub.ready_t, 1), "why": repr(exc)}
                    )
                end_seq = 0
                for s in range(ch.last_acked, 0, -1):
                    if ch.ack_t[s] and ch.ack_t[s] + self.args.close_grace < closed_at:
                        end_seq = s
                        break
            else:
                # drain: everything acknowledged so far must arrive
                end_seq = ch.last_acked
                deadline = now() + self.args.drain
                expecting = self.first_expected(sub) <= end_seq
                while expecting and sub.max_seq < end_seq and not reading.done():
                    left = deadline - now()
                    if left <= 0:
                        break
                    sub.got.clear()
                    try:
                        await asyncio.wait_for(sub.got.wait(), left)
                    except asyncio.TimeoutError:
                        break
                if expecting and sub.max_seq < end_seq:
                    st.inc("drain_timeouts")
                reading.cancel()
                if transport == "ws" and self.rng.random() < self.args.ws_clean_close:
                    try:  # a clean close (the rest just drop the TCP connection)
                        writer.write(ws_frame(8, struct.pack("!H", 1000)))
                        await asyncio.wait_for(writer.drain(), 2)
                    except (OSError, asyncio.TimeoutError):
                        pass
            self.account(sub, end_seq)
            st.inc("subs_finished")
        finally:
            st.open_conns -= 1
            if writer is not None:
                close_writer(writer)

    async def _ready(self, sub: Sub, reading: asyncio.Task) -> None:
        while not sub.ready_t and not reading.done():
            await asyncio.sleep(0.05)

    async def _until_stop(self, life: float) -> None:
        a = asyncio.create_task(asyncio.sleep(life))
        b = asyncio.create_task(self.publishing_done.wait())
        await asyncio.wait({a, b}, return_when=asyncio.FIRST_COMPLETED)
        a.cancel()
        b.cancel()

    @staticmethod
    def first_expected(sub: Sub) -> int:
        """The first sequence number `sub` must receive."""
        if sub.transport == "poll":
            return sub.start_seq + 1
        # the first item sent after ready; send_t ascends (one publish per channel at a time)
        return bisect.bisect_right(sub.ch.send_t, sub.ready_t, 1, sub.ch.seq + 1)

    def account(self, sub: Sub, end_seq: int) -> None:
        ch, st = sub.ch, self.stats
        for s in range(self.first_expected(sub), end_seq + 1):
            if not ch.ack_t[s]:
                continue
            st.c["expected"] += 1
            if s not in sub.seen:
                st.inc("losses")
                st.by_transport[sub.transport]["losses"] += 1
                if len(st.loss_examples) < 30:
                    st.loss_examples.append(
                        {"transport": sub.transport, "channel": ch.name, "seq": s,
                         "ready": round(sub.ready_t - self.start_t, 3),
                         "sent": round(ch.send_t[s] - self.start_t, 3),
                         "acked": round(ch.ack_t[s] - self.start_t, 3),
                         "end_seq": end_seq, "max_seen": sub.max_seq, "start_seq": sub.start_seq}
                    )

    async def consume(self, sub: Sub, reader, writer) -> None:
        if sub.transport in ("sse", "stream"):
            await self.consume_stream(sub, reader, writer)
        elif sub.transport == "ws":
            await self.consume_ws(sub, reader, writer)
        elif sub.transport == "mqtt":
            await self.consume_mqtt(sub, reader, writer)
        else:
            await self.consume_poll(sub, reader, writer)

    async def consume_stream(self, sub: Sub, reader, writer) -> None:
        writer.write(f"GET /{sub.transport}/{sub.ch.name} HTTP/1.1\r\nHost: soak\r\n\r\n".encode())
        status, headers = await read_head(reader)
        if status != 200:
            raise Closed(f"status {status}")
        buf = b""
        async for data in body_chunks(reader, headers):
            buf += data
            if not sub.ready_t and b"ready" in buf:
                sub.ready_t = now()
                sub.got.set()
            cut = buf.rfind(b"\n")
            if cut < 0:
                continue
            for token in ID_RE.findall(buf, 0, cut):
                sub.item(token, self.stats)
            buf = buf[cut + 1 :]
        raise Closed("stream ended")

    async def consume_ws(self, sub: Sub, reader, writer) -> None:
        writer.write(ws_handshake(f"/ws/{sub.ch.name}"))
        status, _ = await read_head(reader)
        if status != 101:
            raise Closed(f"status {status}")
        while True:
            op, payload = await ws_read_frame(reader)
            if op in (1, 2):
                if not sub.ready_t:
                    if payload == b"ready":
                        sub.ready_t = now()
                        sub.got.set()
                    continue
                m = ID_RE.match(payload)
                if m:
                    sub.item(m.group(1), self.stats)
            elif op == 9:
                writer.write(ws_frame(10, payload))
            elif op == 8:
                raise Closed(f"close frame {payload[:2].hex()}")

    async def consume_mqtt(self, sub: Sub, reader, writer) -> None:
        """An MQTT 3.1.1 device: CONNECT (clean, no keep-alive), SUBSCRIBE to the channel at QoS
        1 (ready at its SUBACK: the server subscribes before it answers), then every PUBLISH
        acknowledged and its payload, the item's id, counted."""
        self.mqtt_ids += 1
        cid = f"soak-{self.mqtt_ids}".encode()
        body = b"\x00\x04MQTT\x04\x02\x00\x00" + struct.pack("!H", len(cid)) + cid
        writer.write(mqtt_packet(0x10, body))
        kind, _ = await mqtt_read(reader)
        if kind >> 4 != 2:
            raise Closed(f"no CONNACK: {kind:#x}")
        topic = sub.ch.name.encode()
        body = b"\x00\x01" + struct.pack("!H", len(topic)) + topic + b"\x01"
        writer.write(mqtt_packet(0x82, body))
        while True:
            kind, body = await mqtt_read(reader)
            if kind >> 4 == 9:  # SUBACK
                if body[-1:] == b"\x80":
                    raise Closed("subscription refused")
                sub.ready_t = now()
                sub.got.set()
            elif kind >> 4 == 3:  # PUBLISH
                qos = (kind >> 1) & 3
                n = struct.unpack("!H", body[:2])[0]
                at = 2 + n
                if qos:
                    writer.write(b"\x40\x02" + body[at : at + 2])
                    at += 2
                m = ID_RE.match(body[at:])
                if m:
                    sub.item(m.group(1), self.stats)

    async def consume_poll(self, sub: Sub, reader, writer) -> None:
        path = f"/poll/{sub.ch.name}"
        own = None  # a connection opened here after the server closed the first one
        try:
            while True:
                target = f"{path}?last={sub.max_seq}" if sub.ready_t else path
                writer.write(f"GET {target} HTTP/1.1\r\nHost: soak\r\n\r\n".encode())
                status, headers = await read_head(reader)
                body = await read_body(reader, headers)
                if status != 200:
                    raise Closed(f"status {status}")
                if not sub.ready_t:
                    if not body.startswith(b"ready "):
                        raise Closed(f"unexpected first poll body {body[:40]!r}")
                    sub.start_seq = sub.max_seq = int(body.split()[1])
                    sub.ready_t = now()
                    sub.got.set()
                else:
                    for token in ID_RE.findall(body):
                        sub.item(token, self.stats)
                if headers.get("connection", "").lower() == "close":
                    # carry on over a fresh connection
                    close_writer(writer)
                    reader, writer = own = await open_conn(self.port)
        finally:
            if own is not None:
                close_writer(own[1])

    # ---- reporting ----------------------------------------------------------------------

    async def monitor(self) -> None:
        last = 0.0
        while True:
            t = self.elapsed()
            rss = self.read_rss()
            self.rss.append((round(t, 1), rss))
            if t - last >= self.args.interval or not self.lines:
                last = t
                m = await self.metrics()
                server_conns = int(sum(v for k, v in m.items() if k.startswith("gripway_connections{")))
                c = self.stats.c
                row = {
                    "t": round(t), "rss_mib": round(rss / 1024, 1), "conns": self.stats.open_conns,
                    "server_conns": server_conns, "acked": c["acked"], "deliveries": c["deliveries"],
                    "losses": c["losses"], "dups": c["duplicates"], "ooo": c["out_of_order"],
                    "subs": c["subs_finished"], "unexp_close": c["unexpected_closes"],
                    "slow_cut": c["slow_cut_off"], "hostile_ok": c["hostile_refused"],
                    "hostile_bad": c["hostile_unexpected"],
                }
                self.lines.append(row)
                print(
                    f"{row['t']:>6}s rss {row['rss_mib']:>7.1f} MiB  conns {row['conns']:>5} "
                    f"(server {server_conns:>5})  acked {row['acked']:>7}  deliveries {row['deliveries']:>9}  "
                    f"losses {row['losses']}  dups {row['dups']}  ooo {row['ooo']}  subs done {row['subs']}  "
                    f"unexpected closes {row['unexp_close']}  slow cut {row['slow_cut']}  "
                    f"hostile ok/bad {row['hostile_ok']}/{row['hostile_bad']}",
                    flush=True,
                )
            if self.proc.returncode is not None:
                print(f"gripway exited with {self.proc.returncode}", flush=True)
                self.load_over.set()
                self.publishing_done.set()
                return
            await asyncio.sleep(1.0)

    def summary(self, metrics_end: dict) -> dict:
        a, c = self.args, self.stats.c
        # medians over --rss-window s (one sample a second), so that one noisy sample decides nothing
        w = a.rss_window
        mark = median([r for t, r in self.rss if a.minute_mark <= t < a.minute_mark + w])
        end = median([r for t, r in self.rss if a.duration - w < t <= a.duration])
        peak = max((r for _, r in self.rss), default=0)
        rss_ok = bool(mark and end and abs(end - mark) <= 0.10 * mark)
        checks = {
            "rss_within_10pct_of_minute_mark": rss_ok,
            "no_losses": c["losses"] == 0,
            "no_duplicates": c["duplicates"] == 0,
            "in_order": c["out_of_order"] == 0,
            "slow_readers_cut_off": c["slow_not_cut_off"] == 0,
            "server_alive": self.proc.returncode is None,
        }
        interesting = {
            k: v for k, v in metrics_end.items()
            if k.startswith(("gripway_errors_total", "gripway_connection_drops_total", "gripway_messages"))
        }
        return {
            "args": {k: v for k, v in vars(a).items()},
            "rss_kib_at_minute_mark": mark,
            "rss_kib_at_end": end,
            "rss_kib_peak": peak,
            "rss_change_pct": round(100.0 * (end - mark) / mark, 2) if mark and end else None,
            "counters": c,
            "by_transport": self.stats.by_transport,
            "hostile_kinds": self.stats.hostile_kinds,
            "loss_examples": self.stats.loss_examples,
            "publish_failures": self.stats.publish_failures,
            "unexpected_close_examples": self.stats.unexpected_examples,
            "server_log_warnings": self.log_warnings,
            "server_metrics_end": interesting,
            "checks": checks,
            "pass": all(checks.values()),
            "lines": self.lines,
            "rss_samples": self.rss,
        }

    # ---- the run ------------------------------------------------------------------------

    async def run(self) -> dict:
        a = self.args
        origin = Origin(self)
        await origin.start()
        await self.start_gripway(origin.port)
        print(
            f"gripway pid {self.proc.pid}: clients {LOOPBACK}:{self.port}, publish {self.publish_port}, "
            f"admin {self.admin_port}; origin {origin.port}", flush=True,
        )
        self.start_t = now()
        self.pub_sem = asyncio.Semaphore(a.publish_conns)
        mon = asyncio.create_task(self.monitor())
        pubs = [asyncio.create_task(self.publish_loop(ch, a.publish_rate / len(self.normal), 0)) for ch in self.normal]
        pubs.append(asyncio.create_task(self.publish_loop(self.channels["bulk"], a.bulk_rate, a.bulk_size)))
        slots = []
        n_slow = int(round(a.connections * a.slow_fraction))
        n_subs = a.connections - n_slow
        ramp = asyncio.create_task(self.ramp(slots, n_subs, n_slow))
        self.spawn(self.hostile_loop())
        try:
            await asyncio.wait_for(self.load_over.wait(), a.duration)
        except asyncio.TimeoutError:
            pass
        end_rss = self.read_rss()
        self.rss.append((round(min(self.elapsed(), a.duration), 1), end_rss))
        print(f"load over at {self.elapsed():.0f}s: stopping publishers, draining subscribers", flush=True)
        self.load_over.set()
        ramp.cancel()
        await asyncio.wait(pubs, timeout=40)
        self.publishing_done.set()
        waiting = slots + list(self.tasks)
        if waiting:
            await asyncio.wait(waiting, timeout=max(5.0, GRACE - 45 - a.drain) + a.drain)
        metrics_end = await self.metrics()
        mon.cancel()
        for t in list(slots) + list(self.tasks) + pubs:
            t.cancel()
        return self.summary(metrics_end)

    async def ramp(self, slots: list, n_subs: int, n_slow: int) -> None:
        order = [("sub", i) for i in range(n_subs)] + [("slow", i) for i in range(n_slow)]
        self.rng.shuffle(order)
        for kind, i in order:
            if self.load_over.is_set():
                return
            slots.append(asyncio.create_task(self.subscriber_slot(i) if kind == "sub" else self.slow_slot(i)))
            await asyncio.sleep(1.0 / self.args.ramp_rate)

    async def stop_gripway(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()



def median(xs: list):
    return sorted(xs)[len(xs) // 2] if xs else None


def raise_nofile(want: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, want)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default="target/release/gripway", help="gripway binary (default %(default)s)")
    p.add_argument("--duration", type=float, default=1800, help="seconds of load (default %(default)s)")
    p.add_argument("--connections", type=int, default=5000, help="client connections kept open (default %(default)s)")
    p.add_argument("--publish-rate", type=float, default=50, help="items/s over the normal channels (default %(default)s)")
    p.add_argument("--channels", type=int, default=100, help="normal channels (default %(default)s)")
    p.add_argument("--bulk-rate", type=float, default=10, help="items/s on channel bulk (default %(default)s)")
    p.add_argument("--bulk-size", type=int, default=8192, help="padding bytes per bulk item (default %(default)s)")
    p.add_argument("--bulk-fraction", type=float, default=0.02, help="share of subscribers on bulk (default %(default)s)")
    p.add_argument("--minute-mark", type=float, default=300, help="RSS reference time in s (default %(default)s)")
    p.add_argument("--rss-window", type=float, default=30, help="RSS at the mark and at the end is the median over this many seconds (default %(default)s)")
    p.add_argument("--interval", type=float, default=10, help="seconds between report lines (default %(default)s)")
    p.add_argument("--life-min", type=float, default=5, help="shortest subscriber life, s (default %(default)s)")
    p.add_argument("--life-max", type=float, default=60, help="longest subscriber life, s (default %(default)s)")
    p.add_argument("--ramp-rate", type=float, default=200, help="new connections/s while ramping up (default %(default)s)")
    p.add_argument("--transports", type=lambda s: tuple(s.split(",")), default=TRANSPORTS,
                   help="comma-separated subset of sse,stream,poll,ws (default all)")
    p.add_argument("--slow-fraction", type=float, default=0.02, help="share of connections that are slow readers (default %(default)s)")
    p.add_argument("--slow-stall", type=float, default=120, help="seconds a slow reader stops reading (default %(default)s)")
    p.add_argument("--slow-cap", type=int, default=16 << 20, help="bytes a slow reader may still read before it counts as not cut off (default %(default)s)")
    p.add_argument("--hostile-rate", type=float, default=1.0, help="hostile clients started per second (default %(default)s)")
    p.add_argument("--head-timeout", type=float, default=30, help="gripway's request head timeout, s, for slowloris (default %(default)s)")
    p.add_argument("--poll-timeout", type=int, default=30, help="Grip-Timeout of held long-polls, s (default %(default)s)")
    p.add_argument("--drain", type=float, default=15, help="seconds a dropping subscriber waits for the last acknowledged item (default %(default)s)")
    p.add_argument("--close-grace", type=float, default=5, help="items acknowledged this close to an unexpected close are not counted (default %(default)s)")
    p.add_argument("--ws-clean-close", type=float, default=0.8, help="share of WebSocket subscribers that close with a close frame; the rest drop the TCP connection (default %(default)s)")
    p.add_argument("--publish-conns", type=int, default=16, help="publish API connections (default %(default)s)")
    p.add_argument("--gripway-arg", action="append", default=[], help="extra gripway argument, e.g. '--config soak.toml' (repeatable)")
    p.add_argument("--fault-drop", type=float, default=0.0, help="checks the checker: subscribers ignore this share of deliveries, which must show as losses")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", help="write the summary, report lines and RSS samples here")
    a = p.parse_args(argv)
    for t in a.transports:
        if t not in TRANSPORTS:
            p.error(f"unknown transport {t}")
    if a.life_min <= 0 or a.life_max < a.life_min:
        p.error("need 0 < --life-min <= --life-max")
    return a


async def amain(a) -> int:
    soak = Soak(a)
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    def abort() -> None:
        """First signal: end the load now, then drain and report as usual (bounded by the
        grace). Second signal: stop at once."""
        if not soak.load_over.is_set():
            print("interrupted: ending the load now (again to stop at once)", flush=True)
            soak.load_over.set()
        else:
            soak.publishing_done.set()
            me.cancel()

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        loop.add_signal_handler(sig, abort)
    # kill -USR1: what every task is waiting on
    loop.add_signal_handler(signal.SIGUSR1, lambda: [t.print_stack(limit=4) for t in asyncio.all_tasks()])
    try:
        try:
            result = await asyncio.wait_for(soak.run(), a.duration + GRACE + 60)
        except asyncio.TimeoutError:
            print("run did not wind down in time; reporting what was counted", flush=True)
            result = soak.summary({})
    except (RuntimeError, OSError) as e:
        print(f"could not run: {e}", file=sys.stderr)
        return 2
    finally:  # never leave the server running, whatever ended the run
        await soak.stop_gripway()
    c = result["counters"]
    mark, end = result["rss_kib_at_minute_mark"], result["rss_kib_at_end"]
    print("\n== soak summary ==")
    print(f"duration {a.duration:.0f}s, connections {a.connections}, publish rate {a.publish_rate}/s + bulk {a.bulk_rate}/s")
    mib = lambda kib: f"{kib / 1024:.1f} MiB" if kib else "n/a"  # noqa: E731
    print(f"RSS at {a.minute_mark:.0f}s: {mib(mark)}; at end: {mib(end)} "
          f"(medians over {a.rss_window:.0f}s); "
          f"change {result['rss_change_pct']}%; peak {mib(result['rss_kib_peak'])}")
    print(f"published {c['published']}, acknowledged {c['acked']}, failed {c['publish_failed']}, "
          f"retried {c['publish_retries']}")
    if result["publish_failures"]:
        print("publish failures:", json.dumps(result["publish_failures"]))
    print(f"subscribers {c['subs_started']} started, {c['subs_finished']} accounted; deliveries {c['deliveries']} "
          f"({c['expected']} expected); "
          f"losses {c['losses']}, duplicates {c['duplicates']}, out of order {c['out_of_order']}, "
          f"extra {c['extra']}")
    print(f"connect failures {c['connect_failed']}, no ready {c['no_ready']}, unexpected closes {c['unexpected_closes']}, "
          f"drain timeouts {c['drain_timeouts']}")
    print(f"by transport: {json.dumps(result['by_transport'])}")
    print(f"slow readers: {c['slow_started']} started, {c['slow_cut_off']} cut off, {c['slow_not_cut_off']} not cut off, "
          f"{c['slow_failed']} failed")
    print(f"hostile: {c['hostile_started']} started, {c['hostile_refused']} refused, {c['hostile_unexpected']} unexpected; "
          f"{json.dumps(result['hostile_kinds'])}; forged events reaching the origin: {c['forged_reached_origin']}")
    print(f"server log warnings/errors: {result['server_log_warnings']}")
    for k, v in sorted(result["server_metrics_end"].items()):
        print(f"  {k} {v:g}")
    if result["loss_examples"]:
        print("loss examples:", json.dumps(result["loss_examples"][:10]))
    if result["unexpected_close_examples"]:
        print("unexpected close examples:", json.dumps(result["unexpected_close_examples"][:10]))
    for k, v in result["checks"].items():
        print(f"  {'ok  ' if v else 'FAIL'} {k}")
    print("PASS" if result["pass"] else "FAIL")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0 if result["pass"] else 1


def main() -> int:
    a = parse_args()
    if not os.path.exists(a.binary):
        print(f"no gripway binary at {a.binary} (cargo build --release -p gripway, or --binary)", file=sys.stderr)
        return 2
    limit = raise_nofile(2 * a.connections + 1024)
    if limit < a.connections + 512:
        print(f"open-file limit {limit} is too low for {a.connections} connections", file=sys.stderr)
        return 2
    return asyncio.run(amain(a))


if __name__ == "__main__":
    sys.exit(main())
