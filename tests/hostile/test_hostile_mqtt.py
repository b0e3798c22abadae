"""Hostile MQTT devices, on the MQTT listener (the demo origin decides: everything allowed).

Documented answers (README "Limits"): a first packet that is not CONNECT is closed at once; an
unknown protocol level gets CONNACK 0x01; after CONNECT, a packet announcing more than
max_packet_bytes is refused from its first bytes (MQTT 5: DISCONNECT 0x95), one that does not
decode gets 0x81, a protocol error (a second CONNECT, a PUBREC for nothing sent, AUTH) 0x82;
MQTT 3.1.1 devices are closed without a reason. A CONNECT not finished within the head timeout
is closed. A flood of half-open connections costs bounded memory and other devices keep
working; a device that stops reading is cut off as too slow once its queue reaches its bound.
Each case counts in the metrics, and the canary (SSE, same process) never misses a message."""

import asyncio
import socket
import struct
import sys
import time

from harness import HEAD_TIMEOUT_S, ROOT, rss_mb, run

# the packet helpers the soak uses (scripts/soaklib/wire.py)
sys.path.insert(0, str(ROOT / "scripts"))
from soaklib.wire import mqtt_packet, mqtt_read  # noqa: E402

GRIPWAY_EXTRA_ROUTES = ["*,path_beg=/mqtt test"]


def mqtt_str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def connect(client_id, level=5, keep_alive=60):
    props = b"\x00" if level == 5 else b""
    return mqtt_packet(0x10, mqtt_str("MQTT") + bytes([level, 0x02])
                       + struct.pack(">H", keep_alive) + props + mqtt_str(client_id))


def subscribe(pid, topic, level=5):
    props = b"\x00" if level == 5 else b""
    return mqtt_packet(0x82, struct.pack(">H", pid) + props + mqtt_str(topic) + b"\x00")


async def read_packet(reader, timeout=5.0):
    """(first byte, body) of the next packet; None when the connection ends or times out."""
    try:
        return await asyncio.wait_for(mqtt_read(reader), timeout)
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
        return None


async def until_closed(reader, timeout=5.0):
    """The packets the server sent before it closed; raises if it did not close in time."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = await read_packet(reader, max(0.01, deadline - time.monotonic()))
        if p is None:
            break
        got.append(p)
    else:
        raise AssertionError(f"not closed within {timeout} s; got {got}")
    # None came from the end of the stream, not a timeout, if the deadline has not passed
    assert time.monotonic() < deadline, f"not closed within {timeout} s; got {got}"
    return got


async def open_device(addr, client_id, level=5):
    host, port = addr.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(connect(client_id, level))
    await writer.drain()
    ack = await read_packet(reader)
    assert ack is not None and ack[0] == 0x20, ack
    code = ack[1][1]
    assert code == 0, f"CONNACK {code:#x}"
    return reader, writer


def reason_of(packets):
    """The reason code of the DISCONNECT among `packets` (None without one)."""
    for first, body in packets:
        if first == 0xE0:
            return body[0] if body else 0
    return None


# after CONNECT: level -> bytes, the MQTT 5 DISCONNECT reasons accepted, the error counted for
# MQTT 5 and for 3.1.1 (where AUTH is no packet at all, and a CONNECT is read as 3.1.1's)
BROKEN = {
    "a 256 MiB remaining length": (lambda _: b"\x30\xff\xff\xff\x7f", {0x95},
                                   "mqtt-packet-too-large", "mqtt-packet-too-large"),
    "a five-byte remaining length": (lambda _: b"\x30\x80\x80\x80\x80\x01", {0x81},
                                     "mqtt-malformed", "mqtt-malformed"),
    "a PUBLISH at QoS 3": (lambda _: mqtt_packet(0x36, mqtt_str("t") + b"\x00\x01\x00x"), {0x81},
                           "mqtt-malformed", "mqtt-malformed"),
    "reserved packet type 0": (lambda _: b"\x00\x00", {0x81}, "mqtt-malformed", "mqtt-malformed"),
    "a second CONNECT": (lambda level: connect("again", level), {0x82},
                         "mqtt-protocol-error", "mqtt-protocol-error"),
    "a PUBREC for nothing sent": (lambda _: mqtt_packet(0x50, b"\x00\x07"), {0x82},
                                  "mqtt-protocol-error", "mqtt-protocol-error"),
    "AUTH": (lambda _: mqtt_packet(0xF0, b""), {0x82}, "mqtt-protocol-error", "mqtt-malformed"),
}


def test_a_first_packet_that_is_not_connect_is_closed(env):
    before = env.errors("client", "mqtt-no-connect")

    async def case():
        host, port = env.gw.mqtt_addr.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"\xc0\x00")  # PINGREQ
        await writer.drain()
        got = await until_closed(reader)
        writer.close()
        return got
    assert run(case()) == []
    assert env.wait_errors("client", "mqtt-no-connect", before + 1) >= before + 1
    env.canary.check("a PINGREQ first")


def test_an_unknown_protocol_level_gets_connack_1(env):
    async def case():
        host, port = env.gw.mqtt_addr.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(connect("level-9", level=9))
        await writer.drain()
        got = await until_closed(reader)
        writer.close()
        return got
    got = run(case())
    assert len(got) == 1 and got[0][0] == 0x20 and got[0][1][1] == 0x01, got
    assert env.wait_errors("client", "mqtt-unsupported-protocol", 1) >= 1


def test_broken_packets_close_with_their_reason(env):
    wrong = {}
    for level in (5, 4):
        for name, (data, reasons, metric5, metric3) in BROKEN.items():
            metric = metric5 if level == 5 else metric3
            before = env.errors("client", metric)

            async def case():
                reader, writer = await open_device(env.gw.mqtt_addr, f"broken-{level}", level)
                try:
                    writer.write(data(level))
                    await writer.drain()
                except ConnectionError:
                    pass
                got = await until_closed(reader)
                writer.close()
                return got
            got = run(case())
            reason = reason_of(got)
            if level == 5 and reason not in reasons:
                wrong[f"v5 {name}: reason"] = f"DISCONNECT {reason} (want {reasons}); packets {got}"
            if level == 4 and got:
                wrong[f"v3.1.1 {name}"] = f"packets before the close: {got}"
            if env.wait_errors("client", metric, before + 1) < before + 1:
                wrong[f"v{level} {name}: metric"] = f"{metric} not counted"
    assert not wrong, wrong
    env.canary.check("broken packets")


def test_a_connect_not_finished_in_time_is_closed(env):
    before = env.errors("client", "mqtt-connect-timeout")

    async def case():
        host, port = env.gw.mqtt_addr.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(connect("slow")[:9])
        await writer.drain()
        start = time.monotonic()
        got = await until_closed(reader, HEAD_TIMEOUT_S + 3)
        writer.close()
        return got, time.monotonic() - start
    got, took = run(case())
    assert got == [], got
    assert HEAD_TIMEOUT_S - 0.5 < took < HEAD_TIMEOUT_S + 3, took
    assert env.wait_errors("client", "mqtt-connect-timeout", before + 1) >= before + 1


def test_a_flood_of_half_connects_is_bounded_and_devices_keep_working(env):
    flood = 2000
    rss_before = rss_mb(env.pid)

    async def case():
        host, port = env.gw.mqtt_addr.rsplit(":", 1)
        opened = []
        for i in range(flood):
            try:
                r, w = await asyncio.open_connection(host, int(port))
            except OSError:
                break
            w.write(connect(f"flood-{i}")[:12])
            opened.append((r, w))
        # a real device connects, subscribes and gets what is published meanwhile
        reader, writer = await open_device(env.gw.mqtt_addr, "survivor")
        writer.write(subscribe(1, "hostile-flood"))
        await writer.drain()
        suback = await read_packet(reader)
        assert suback is not None and suback[0] == 0x90 and suback[1][-1] == 0, suback
        rss_peak = rss_mb(env.pid)
        status, text = await asyncio.to_thread(
            env.publish, '{"items": [{"channel": "hostile-flood", "formats": '
                         '{"ws-message": {"content": "still here"}}}]}')
        assert status == 200, text
        got = await read_packet(reader)
        assert got is not None and got[0] & 0xF0 == 0x30 and got[1].endswith(b"still here"), got
        # the flood is closed by the head timeout
        closed = 0
        deadline = time.monotonic() + HEAD_TIMEOUT_S + 5
        for r, w in opened:
            if await read_packet(r, max(0.01, deadline - time.monotonic())) is None and r.at_eof():
                closed += 1
            w.close()
        writer.close()
        return len(opened), closed, rss_peak
    opened, closed, rss_peak = run(case())
    assert opened == flood, f"only {opened} connections opened"
    assert closed == opened, f"{opened - closed} half connects still open after the timeout"
    # bounded: well under a few KiB per half-open connection
    assert rss_peak - rss_before < 40, f"RSS grew {rss_peak - rss_before:.1f} MB for {flood} half connects"
    env.canary.check("a flood of half connects")


def test_a_device_that_stops_reading_is_cut_off_at_its_queue_bound(env):
    sample = 'gripway_connection_drops_total{reason="slow-subscriber"}'
    before = env.gw.metric(sample) or 0.0
    host, port = env.gw.mqtt_addr.rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect((host, int(port)))
    try:
        sock.sendall(connect("sleeper") + subscribe(1, "hostile-slow"))
        answers = b""
        while answers.count(b"\x90") < 1:  # CONNACK, then SUBACK
            answers += sock.recv(256)
        # never read again; publish far more than a subscriber may have queued
        chunk = "x" * 60_000
        for i in range(120):
            body = ('{"items": [{"channel": "hostile-slow", "formats": {"ws-message": '
                    f'{{"content": "{i} {chunk}"}}}}}}]}}')
            status, text = env.publish(body)
            assert status == 200, text
        deadline = time.time() + 10
        dropped = before
        while time.time() < deadline:
            dropped = env.gw.metric(sample) or 0.0
            if dropped > before:
                break
            time.sleep(0.1)
        # 7 MB published against a 1 MiB queue bound: only the cut-off keeps it bounded (RSS
        # would not tell, history keeps the last 100 items of the channel anyway)
        assert dropped > before, "the device that stopped reading was never cut off"
    finally:
        sock.close()
    env.canary.check("a device that stopped reading")


def test_canary_survived(env):
    env.canary.check("the MQTT battery")
