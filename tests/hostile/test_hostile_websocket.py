"""Hostile WebSocket clients, on a WebSocket-over-HTTP route and a pass-through route.

Documented answers (RFC 6455 §7.4.1): protocol errors (an unmasked client frame, a reserved
opcode, RSV bits without an extension, a control frame over 125 bytes or fragmented) close
with 1002; invalid UTF-8 in a text message closes with 1007; a message over
max_message_bytes (64 KiB) closes with 1009, and a frame header announcing 1 GiB closes with
1009 at once, without allocating for it. Queues towards a slow or stalled origin are bounded
by bytes: the client is stopped reading from (TCP backpressure), memory stays flat."""

import asyncio
import base64
import os
import struct
import time

from harness import data_mb, rss_mb, run


def frame(opcode, payload=b"", fin=True, mask=True, rsv=0, length=None):
    """A client frame; `length` overrides the announced payload length."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mbit = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n < 1 << 16:
        head = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def ws_open(addr, path):
    host, port = addr.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def close_code(reader, timeout=5.0):
    """Reads server frames until a close frame; its code, 1005 if it has none, or None if the
    connection ended (or timed out) without one."""
    try:
        async def read():
            while True:
                h = await reader.readexactly(2)
                n = h[1] & 0x7F
                if n == 126:
                    n = struct.unpack(">H", await reader.readexactly(2))[0]
                elif n == 127:
                    n = struct.unpack(">Q", await reader.readexactly(8))[0]
                payload = await reader.readexactly(n)
                if h[0] & 0x0F == 8:
                    return struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
        return await asyncio.wait_for(read(), timeout)
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
        return None


def send_and_close_code(env, frames, path="/ws/hostile"):
    async def case():
        reader, writer = await ws_open(env.gw.addr, path)
        try:
            writer.write(b"".join(frames))
            await writer.drain()
        except ConnectionError:
            pass
        code = await close_code(reader)
        writer.close()
        return code
    return run(case())


BROKEN = {
    "unmasked text frame": ([frame(1, b"hello", mask=False)], 1002),
    "reserved data opcode 0x3": ([frame(3, b"x")], 1002),
    "reserved control opcode 0xB": ([frame(0xB, b"x")], 1002),
    "RSV1 without an extension": ([frame(1, b"hello", rsv=4)], 1002),
    "ping over 125 bytes": ([frame(9, b"p" * 126)], 1002),
    "fragmented ping": ([frame(9, b"p", fin=False)], 1002),
    "continuation with nothing to continue": ([frame(0, b"x")], 1002),
    "invalid UTF-8 text": ([frame(1, b"ok \xff\xfe")], 1007),
    "invalid UTF-8 across fragments": ([frame(1, b"\xe2\x82", fin=False), frame(0, b"(")], 1007),
    "text over 64 KiB": ([frame(1, b"a" * (64 * 1024 + 1))], 1009),
    "fragments adding up over 64 KiB": ([frame(2, b"a" * 40000, fin=False),
                                         frame(0, b"a" * 40000)], 1009),
}


def test_broken_frames_close_with_their_code(env):
    wrong = {}
    for name, (frames, want) in BROKEN.items():
        for path in ["/ws/hostile", "/raw/ws-stall"]:  # over HTTP, pass-through
            got = send_and_close_code(env, frames, path)
            if got != want:
                wrong[f"{name} on {path}"] = (got, want)
    assert not wrong, f"close codes (got, wanted): {wrong}"


def test_a_1gib_frame_header_closes_1009_without_allocating(env):
    for path in ["/ws/hostile", "/raw/ws-stall"]:
        base = data_mb(env.pid)

        async def case():
            reader, writer = await ws_open(env.gw.addr, path)
            t0 = time.monotonic()
            writer.write(frame(2, b"", length=1 << 30) + b"\x00" * 1000)
            await writer.drain()
            grown = data_mb(env.pid) - base
            code = await close_code(reader)
            writer.close()
            return code, time.monotonic() - t0, grown

        code, took, grown = run(case())
        assert code == 1009, (path, code)
        assert took < 3, (path, took)
        assert grown < 64, f"{path}: memory reserved grew {grown:.0f} MB for a 1 GiB header"
        assert env.gw.proc.poll() is None
        env.canary.check(f"a 1 GiB frame header on {path}")


def flood(env, path, total=80 * 1024 * 1024, seconds=4.0):
    """Sends up to `total` bytes of 60 KB binary messages for `seconds`; returns (bytes the
    client managed to write, RSS growth in MB)."""
    base = rss_mb(env.pid)

    async def case():
        reader, writer = await ws_open(env.gw.addr, path)
        msg = frame(2, b"m" * 60000)
        sent = 0
        deadline = time.monotonic() + seconds
        try:
            while sent < total and time.monotonic() < deadline:
                writer.write(msg)
                sent += len(msg)
                await asyncio.wait_for(writer.drain(), max(0.01, deadline - time.monotonic()))
        except (asyncio.TimeoutError, ConnectionError):
            pass
        grown = rss_mb(env.pid) - base
        writer.transport.abort()
        return sent, grown

    return run(case())


def test_queue_to_a_slow_websocket_over_http_origin_is_bounded(env):
    sent, grown = flood(env, "/ws/slow/flood")
    assert grown < 48, f"RSS grew {grown:.0f} MB while the client wrote {sent >> 20} MB"
    time.sleep(4.5)  # let the slow origin's handlers finish
    env.canary.check("flooding a slow WebSocket-over-HTTP origin")


def test_outbox_to_a_stalled_pass_through_origin_is_bounded(env):
    sent, grown = flood(env, "/raw/ws-stall/flood")
    assert grown < 48, f"RSS grew {grown:.0f} MB while the client wrote {sent >> 20} MB"
    env.canary.check("flooding a stalled pass-through origin")


def test_canary_survived(env):
    env.canary.check("the WebSocket cases")
